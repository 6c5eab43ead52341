"""Helpers of the registry tests: a registry process a test can kill and restart, and schema builders."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from onceonly.stack.components import registry_ready
from onceonly.stack.process import Managed, free_port, log_tail, spawn, stop, wait_until
from onceonly.testing import StackInfo


def record(name: str, *fields: dict[str, Any], namespace: str = "test") -> str:
    """An Avro record schema as the JSON text a client sends."""
    return json.dumps({"type": "record", "name": name, "namespace": namespace, "fields": list(fields)})


@dataclass
class RegistryProcess:
    """``python -m onceonly registry serve`` as `stack up` starts it, that a test can kill and start again."""

    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    managed: Managed | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        cmd = [sys.executable, "-m", "onceonly", "registry", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.managed = spawn("registry", cmd, self.url, self.log, env=self.env)
        if not wait_until(lambda: registry_ready(self.url), timeout, self.managed):
            pytest.fail(f"registry did not come up on {self.url}: {log_tail(self.managed, 10)}")

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing gets flushed on the way out."""
        assert self.managed is not None
        proc = psutil.Process(self.managed.pid)
        proc.kill()
        proc.wait(timeout=10)

    def stop(self) -> None:
        if self.managed is not None:
            stop(self.managed, grace=5)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0)


def registry_env(stack: StackInfo, prefix: str, state_dir: Path, *, broker: bool = True) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    env = {**base, "ONCEONLY_TOPIC_PREFIX": prefix, "ONCEONLY_STATE_DIR": str(state_dir), "ONCEONLY_PROFILE": "dev"}
    if broker:
        env["ONCEONLY_BOOTSTRAP_SERVERS"] = stack.bootstrap_servers
        env["ONCEONLY_BROKER_QUIRKS"] = stack.broker_quirks
    return env
