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


def test_the_operator_service_replays_with_its_config_and_says_what_is_missing_without_one(
    topics: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_redis: None
) -> None:
    """``onceonly operator serve -c CONFIG`` is ``create_app(config=...)``; ONCEONLY_AGREEMENTS stays the fallback."""
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from onceonly.cli import app as cli
    from onceonly.errors import ConfigError
    from onceonly.stack.process import free_port
    from services.operator.app import create_app

    people = People(seed=9)
    with Publisher(topics) as publisher:
        people.publish(publisher, people.born(7))
    config = write_agreements(tmp_path / "onceonly.yaml", ["hrss", "tax"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no ./onceonly.yaml here
    monkeypatch.delenv("ONCEONLY_AGREEMENTS", raising=False)
    dry_run = {"holder": "hrss", "by_duration": "1h", "dry_run": True}

    with TestClient(create_app(topics, config=config)) as client:
        plan = client.post("/api/replay", json=dry_run)
    assert plan.status_code == 200, plan.text
    assert plan.json()["plan"]["deliveries"] == 7

    with TestClient(create_app(topics)) as client:
        neither = client.post("/api/replay", json=dry_run)
        assert neither.status_code == 400
        assert (
            "no agreements to replay or bootstrap with: no --config, and no onceonly.yaml" in neither.json()["detail"]
        )
        assert (
            "operator serve --config" in neither.json()["detail"] and "ONCEONLY_AGREEMENTS" in neither.json()["detail"]
        )
        boot = client.post("/api/holders/hrss/bootstrap", json={"dry_run": True})
        assert boot.status_code == 400 and "no agreements" in boot.json()["detail"]
        monkeypatch.setenv("ONCEONLY_AGREEMENTS", str(tmp_path / "gone.yaml"))
        wrong = client.post("/api/replay", json=dry_run)
        assert wrong.status_code == 400 and "ONCEONLY_AGREEMENTS names" in wrong.json()["detail"]
        monkeypatch.setenv("ONCEONLY_AGREEMENTS", str(config))
        by_env = client.post("/api/replay", json=dry_run)
        assert by_env.status_code == 200 and by_env.json()["plan"]["deliveries"] == 7

    # A config that is not there, or holds no agreements, stops the start: one line, before any port is bound.
    with pytest.raises(ConfigError, match=r"gone\.yaml: file not found"):
        create_app(topics, config=tmp_path / "gone.yaml")
    (tmp_path / "empty.yaml").write_text("subscribers: {}\n")
    with pytest.raises(ConfigError, match="no 'agreements' section"):
        create_app(topics, config=tmp_path / "empty.yaml")
    env = {"ONCEONLY_BOOTSTRAP_SERVERS": topics.bootstrap_servers, "ONCEONLY_REGISTRY_URL": topics.registry_url}
    port = str(free_port())
    result = CliRunner().invoke(cli, ["operator", "serve", "--port", port, "-c", str(tmp_path / "gone.yaml")], env=env)
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError), result.output
