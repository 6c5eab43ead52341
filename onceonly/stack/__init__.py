"""The embedded stack: a Kafka-compatible broker, the schema registry and Redis, with no Docker.

State lives in one folder (``.onceonly/`` by default): ``stack.json`` records what ``up`` started (pid,
command line, start time) so ``down`` stops exactly that and nothing else; ``stack.env`` holds the
connection settings every other command reads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from onceonly.errors import StackError
from onceonly.stack import components
from onceonly.stack.process import Managed, free_port, port_open, stop, wait_until

__all__ = ["ComponentStatus", "EmbeddedStack", "StackOptions"]


@dataclass
class StackOptions:
    broker_port: int = 9092
    registry_port: int = 8081
    redis_port: int | None = None  # None: a free port
    storage: str = "memory"  # or "s3"
    s3_port: int | None = None
    broker_timeout: float = 20.0


@dataclass
class ComponentStatus:
    name: str
    running: bool
    healthy: bool
    url: str
    pid: int | None
    since: float | None
    note: str = ""


class EmbeddedStack:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.state_file = state_dir / "stack.json"
        self.env_file = state_dir / "stack.env"

    # -- persisted state -------------------------------------------------------------------------
    def _load(self) -> tuple[list[Managed], dict[str, str]]:
        if not self.state_file.is_file():
            return [], {}
        try:
            data = json.loads(self.state_file.read_text())
            return [Managed.from_json(c) for c in data["components"]], dict(data["env"])
        except (ValueError, KeyError, TypeError) as e:
            raise StackError(
                f"{self.state_file} is damaged: {e}", hint="remove it after stopping stray processes"
            ) from e

    def _save(self, started: list[Managed], env: dict[str, str]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps({"components": [m.to_json() for m in started], "env": env}, indent=2))
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))

    def env(self) -> dict[str, str]:
        return self._load()[1]

    # -- lifecycle ---------------------------------------------------------------------------------
    def up(self, opts: StackOptions, say: Callable[[str], None] = lambda _: None) -> tuple[dict[str, str], bool]:
        """Start what is not running; returns the connection env and whether anything was started."""
        existing, env = self._load()
        if existing and all(m.alive() for m in existing):
            return env, False
        if existing:
            say("some parts of the previous stack died; restarting all of it")
            self._stop_all(existing)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state = self.state_dir.resolve()
        started: list[Managed] = []
        try:
            broker_env: dict[str, str] = {}
            storage = "memory://tansu/"
            if opts.storage == "s3":
                s3 = components.start_s3(state, opts.s3_port or free_port(), "tansu")
                started.append(s3)
                say(f"S3 (moto) on {s3.url}")
                broker_env = components.s3_env(s3.url)
                storage = "s3://tansu/"
            elif opts.storage != "memory":
                raise StackError(f"unknown storage {opts.storage!r}", hint="use memory or s3")
            broker = components.start_broker(state, opts.broker_port, storage, broker_env, opts.broker_timeout)
            broker.extra["env"] = broker_env
            started.append(broker)
            say(f"broker (tansu, {storage}) on {broker.url}")
            env = {
                "ONCEONLY_BOOTSTRAP_SERVERS": broker.url,
                "ONCEONLY_BROKER_QUIRKS": "tansu",
                "ONCEONLY_PROFILE": "dev",
            }
            redis_url = os.environ.get("ONCEONLY_REDIS_URL")
            if not redis_url:
                redis = components.start_redis(state, opts.redis_port or free_port())
                started.append(redis)
                redis_url = redis.url
                say(f"redis on {redis_url}")
            env["ONCEONLY_REDIS_URL"] = redis_url
            registry = components.start_registry(state, opts.registry_port, env)
            started.append(registry)
            env["ONCEONLY_REGISTRY_URL"] = registry.url
            say(f"schema registry on {registry.url}")
        except BaseException:
            self._stop_all(started)
            raise
        self._save(started, env)
        return env, True

    def restart_broker(self) -> Managed:
        """Stop and start the broker on the same address and storage (restart tests on ``s3://``)."""
        started, env = self._load()
        broker = next((m for m in started if m.name == "broker"), None)
        if broker is None:
            raise StackError("no broker recorded in this stack")
        stop(broker)
        port = int(broker.url.rsplit(":", 1)[1])
        # Its listening socket can outlive the wait by a moment on a busy machine; the new broker needs the port.
        if not wait_until(lambda: not port_open("127.0.0.1", port), 15.0):
            raise StackError(f"the broker's port {port} is still taken 15 s after the broker stopped")
        fresh = components.start_broker(
            self.state_dir.resolve(), port, broker.extra["storage"], broker.extra.get("env", {})
        )
        fresh.extra = broker.extra
        self._save([fresh if m.name == "broker" else m for m in started], env)
        return fresh

    def down(self) -> list[str]:
        """Stop what ``up`` started; returns the names of the parts that were running."""
        started, _ = self._load()
        stopped = self._stop_all(started)
        for f in (self.state_file, self.env_file):
            f.unlink(missing_ok=True)
        return stopped

    @staticmethod
    def _stop_all(started: list[Managed]) -> list[str]:
        return [m.name for m in reversed(started) if stop(m)]

    def status(self) -> list[ComponentStatus]:
        started, _ = self._load()
        rows = []
        for m in started:
            running = m.alive()
            rows.append(
                ComponentStatus(
                    m.name,
                    running,
                    running and _healthy(m),
                    m.url,
                    m.pid,
                    m.started_at,
                    note=str(m.extra.get("storage", "")),
                )
            )
        return rows


def _healthy(m: Managed) -> bool:
    check: dict[str, Callable[[str], bool]] = {
        "broker": components.broker_ready,
        "redis": components.redis_ready,
        "registry": components.registry_ready,
        "s3": components.s3_ready,
    }
    return check[m.name](m.url) if m.name in check else True
