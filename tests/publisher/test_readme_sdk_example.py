"""README's Python SDK example runs as printed against the test's broker, so its words about the API stay true: the
change it shows carries ``authority_version``, and without it the same ``Publisher`` refuses to send."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from change_kit import read_topic

from onceonly import Publisher
from onceonly.settings import Settings
from onceonly.standard import RecordInvalid, event_id

pytestmark = pytest.mark.broker

README = Path(__file__).resolve().parents[2] / "README.md"


def sdk_example() -> str:
    """The one ```python block of README that uses the Publisher."""
    found: list[str] = re.findall(r"^```python\n(.*?)^```$", README.read_text(), re.S | re.M)
    blocks = [b for b in found if "Publisher" in b]
    assert len(blocks) == 1, f"expected one Python SDK example in README, found {len(blocks)}"
    return blocks[0]


def test_the_readme_sdk_example_publishes_with_its_authority_version(
    topics: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no stack.env of a developer's stack in the way: the environment names the broker
    monkeypatch.setenv("ONCEONLY_STATE_DIR", str(tmp_path))
    for name in ("bootstrap_servers", "registry_url", "topic_prefix", "broker_quirks", "profile"):
        monkeypatch.setenv(f"ONCEONLY_{name.upper()}", str(getattr(topics, name)))
    scope: dict[str, Any] = {}
    exec(compile(sdk_example(), "README.md", "exec"), scope)  # the README's own example, as printed

    change, result = scope["change"], scope["result"]
    assert result.authority_version == change["authority_version"]
    assert result.event_id == event_id("public_security", "person", change["entity_key"], change["authority_version"])
    assert result.event_id in capsys.readouterr().out
    [(key, record, _)] = read_topic(topics, "change.person", expect=1)
    assert (key, record["authority_version"]) == (change["entity_key"], change["authority_version"])

    unversioned = {k: v for k, v in change.items() if k != "authority_version"}
    with Publisher(topics) as publisher, pytest.raises(RecordInvalid) as refused:
        publisher.publish(unversioned)
    assert refused.value.field == "authority_version"
