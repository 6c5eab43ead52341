"""A small client for any Confluent-compatible schema registry (ours, Confluent's, Karapace, Apicurio).

It caches what never changes (id -> schema, (subject, schema) -> id) so the hot path asks the registry once
per schema, and it separates "the registry is down" (``RegistryUnavailable``, retry) from an answer
(``RegistryError`` with Confluent's error code).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx

from onceonly.standard.errors import RegistryError, RegistryUnavailable, UnknownSchemaId

Schema = dict[str, Any]
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryClient:
    """Register and fetch Avro schemas over the Confluent REST API."""

    def __init__(self, url: str, *, timeout: float = 10.0, auth: tuple[str, str] | None = None) -> None:
        if not url:
            raise RegistryUnavailable("no schema registry URL configured (set ONCEONLY_REGISTRY_URL)")
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout, auth=auth, headers={"Accept": CONTENT_TYPE})
        self._by_id: dict[int, Schema] = {}
        self._ids: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Any:
        try:
            response = self._http.request(
                method, path, params=params, json=body, headers={"Content-Type": CONTENT_TYPE} if body else None
            )
        except httpx.TransportError as e:
            raise RegistryUnavailable(f"schema registry at {self.url} is unreachable: {e}") from e
        if response.status_code >= 500:
            raise RegistryUnavailable(
                f"schema registry at {self.url} answered HTTP {response.status_code}: {response.text[:200]}"
            )
        if response.is_error:
            try:
                error = response.json()
                code, message = int(error.get("error_code", response.status_code)), str(error.get("message", ""))
            except (ValueError, AttributeError):
                code, message = response.status_code, response.text[:200]
            raise RegistryError(response.status_code, code, message)
        return response.json()

    def register(self, subject: str, schema: Schema) -> int:
        """The id of ``schema`` under ``subject``, registering it if new (idempotent)."""
        text = json.dumps(schema, separators=(",", ":"))
        key = (subject, text)
        if (cached := self._ids.get(key)) is not None:
            return cached
        answer = self._call("POST", f"/subjects/{subject}/versions", {"schema": text})
        schema_id = int(answer["id"])
        with self._lock:
            self._ids[key] = schema_id
            self._by_id.setdefault(schema_id, schema)
        return schema_id

    def get_schema(self, schema_id: int) -> Schema:
        """The schema with this global id; ``UnknownSchemaId`` when the registry has none."""
        if (cached := self._by_id.get(schema_id)) is not None:
            return cached
        try:
            answer = self._call("GET", f"/schemas/ids/{schema_id}")
        except RegistryError as e:
            if e.status == 404:
                raise UnknownSchemaId(schema_id) from e
            raise
        schema: Schema = json.loads(answer["schema"])
        with self._lock:
            self._by_id[schema_id] = schema
        return schema

    def lookup(self, subject: str, schema: Schema) -> int | None:
        """The id under which ``subject`` already has ``schema``, or None."""
        try:
            answer = self._call("POST", f"/subjects/{subject}", {"schema": json.dumps(schema)})
        except RegistryError as e:
            if e.status == 404:
                return None
            raise
        return int(answer["id"])

    def latest(self, subject: str) -> tuple[int, int, Schema] | None:
        """(id, version, schema) of the subject's latest version, or None when the subject is unknown."""
        try:
            answer = self._call("GET", f"/subjects/{subject}/versions/latest")
        except RegistryError as e:
            if e.status == 404:
                return None
            raise
        return int(answer["id"]), int(answer["version"]), json.loads(answer["schema"])

    def subjects(self) -> list[str]:
        return [str(s) for s in self._call("GET", "/subjects")]

    def test_compatibility(self, subject: str, schema: Schema, version: str = "latest") -> tuple[bool, list[str]]:
        """Whether ``schema`` may be registered under ``subject``, and why not (in words)."""
        answer = self._call(
            "POST",
            f"/compatibility/subjects/{subject}/versions/{version}",
            {"schema": json.dumps(schema)},
            params={"verbose": "true"},
        )
        return bool(answer.get("is_compatible")), [str(m) for m in answer.get("messages") or []]

    def set_compatibility(self, subject: str | None, level: str) -> None:
        self._call("PUT", f"/config/{subject}" if subject else "/config", {"compatibility": level})
