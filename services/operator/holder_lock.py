"""A named Redis lock with a readable owner: two replays (or a replay and a bootstrap) of one holder never overlap.

Why not ``redis.lock.Lock``: its token is random, so a refused operator learns nothing. Here the value is the owner
(operator, host, pid, operation, since when), so the refusal says who holds the holder and since when.

- take: ``SET key owner NX PX ttl``; only one caller gets it.
- keep: a background thread renews the expiry every ``ttl / 3`` with a Lua compare-and-``PEXPIRE`` (only while the
  value is still ours); if the process dies, the lock expires ``ttl`` after the last renewal.
- release: a Lua compare-and-``DEL``, so a lock that expired and was taken by someone else is never deleted by us.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import redis

from onceonly.errors import BrokerUnavailable, ConfigError
from onceonly.settings import Settings
from services.operator.replay_errors import HolderBusy

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def operator_name() -> str:
    """Who runs the command: ``ONCEONLY_OPERATOR``, else the login name."""
    name = os.environ.get("ONCEONLY_OPERATOR", "").strip()
    if name:
        return name
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        return f"uid {os.getuid()}"


def redis_client(settings: Settings) -> redis.Redis:
    """The deployment's Redis; locks and receipts live there."""
    if not settings.redis_url:
        raise ConfigError(
            "no Redis configured (the holder lock and receipts live there)", hint="set ONCEONLY_REDIS_URL"
        )
    return redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2, decode_responses=True)


@dataclass(frozen=True)
class Owner:
    """Who holds a lock; stored as the lock's value."""

    operator: str
    action: str
    operation_id: str
    host: str
    pid: int
    since: str

    @classmethod
    def me(cls, action: str, operation_id: str, operator: str | None = None) -> Owner:
        since = datetime.now(UTC).isoformat(timespec="seconds")
        return cls(operator or operator_name(), action, operation_id, socket.gethostname(), os.getpid(), since)

    def value(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True, separators=(",", ":"))

    def describe(self) -> str:
        return (
            f"{self.action} {self.operation_id} by {self.operator} on {self.host} (pid {self.pid}, since {self.since})"
        )

    @classmethod
    def parse(cls, value: str) -> Owner | None:
        try:
            return cls(**json.loads(value))
        except (ValueError, TypeError):
            return None


class HolderLock:
    """The lock on one holder's redelivery; use as a context manager (taken on enter, released on exit)."""

    def __init__(self, client: redis.Redis, key: str, owner: Owner, *, ttl: float = 30.0, what: str = "") -> None:
        self.client = client
        self.key = key
        self.owner = owner
        self.ttl_ms = int(ttl * 1000)
        self.what = what or key
        self._value = owner.value()
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None
        self.lost = threading.Event()

    @classmethod
    def for_holder(cls, settings: Settings, holder: str, owner: Owner, ttl: float = 30.0) -> HolderLock:
        key = f"{settings.topic_prefix}lock:holder:{holder}"
        return cls(redis_client(settings), key, owner, ttl=ttl, what=f"holder {holder}")

    def holder(self) -> Owner | None:
        """Who holds the lock now (None when free or not ours to parse)."""
        value = self._call(self.client.get, self.key)
        return Owner.parse(value) if isinstance(value, str) else None

    def try_acquire(self) -> bool:
        return bool(self._call(self.client.set, self.key, self._value, nx=True, px=self.ttl_ms))

    def acquire(self) -> None:
        """Take the lock or refuse at once, naming who holds it."""
        if not self.try_acquire():
            raw = self._call(self.client.get, self.key)
            current = Owner.parse(raw) if isinstance(raw, str) else None
            who = current.describe() if current else str(raw or "someone (the lock just expired: try again)")
            left = self._call(self.client.pttl, self.key)
            lapse = (
                f" (its lock lapses within {int(left) / 1000:.0f}s if that process died)" if left and left > 0 else ""
            )
            raise HolderBusy(f"{self.what} is busy: {who} is running{lapse}; try again when it has finished")
        self._start_keeper()

    def acquire_waiting(self, timeout: float) -> None:
        """Take the lock, waiting up to ``timeout`` seconds for the current owner to release it."""
        deadline = time.monotonic() + timeout
        while not self.try_acquire():
            if time.monotonic() > deadline:
                self.acquire()  # raises, naming the owner
            time.sleep(0.05)
        self._start_keeper()

    def release(self) -> bool:
        """Delete the lock if it is still ours; True when it was."""
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(5)
            self._keeper = None
        return bool(self._call(self._release, keys=[self.key], args=[self._value]))

    def renew(self) -> bool:
        return bool(self._call(self._renew, keys=[self.key], args=[self._value, self.ttl_ms]))

    def _start_keeper(self) -> None:
        self._stop.clear()
        self._keeper = threading.Thread(target=self._keep, name=f"lock {self.key}", daemon=True)
        self._keeper.start()

    def _keep(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                if not self.renew():
                    self.lost.set()
                    return
            except BrokerUnavailable:
                continue  # Redis away for a moment: try again; the lock expires on its own if it stays away

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as e:
            raise BrokerUnavailable(f"Redis did not answer for the lock on {self.what}: {e}") from e

    def __enter__(self) -> HolderLock:
        self.acquire()
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.release()
