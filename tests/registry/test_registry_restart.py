"""The registry's state lives in its Kafka topic: killed and started again, it serves the same ids, subjects and
levels, and keeps numbering where it stopped. Without a broker it still serves, from memory, and says so."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest
from registry_helpers import RegistryProcess, record, registry_env

from onceonly.testing import StackInfo

pytestmark = pytest.mark.broker

CT = {"Content-Type": "application/vnd.schemaregistry.v1+json"}


def snapshot(http: httpx.Client) -> dict[str, object]:
    """Everything a client can read, to compare before and after a restart."""
    subjects = http.get("/subjects", params={"deleted": "true"}).json()
    out: dict[str, object] = {"subjects": subjects, "config": http.get("/config").json()}
    for s in subjects:
        versions = http.get(f"/subjects/{s}/versions", params={"deleted": "true"}).json()
        out[s] = [http.get(f"/subjects/{s}/versions/{v}", params={"deleted": "true"}).json() for v in versions]
        out[f"{s}/live"] = http.get(f"/subjects/{s}/versions").json()
        level = http.get(f"/config/{s}")
        out[f"{s}/config"] = level.json() if level.status_code == 200 else None
    return out


def test_killed_registry_comes_back_with_the_same_state(stack: StackInfo, tmp_path: Path) -> None:
    proc = RegistryProcess(registry_env(stack, f"k{uuid.uuid4().hex[:8]}.", tmp_path), tmp_path / "registry.log")
    proc.start()
    try:
        with proc.client() as http:
            ids = {}
            for i in range(3):
                person = record("Person", {"name": "name", "type": "string"}, namespace=f"n{i}")
                ids[f"s{i}-value"] = http.post(f"/subjects/s{i}-value/versions", json={"schema": person}).json()["id"]
            richer = record(
                "Person", {"name": "name", "type": "string"}, {"name": "a", "type": "int", "default": 0}, namespace="n0"
            )
            assert http.post("/subjects/s0-value/versions", json={"schema": richer}).status_code == 200
            assert (
                http.put("/config/s1-value", json={"compatibility": "FULL_TRANSITIVE"}, headers=CT).status_code == 200
            )
            assert http.put("/config", json={"compatibility": "FORWARD"}, headers=CT).status_code == 200
            assert http.delete("/subjects/s0-value/versions/1").status_code == 200
            assert http.delete("/subjects/s2-value").status_code == 200
            before = snapshot(http)

        proc.kill()
        started = time.monotonic()
        proc.start()
        restart_s = time.monotonic() - started

        with proc.client() as http:
            assert snapshot(http) == before
            assert before["subjects"] == ["s0-value", "s1-value", "s2-value"]
            assert http.get("/config").json() == {"compatibilityLevel": "FORWARD"}
            same = record("Person", {"name": "name", "type": "string"}, namespace="n1")
            again = http.post("/subjects/s1-value/versions", json={"schema": same})
            assert again.json()["id"] == ids["s1-value"]  # same schema, same id, no new version
            assert http.get("/subjects/s1-value/versions").json() == [1]
            fresh = record("Other", {"name": "x", "type": "long"})
            new_id = http.post("/subjects/other-value/versions", json={"schema": fresh}).json()["id"]
            known = [v["id"] for s in before["subjects"] for v in before[s]]  # type: ignore[attr-defined]
            assert new_id == max(known) + 1  # numbering goes on where it stopped, no id is reused
        assert restart_s < 15, f"restart took {restart_s:.1f}s"
    finally:
        proc.stop()


def test_without_a_broker_it_serves_from_memory(stack: StackInfo, tmp_path: Path) -> None:
    proc = RegistryProcess(registry_env(stack, "", tmp_path, broker=False), tmp_path / "registry.log")
    proc.start()
    try:
        with proc.client() as http:
            answer = http.post("/subjects/m-value/versions", json={"schema": '"string"'})
            assert answer.json() == {"id": 1}
        log = Path(proc.log).read_text()
        assert "kept in memory only" in log and "ONCEONLY_BOOTSTRAP_SERVERS unset" in log
    finally:
        proc.stop()
