"""Background processes that ``stack up`` starts and ``stack down`` stops, identified by pid and command line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil


@dataclass
class Managed:
    """What we know about one process we started, persisted in ``stack.json``."""

    name: str
    pid: int
    cmd: list[str]
    url: str
    log: str
    started_at: float
    create_time: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Managed:
        return cls(**data)

    def alive(self) -> bool:
        """True only for the very process we started (pid reuse is checked by its start time)."""
        try:
            proc = psutil.Process(self.pid)
            return bool(abs(proc.create_time() - self.create_time) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return False


def spawn(name: str, cmd: list[str], url: str, log: Path, env: dict[str, str] | None = None) -> Managed:
    """Start ``cmd`` detached from our session, its output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    create_time = psutil.Process(proc.pid).create_time()
    return Managed(name, proc.pid, cmd, url, str(log), time.time(), create_time)


def stop(managed: Managed, grace: float = 10.0) -> bool:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Returns True if it was running."""
    if not managed.alive():
        return False
    try:
        proc = psutil.Process(managed.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    except psutil.NoSuchProcess:
        pass
    return True


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, managed: Managed | None = None) -> bool:
    """Poll ``check`` until it holds, the deadline passes, or the process we wait on dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        if managed is not None and not managed.alive():
            return False
        time.sleep(0.1)
    return check()


def log_tail(managed: Managed, lines: int = 3) -> str:
    try:
        text = Path(managed.log).read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])
