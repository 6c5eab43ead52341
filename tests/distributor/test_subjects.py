"""Each holder's projection is a registry subject of its own, checked before an agreement goes live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from distributor_kit import THREE_HOLDERS, write_agreements

from onceonly.errors import ConfigError
from onceonly.settings import Settings
from onceonly.standard import RegistryClient
from services.distributor import Distributor, load_agreements

pytestmark = pytest.mark.broker


def distributor(settings: Settings, tmp_path: Path, person_fields: list[str]) -> Distributor:
    hrss: dict[str, Any] = {**THREE_HOLDERS[0], "grants": {"person": person_fields}}
    agreements = load_agreements(write_agreements(tmp_path / "a.yaml", [hrss]))
    return Distributor(agreements, settings, RegistryClient(settings.registry_url))


def test_a_projection_that_breaks_what_the_holder_receives_is_refused(settings: Settings, tmp_path: Path) -> None:
    distributor(settings, tmp_path, ["id_number", "name"]).own_subjects()
    subject = settings.topic("inbox.hrss") + "-onceonly.change.PersonChange"  # TopicRecordNameStrategy
    registry = RegistryClient(settings.registry_url)
    latest = registry.latest(subject)
    assert latest is not None
    entity = next(t for t in latest[2]["fields"][-2]["type"] if isinstance(t, dict))
    assert [f["name"] for f in entity["fields"]] == ["id_number", "name"]
    compatibility = httpx.get(f"{settings.registry_url}/config/{subject}").json()
    assert compatibility.get("compatibilityLevel", compatibility.get("compatibility")) == "BACKWARD"

    with pytest.raises(ConfigError) as refused:  # sex has no default: inbox records written so far lack it
        distributor(settings, tmp_path, ["id_number", "name", "sex"]).own_subjects()
    assert f"agreement hrss-all changes what hrss receives of person in a way {subject}" in str(refused.value)
    assert "sex" in str(refused.value), str(refused.value)

    distributor(settings, tmp_path, ["id_number", "name", "address"]).own_subjects()  # optional field: fine
    latest = registry.latest(subject)
    assert latest is not None and latest[1] == 2
