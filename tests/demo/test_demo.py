"""The main job end to end on the session stack: every holder converges, the poison record is dead-lettered, and
every authority's changes went through its real adapter (outbox source, snapshot diff, gateway, SDK)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
import pytest

from onceonly.demo.run import DemoOptions, run_demo


def adapter_processes() -> list[str]:
    """Our own children running an adapter (the demo must leave none behind)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "source run" in cmd or "gateway serve" in cmd:
            found.append(cmd)
    return found


def test_a_small_city_converges_at_every_holder(stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCEONLY_BOOTSTRAP_SERVERS", stack.bootstrap_servers)
    monkeypatch.setenv("ONCEONLY_REGISTRY_URL", stack.registry_url)
    monkeypatch.setenv("ONCEONLY_REDIS_URL", stack.redis_url)
    monkeypatch.setenv("ONCEONLY_PROFILE", "dev")
    said: list[str] = []
    result = run_demo(DemoOptions(people=200, state_dir=tmp_path, timeout=180), said.append, lambda _: None)
    assert result.ok, result.problems
    assert result.converged == ["public_security", "civil_affairs", "health", "hrss", "housing_fund", "tax"]
    assert result.dead_letters == 1
    assert "schema id" in result.poison_reason
    assert result.changes > 200
    assert result.line().startswith("converged 6/6 holders, ")

    a = result.adapters
    assert a.outbox_published == a.outbox_written > 200  # every person change went through the outbox
    assert a.outbox_dead == 0
    assert a.snapshot_events == a.snapshot_rows > 0  # marriages and adoptions, from the CSV exports
    assert [r.published for r in a.snapshot_runs[1:]] == [0]  # the re-run on the same export emits nothing
    assert a.gateway_accepted == a.gateway_posted > 0 and not a.gateway_refused  # births and deaths
    assert a.gateway_replay_checked  # a repeated post was answered from its Idempotency-Key
    assert a.sdk_published > 0  # pension enrolments
    assert a.outbox_written + a.snapshot_rows + a.gateway_posted + a.sdk_published == result.changes
    assert adapter_processes() == []
