"""``Idempotency-Key`` through Redis: a retried request gets the first answer back instead of a second event.

A key is claimed (``SET NX``) before publishing and holds the answer after; a claim in flight answers 409, the same
key with another body 422 (the client mixed up two requests), as the IETF Idempotency-Key draft describes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis


@dataclass(frozen=True)
class Stored:
    fingerprint: str
    status: int | None  # None: the first request is still in flight
    body: Any


def fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class IdempotencyStore:
    def __init__(self, client: aioredis.Redis, prefix: str, *, ttl: int, pending_ttl: int) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = ttl
        self.pending_ttl = pending_ttl

    def _key(self, department: str, key: str) -> str:
        return f"{self.prefix}gateway:idempotency:{department}:{key}"

    async def claim(self, department: str, key: str, print_: str) -> Stored | None:
        """Claim ``key`` for this request; None when claimed, else what an earlier request left."""
        name = self._key(department, key)
        pending = json.dumps({"fingerprint": print_, "status": None, "body": None})
        if await self.client.set(name, pending, nx=True, ex=self.pending_ttl):
            return None
        raw = await self.client.get(name)
        if raw is None:  # expired between SET and GET: try once more
            return (
                None if await self.client.set(name, pending, nx=True, ex=self.pending_ttl) else Stored("", None, None)
            )
        data = json.loads(raw)
        return Stored(data["fingerprint"], data["status"], data["body"])

    async def finish(self, department: str, key: str, print_: str, status: int, body: Any) -> None:
        data = json.dumps({"fingerprint": print_, "status": status, "body": body})
        await self.client.set(self._key(department, key), data, ex=self.ttl)

    async def release(self, department: str, key: str) -> None:
        """Forget a claim whose request failed, so the client may retry with the same key."""
        await self.client.delete(self._key(department, key))
