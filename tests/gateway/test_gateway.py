"""``POST /v1/changes`` over the real broker, registry and Redis: 202 after the ack, 401/403/409/422/503, OpenAPI."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from publisher.change_kit import GOOD_ID, person_change, person_id, read_topic

from onceonly.settings import Settings
from onceonly.stack.process import free_port
from services.gateway import GatewayConfig, create_app

pytestmark = pytest.mark.broker
KEYS = {"public_security": "ps-key-0123456789abcdef", "housing_fund": "hf-key-0123456789abcdef"}
PS = {"X-API-Key": KEYS["public_security"]}


def body(key: str = GOOD_ID, version: int = 1, **after: Any) -> dict[str, Any]:
    change = person_change(key, version, **after)
    return {**change, "valid_from": "2024-05-01T00:00:00+08:00"}


@pytest.fixture
def forget_keys(settings: Settings) -> Iterator[None]:
    """The machine's Redis is shared: remove this test's idempotency keys afterwards."""
    yield
    client = redis.Redis.from_url(str(settings.redis_url))
    if keys := list(client.scan_iter(f"{settings.topic_prefix}*")):
        client.delete(*keys)


@pytest.fixture
def gateway(topics: Settings, forget_keys: None) -> Iterator[TestClient]:
    with TestClient(create_app(GatewayConfig(api_keys=KEYS), topics)) as client:
        yield client


def test_a_change_is_published_and_answered_after_the_ack(gateway: TestClient, topics: Settings) -> None:
    answer = gateway.post("/v1/changes", json=body(), headers=PS)
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert accepted["topic"] == topics.topic("change.person") and accepted["offset"] >= 0
    [(key, record, _)] = read_topic(topics, "change.person", expect=1)
    assert key == GOOD_ID and record["event_id"] == accepted["event_id"]
    assert record["authority"] == "public_security" and record["source"]["connector"] == "gateway"
    assert record["valid_from"].isoformat() == "2024-04-30T16:00:00+00:00"


def test_who_may_publish(gateway: TestClient, topics: Settings) -> None:
    assert gateway.post("/v1/changes", json=body()).status_code == 401
    assert gateway.post("/v1/changes", json=body(), headers={"X-API-Key": "guess"}).status_code == 401
    foreign = gateway.post("/v1/changes", json=body(), headers={"X-API-Key": KEYS["housing_fund"]})
    assert foreign.status_code == 403
    assert foreign.json()["detail"] == "housing_fund is not the authority for person (public_security is)"
    assert read_topic(topics, "change.person", expect=0, timeout=2) == []


@pytest.mark.parametrize(
    ("change", "loc", "message"),
    [
        ({k: v for k, v in body().items() if k != "entity_key"}, ["body", "entity_key"], "Field required"),
        ({**body(), "op": "x"}, ["body", "op"], "Input should be"),
        ({**body(), "colour": "red"}, ["body", "colour"], "Extra inputs"),
        ({**body(), "entity_type": "unicorn"}, ["body", "entity_type"], "unicorn"),
        (body(GOOD_ID[:-1] + "1"), ["body", "after", "id_number"], "check character"),
        (body(adress="x"), ["body", "after", "adress"], "is not a field of Person"),
        (body(birth_date="1949-02-30"), ["body", "after", "birth_date"], "is not a date"),
    ],
)
def test_bad_bodies_are_422_with_the_field(gateway: TestClient, change: Any, loc: list[str], message: str) -> None:
    answer = gateway.post("/v1/changes", json=change, headers=PS)
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["detail"]
    assert error["loc"] == loc and message in error["msg"]


def test_idempotency_key_returns_the_first_answer_and_publishes_once(gateway: TestClient, topics: Settings) -> None:
    headers = {**PS, "Idempotency-Key": "req-42"}
    first = gateway.post("/v1/changes", json=body(), headers=headers)
    again = gateway.post("/v1/changes", json=body(), headers=headers)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    other = gateway.post("/v1/changes", json=body(version=2), headers=headers)
    assert other.status_code == 422 and "different body" in other.json()["detail"]
    assert len(read_topic(topics, "change.person", expect=1)) == 1


def test_broker_away_is_503_and_a_concurrent_retry_409(topics: Settings, forget_keys: None) -> None:
    """A real fault: nothing listens on the broker port; the first request holds its key while it waits."""
    away = topics.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    config = GatewayConfig(api_keys=KEYS, delivery_timeout=2.0)
    headers = {**PS, "Idempotency-Key": "req-7"}
    with TestClient(create_app(config, away)) as client:
        answers: list[Any] = []
        first = threading.Thread(
            target=lambda: answers.append(client.post("/v1/changes", json=body(), headers=headers))
        )
        first.start()
        time.sleep(0.5)
        busy = client.post("/v1/changes", json=body(), headers=headers)
        first.join(30)
        retry = client.post("/v1/changes", json=body(person_id(1)), headers={**headers, "Idempotency-Key": "req-8"})
    assert busy.status_code == 409
    assert answers[0].status_code == 503 and answers[0].headers["Retry-After"] == "5"
    assert "retry later" in answers[0].json()["detail"]
    assert retry.status_code == 503


def test_openapi_is_served(gateway: TestClient) -> None:
    spec = gateway.get("/openapi.json").json()
    post = spec["paths"]["/v1/changes"]["post"]
    assert {"202", "401", "403", "409", "422", "503"} <= set(post["responses"])
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert gateway.get("/docs").status_code == 200
    assert gateway.get("/healthz").json() == {"status": "ok"}


def test_a_quiet_gateway_sends_heartbeats(topics: Settings, forget_keys: None) -> None:
    config = GatewayConfig(api_keys=KEYS, heartbeat_interval=0.3)
    with TestClient(create_app(config, topics)):
        time.sleep(1.5)
    beats = [json.loads(value) for _, value, _ in read_topic(topics, "source.heartbeats", expect=1)]
    assert beats and beats[0]["source"] == "gateway" and beats[0]["status"] == "idle"
