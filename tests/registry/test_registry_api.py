"""The Confluent REST API of our registry, over HTTP: ids, versions, lookup, deletes, config, and every bad input."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from registry_helpers import RegistryProcess, record

from onceonly.testing import prometheus_samples, sample

pytestmark = pytest.mark.broker

CT = {"Content-Type": "application/vnd.schemaregistry.v1+json"}
PERSON = record("Person", {"name": "name", "type": "string"})
PERSON_AGE = record("Person", {"name": "name", "type": "string"}, {"name": "age", "type": "int", "default": 0})


def register(http: httpx.Client, subject: str, schema: str, **extra: Any) -> httpx.Response:
    return http.post(f"/subjects/{subject}/versions", json={"schema": schema, **extra}, headers=CT)


def error(response: httpx.Response, status: int, code: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_code"] == code, body
    assert response.headers["content-type"].startswith("application/vnd.schemaregistry.v1+json")
    return str(body["message"])


def test_same_schema_same_id_whatever_the_spelling(http: httpx.Client, subject: str) -> None:
    first = register(http, subject, PERSON).json()["id"]
    respelled = json.dumps(
        {"fields": [{"type": "string", "name": "name"}], "namespace": "test", "name": "Person", "type": "record"},
        indent=4,
    )
    assert register(http, subject, respelled).json()["id"] == first
    assert http.get(f"/subjects/{subject}/versions").json() == [1]  # no second version either
    # ids are global: the same schema under another subject keeps its id, a new one gets a new id
    assert register(http, subject + "-other", PERSON).json()["id"] == first
    assert register(http, subject, PERSON_AGE).json()["id"] != first
    # a logicalType is part of the schema: it must not collapse into the plain type's id
    plain = register(http, subject + "-d", record("D", {"name": "d", "type": "int"})).json()["id"]
    date = record("D", {"name": "d", "type": {"type": "int", "logicalType": "date"}})
    assert register(http, subject + "-d2", date).json()["id"] != plain


def test_reads_versions_and_lookup(http: httpx.Client, subject: str) -> None:
    ns = subject.split("-")[0]  # schemas of our own: ids are global, other tests register PERSON too
    person = record("Person", {"name": "name", "type": "string"}, namespace=ns)
    person_age = record(
        "Person", {"name": "name", "type": "string"}, {"name": "age", "type": "long", "default": 0}, namespace=ns
    )
    id1 = register(http, subject, person).json()["id"]
    id2 = register(http, subject, person_age).json()["id"]
    assert subject in http.get("/subjects").json()
    assert http.get(f"/subjects/{subject}/versions").json() == [1, 2]
    latest = http.get(f"/subjects/{subject}/versions/latest").json()
    assert (latest["subject"], latest["version"], latest["id"]) == (subject, 2, id2)
    assert json.loads(latest["schema"]) == json.loads(person_age)
    assert http.get(f"/subjects/{subject}/versions/1").json()["id"] == id1
    assert http.get(f"/subjects/{subject}/versions/-1").json()["version"] == 2
    assert json.loads(http.get(f"/subjects/{subject}/versions/1/schema").text) == json.loads(person)
    assert json.loads(http.get(f"/schemas/ids/{id1}").json()["schema"]) == json.loads(person)
    assert http.get(f"/schemas/ids/{id2}/versions").json() == [{"subject": subject, "version": 2}]
    assert http.get(f"/schemas/ids/{id2}/subjects").json() == [subject]
    found = http.post(f"/subjects/{subject}", json={"schema": person}, headers=CT).json()
    assert (found["id"], found["version"]) == (id1, 1)
    assert http.get("/schemas/types").json() == ["AVRO"]
    assert http.get("/mode").json() == {"mode": "READWRITE"}


def test_bad_inputs_get_confluent_error_codes(http: httpx.Client, subject: str) -> None:
    assert "Invalid schema" in error(register(http, subject, '{"type": "record", "name": "X"'), 422, 42201)
    assert "fields" in error(register(http, subject, '{"type": "record", "name": "X"}'), 422, 42201)
    bad_default = record("X", {"name": "a", "type": "int", "default": "not an int"})
    error(register(http, subject, bad_default), 422, 42201)
    assert "AVRO only" in error(register(http, subject, "{}", schemaType="PROTOBUF"), 422, 42201)
    error(http.post(f"/subjects/{subject}/versions", content=b"{not json", headers=CT), 400, 400)

    assert error(http.get("/schemas/ids/987654"), 404, 40403) == "Schema 987654 not found"
    error(http.get("/schemas/ids/abc"), 404, 40403)
    assert subject in error(http.get(f"/subjects/{subject}/versions"), 404, 40401)
    error(http.get(f"/subjects/{subject}/versions/latest"), 404, 40401)
    error(http.post(f"/subjects/{subject}", json={"schema": PERSON}, headers=CT), 404, 40401)

    register(http, subject, PERSON)
    error(http.post(f"/subjects/{subject}", json={"schema": PERSON_AGE}, headers=CT), 404, 40403)
    error(http.get(f"/subjects/{subject}/versions/7"), 404, 40402)
    for bad in ("0", "-2", "one", "2147483648"):
        assert "not a valid version" in error(http.get(f"/subjects/{subject}/versions/{bad}"), 422, 42202)
    assert "full_transitive" in error(http.put("/config", json={"compatibility": "SIDEWAYS"}, headers=CT), 422, 42203)
    error(http.put(f"/config/{subject}", json={}, headers=CT), 422, 42203)
    error(http.get(f"/config/{subject}"), 404, 40408)
    error(http.get("/no/such/route"), 404, 404)


def test_config_global_and_per_subject(http: httpx.Client, subject: str) -> None:
    assert http.get("/config").json() == {"compatibilityLevel": "BACKWARD"}
    assert http.put(f"/config/{subject}", json={"compatibility": "full"}, headers=CT).json() == {
        "compatibility": "FULL"
    }
    assert http.get(f"/config/{subject}").json() == {"compatibilityLevel": "FULL"}
    other = subject + "-x"
    assert http.get(f"/config/{other}", params={"defaultToGlobal": "true"}).json() == {"compatibilityLevel": "BACKWARD"}
    assert http.delete(f"/config/{subject}").json() == {"compatibilityLevel": "FULL"}
    error(http.get(f"/config/{subject}"), 404, 40408)


def test_incompatible_is_409_and_compatibility_endpoint_says_why(http: httpx.Client, subject: str) -> None:
    register(http, subject, PERSON)
    required_age = record("Person", {"name": "name", "type": "string"}, {"name": "age", "type": "int"})
    message = error(register(http, subject, required_age), 409, 409)
    assert "incompatible" in message and "test.Person.age" in message
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in message

    url = f"/compatibility/subjects/{subject}/versions/latest"
    verbose = http.post(url, params={"verbose": "True"}, json={"schema": required_age}, headers=CT).json()
    assert verbose["is_compatible"] is False
    assert any("age" in m and "no default" in m for m in verbose["messages"])
    assert http.post(url, json={"schema": PERSON_AGE}, headers=CT).json() == {"is_compatible": True}
    everything = f"/compatibility/subjects/{subject}/versions"
    assert http.post(everything, json={"schema": required_age}, headers=CT).json() == {"is_compatible": False}
    error(http.post(f"/compatibility/subjects/{subject}/versions/9", json={"schema": PERSON}, headers=CT), 404, 40402)
    assert register(http, subject, PERSON_AGE).status_code == 200


def test_soft_then_permanent_delete(http: httpx.Client, subject: str) -> None:
    id1 = register(http, subject, PERSON).json()["id"]
    register(http, subject, PERSON_AGE)
    error(http.delete(f"/subjects/{subject}/versions/1", params={"permanent": "true"}), 404, 40407)
    assert http.delete(f"/subjects/{subject}/versions/1").json() == 1
    error(http.delete(f"/subjects/{subject}/versions/1"), 404, 40406)
    assert http.get(f"/subjects/{subject}/versions").json() == [2]
    assert http.get(f"/subjects/{subject}/versions", params={"deleted": "true"}).json() == [1, 2]
    assert http.get(f"/subjects/{subject}/versions/1", params={"deleted": "true"}).json()["id"] == id1
    assert http.delete(f"/subjects/{subject}/versions/1", params={"permanent": "true"}).json() == 1

    error(http.delete(f"/subjects/{subject}", params={"permanent": "true"}), 404, 40405)
    assert http.delete(f"/subjects/{subject}").json() == [2]
    error(http.delete(f"/subjects/{subject}"), 404, 40404)
    assert subject not in http.get("/subjects").json()
    assert subject in http.get("/subjects", params={"deleted": "true"}).json()
    assert http.delete(f"/subjects/{subject}", params={"permanent": "true"}).json() == [2]
    error(http.get(f"/subjects/{subject}/versions", params={"deleted": "true"}), 404, 40401)
    # gone for good: the subject starts again at version 1, and the same schema keeps its global id
    assert register(http, subject, PERSON).json()["id"] == id1
    assert http.get(f"/subjects/{subject}/versions").json() == [1]


@pytest.mark.parametrize("content_type", ["application/vnd.schemaregistry.v1+json", "application/json", None])
def test_content_types(http: httpx.Client, subject: str, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps({"schema": PERSON}).encode()
    response = http.post(f"/subjects/{subject}/versions", content=body, headers=headers)
    assert response.status_code == 200 and "id" in response.json()


def test_concurrent_registrations_are_serialised(registry: RegistryProcess, subject: str) -> None:
    """16 clients at once: the same new schema gets one id and one version; distinct ones get distinct versions."""
    ns = subject.split("-")[0]
    same = record("Person", {"name": "name", "type": "string"}, namespace=ns)

    def post(subject_schema: tuple[str, str]) -> int:
        with registry.client() as c:
            answer = register(c, *subject_schema)
            assert answer.status_code == 200, answer.text
            return int(answer.json()["id"])

    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(post, [(subject, same)] * 16))
    assert len(set(ids)) == 1
    with registry.client() as c:
        assert c.get(f"/subjects/{subject}/versions").json() == [1]
        other = subject + "-many"
        assert c.put(f"/config/{other}", json={"compatibility": "NONE"}, headers=CT).status_code == 200
    distinct = [(other, record(f"R{i}", {"name": "x", "type": "int"}, namespace=ns)) for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        many = list(pool.map(post, distinct))
    assert len(set(many)) == 16
    with registry.client() as c:
        assert c.get(f"/subjects/{other}/versions").json() == list(range(1, 17))


def test_metrics_count_requests_by_route_template_and_status(http: httpx.Client, subject: str) -> None:
    """Routes, not paths: ids and subject names in labels would make a new series per schema."""

    def count(method: str, route: str, status: str) -> float:
        page = prometheus_samples(http.get("/metrics").text)
        labels = {"service": "registry", "method": method, "route": route, "status": status}
        return sample(page, "onceonly_http_requests_total", **labels) or 0.0

    registered = ("POST", "/subjects/{subject}/versions", "200")
    unknown_id = ("GET", "/schemas/ids/{schema_id}", "404")
    nowhere = ("GET", "(unmatched)", "404")
    before = [count(*k) for k in (registered, unknown_id, nowhere)]
    assert register(http, subject, PERSON).status_code == 200
    error(http.get("/schemas/ids/987654321"), 404, 40403)
    assert http.get("/no/such/route").status_code == 404
    after = [count(*k) for k in (registered, unknown_id, nowhere)]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1]
    page = http.get("/metrics")
    assert page.headers["content-type"].startswith("text/plain")
    assert "987654321" not in page.text and subject not in page.text
