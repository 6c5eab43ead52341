"""The seven compatibility modes, each with the edits it accepts and refuses (HTTP 200 vs 409).

Field sketches: ``a`` is a string, ``a:int`` changes its type; ``b`` is an int without default, ``b=0`` with one,
``b:long`` widens it; ``c=''`` is a string defaulting to "". The transitive cases have two versions of history
where the new schema fits the latest but not the first.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from registry_helpers import record

pytestmark = pytest.mark.broker

CT = {"Content-Type": "application/vnd.schemaregistry.v1+json"}
FIELDS: dict[str, dict[str, Any]] = {
    "a": {"name": "a", "type": "string"},
    "a:int": {"name": "a", "type": "int"},
    "b": {"name": "b", "type": "int"},
    "b=0": {"name": "b", "type": "int", "default": 0},
    "b:long": {"name": "b", "type": "long"},
    "b:long=0": {"name": "b", "type": "long", "default": 0},
    "c=''": {"name": "c", "type": "string", "default": ""},
}


def schema(sketch: str, namespace: str) -> str:
    return record("R", *(FIELDS[f] for f in sketch.split()), namespace=namespace)


CASES = [
    # mode, history (oldest first), new schema, accepted?
    ("NONE", ["a"], "a:int", True),
    ("BACKWARD", ["a"], "a b=0", True),
    ("BACKWARD", ["a"], "a b", False),
    ("BACKWARD", ["a b"], "a", True),
    ("BACKWARD", ["a b"], "a b:long", True),
    ("BACKWARD", ["a"], "a:int", False),
    ("FORWARD", ["a"], "a b", True),
    ("FORWARD", ["a b"], "a", False),
    ("FORWARD", ["a b=0"], "a", True),
    ("FORWARD", ["a b"], "a b:long", False),
    ("FULL", ["a"], "a b=0", True),
    ("FULL", ["a"], "a b", False),
    ("FULL", ["a b"], "a", False),
    ("BACKWARD", ["a", "a b=0"], "a b", True),
    ("BACKWARD_TRANSITIVE", ["a", "a b=0"], "a b", False),
    ("BACKWARD_TRANSITIVE", ["a", "a b=0"], "a b:long=0", True),
    ("FORWARD", ["a b", "a b=0"], "a", True),
    ("FORWARD_TRANSITIVE", ["a b", "a b=0"], "a", False),
    ("FULL", ["a b", "a b=0"], "a", True),
    ("FULL_TRANSITIVE", ["a b", "a b=0"], "a", False),
    ("FULL_TRANSITIVE", ["a", "a b=0"], "a b=0 c=''", True),
]


@pytest.mark.parametrize(("mode", "history", "new", "accepted"), CASES)
def test_mode(http: httpx.Client, mode: str, history: list[str], new: str, accepted: bool) -> None:
    subject = f"m{uuid.uuid4().hex[:10]}-value"
    ns = subject.split("-")[0]
    assert http.put(f"/config/{subject}", json={"compatibility": "NONE"}, headers=CT).status_code == 200
    for sketch in history:
        response = http.post(f"/subjects/{subject}/versions", json={"schema": schema(sketch, ns)}, headers=CT)
        assert response.status_code == 200, response.text
    assert http.put(f"/config/{subject}", json={"compatibility": mode}, headers=CT).json() == {"compatibility": mode}

    candidate = {"schema": schema(new, ns)}
    probe = http.post(f"/compatibility/subjects/{subject}/versions", params={"verbose": "true"}, json=candidate)
    assert probe.json()["is_compatible"] is accepted, probe.json()
    response = http.post(f"/subjects/{subject}/versions", json=candidate, headers=CT)
    if accepted:
        assert response.status_code == 200, response.text
        assert http.get(f"/subjects/{subject}/versions").json() == list(range(1, len(history) + 2))
    else:
        assert response.status_code == 409, response.text
        body = response.json()
        assert body["error_code"] == 409 and mode in body["message"]
        assert probe.json()["messages"], "a refusal says why"
        for why in probe.json()["messages"]:
            assert why in body["message"] and "cannot read data written with" in why
