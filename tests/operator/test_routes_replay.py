"""The HTTP side of replay, bootstrap, status, trace and lag (``services.operator.routes_replay.router``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from operator_kit import People, write_agreements

from onceonly.publisher import Publisher
from onceonly.settings import Settings
from services.distributor import load_agreements
from services.operator.holder_lock import HolderLock, Owner
from services.operator.replay_ledger import ReplayLedger
from services.operator.routes_replay import router

pytestmark = [pytest.mark.broker, pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")]


def test_replay_over_http(topics: Settings, tmp_path: Path, clean_redis: None) -> None:
    people = People(seed=5)
    with Publisher(topics) as publisher:
        people.publish(publisher, people.born(12))
    from fastapi.testclient import TestClient

    app = FastAPI()
    app.include_router(router)
    app.state.settings = topics
    app.state.agreements = load_agreements(write_agreements(tmp_path / "agreements.yaml", ["hrss", "tax"]))
    client = TestClient(app)

    plan = client.post("/api/replay", json={"holder": "hrss", "by_duration": "1h", "dry_run": True})
    assert plan.status_code == 200, plan.text
    assert plan.json()["plan"]["deliveries"] == 12 and plan.json()["dry_run"] is True

    with HolderLock.for_holder(topics, "hrss", Owner.me("replay", "op-x", "frank")):
        busy = client.post("/api/replay", json={"holder": "hrss", "by_duration": "1h", "reason": "r"})
    assert busy.status_code == 409 and "by frank" in busy.json()["detail"]

    done = client.post("/api/replay", json={"holder": "hrss", "by_duration": "1h", "reason": "web", "operator": "gus"})
    assert done.status_code == 200, done.text
    assert done.json()["result"]["delivered"] == 12
    started = [e for _, e in ReplayLedger(topics).entries() if e["kind"] == "started"]
    assert [(e["operator"], e["reason"]) for e in started] == [("gus", "web")]

    assert client.post("/api/replay", json={"holder": "nobody", "by_duration": "1h"}).status_code == 400
    future = client.post("/api/replay", json={"holder": "hrss", "from": "2999-01-01T00:00:00+00:00"})
    assert future.status_code == 400 and "is in the future" in future.json()["detail"]
    assert client.get("/api/status/00000000-0000-0000-0000-000000000000").status_code == 404
    # Delivered (by the replay) and no subscriber answered yet: pending, with when and how it was delivered.
    pending = client.get(f"/api/status/{people.log[0]['event_id']}")
    assert pending.status_code == 200, pending.text
    (line,) = pending.json()
    assert line["holder"] == "hrss" and line["state"] == "pending" and line["deliveries"][0]["via"].startswith("replay")
    lag = client.get("/api/lag", params={"holder": "hrss"})
    assert lag.status_code == 200 and lag.json()[0]["waiting"] == 12  # no subscriber runs: all 12 wait
    boot = client.post("/api/holders/hrss/bootstrap", json={"dry_run": True})
    assert boot.status_code == 200 and boot.json()["plan"]["distributor_not_delivering"] == []
