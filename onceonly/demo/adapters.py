"""The platform's adapters as the demo runs them: the same commands an operator runs, as child processes.

- ``onceonly source run public_security.yaml``: the outbox source on the household registration database, for the
  whole run (polling every 0.2 s on SQLite; woken by LISTEN/NOTIFY on PostgreSQL).
- ``onceonly source run civil_affairs.yaml --once``: the snapshot-diff sources on the day's CSV exports, as a daily
  cron job would run them; the demo runs them a second time to show that a re-run emits nothing.
- ``onceonly gateway serve gateway.yaml --port P``: the HTTP gateway; the file stores health's API key hashed, the
  key itself stays in the demo process (health's client).

Every child is stopped (SIGTERM, then SIGKILL after a grace period) when the demo ends, fails or is interrupted.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from onceonly.demo.authorities import EXPORT_COLUMNS
from onceonly.errors import ConfigError, StackError
from onceonly.settings import Settings
from onceonly.signing import generate_api_key, hash_api_key
from onceonly.stack.process import free_port

HUKOU_URL_ENV = "ONCEONLY_DEMO_HUKOU_URL"
_REPORT = re.compile(r"^(\S+): (\d+) published, (\d+) dead-lettered", re.MULTILINE)


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of an adapter process: this run's cluster, registry, Redis and topic prefix."""
    env = {
        **os.environ,
        "ONCEONLY_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "ONCEONLY_REGISTRY_URL": settings.registry_url,
        "ONCEONLY_TOPIC_PREFIX": settings.topic_prefix,
        "ONCEONLY_BROKER_QUIRKS": settings.broker_quirks,
        "ONCEONLY_PROFILE": settings.profile,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    if settings.redis_url:
        env["ONCEONLY_REDIS_URL"] = settings.redis_url
    return env


class Child:
    """One adapter process, its output in ``log``."""

    def __init__(self, name: str, cmd: list[str], log: Path, env: dict[str, str]) -> None:
        self.name = name
        self.cmd = cmd
        self.log = log
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._out = self.log.open("ab")
        # Same process group as the demo: a Ctrl-C or a closed terminal reaches the adapters too; and if the demo
        # is killed outright (SIGKILL), the kernel sends them SIGTERM (Linux), so no adapter outlives it.
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            preexec_fn=_term_with_parent if sys.platform == "linux" else None,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, wait ``grace`` seconds, then SIGKILL; returns the exit code."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._out is not None:
            self._out.close()
            self._out = None
        return None if proc is None else proc.returncode


def _term_with_parent() -> None:
    """In the child, before exec: ask for SIGTERM when the parent dies (prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


@dataclass
class SnapshotRun:
    published: int = 0
    rejected: int = 0
    seconds: float = 0.0


@dataclass
class AdapterCounts:
    """What each adapter carried, for the progress table and the summary."""

    outbox_written: int = 0
    outbox_published: int = 0
    outbox_dead: int = 0
    snapshot_rows: int = 0
    snapshot_runs: list[SnapshotRun] = field(default_factory=list)
    gateway_posted: int = 0
    gateway_accepted: int = 0
    gateway_retries: int = 0
    gateway_replay_checked: bool = False
    gateway_refused: list[str] = field(default_factory=list)
    sdk_published: int = 0

    @property
    def snapshot_events(self) -> int:
        return self.snapshot_runs[0].published if self.snapshot_runs else 0

    def short(self) -> str:
        """One line for the live table."""
        snap = f"{self.snapshot_events}" if self.snapshot_runs else "waiting for the export"
        return (
            f"outbox {self.outbox_published}/{self.outbox_written} published · snapshot diff {snap} · "
            f"gateway {self.gateway_accepted}/{self.gateway_posted} accepted · sdk {self.sdk_published}"
        )

    def lines(self) -> list[str]:
        """The per-adapter summary."""
        out = [
            f"public_security → outbox source: {self.outbox_published} of {self.outbox_written} outbox rows published"
            + (f", {self.outbox_dead} dead-lettered" if self.outbox_dead else ""),
        ]
        runs = self.snapshot_runs
        if runs:
            again = ", ".join(str(r.published) for r in runs[1:])
            out.append(
                f"civil_affairs → snapshot diff of CSV exports: {runs[0].published} events from {self.snapshot_rows} "
                f"rows" + (f" ({runs[0].rejected} refused)" if runs[0].rejected else "") + f"; re-run emitted {again}"
            )
        replay = "; a repeated post was answered from its Idempotency-Key" if self.gateway_replay_checked else ""
        out.append(
            f"health → gateway: {self.gateway_accepted} of {self.gateway_posted} posts accepted"
            + (f" ({self.gateway_retries} retried)" if self.gateway_retries else "")
            + (f", {len(self.gateway_refused)} refused" if self.gateway_refused else "")
            + replay
        )
        out.append(f"hrss → Python SDK: {self.sdk_published} published")
        return out


class AdapterProcesses:
    """Writes the adapters' configuration files, starts and stops their processes."""

    def __init__(self, folder: Path, settings: Settings, state_dir: Path) -> None:
        self.folder = folder
        self.settings = settings
        self.state_dir = state_dir
        self.health_key = generate_api_key()
        self.env = child_env(settings)
        self.children: list[Child] = []
        self.gateway_url = ""
        self.outbox: Child | None = None
        self.gateway: Child | None = None

    # -- configuration ---------------------------------------------------------------------------------
    def write_configs(self, hukou_url: str, hukou_schema: str | None, exports: Path) -> None:
        import sqlalchemy as sa

        if sa.make_url(hukou_url).password is not None:  # a password stays out of the file, as in production
            self.env[HUKOU_URL_ENV] = hukou_url
            hukou_url = "${" + HUKOU_URL_ENV + "}"
        outbox: dict[str, Any] = {
            "kind": "outbox",
            "department": "public_security",
            "system": "hukou",
            "url": hukou_url,
            "table": "outbox",
            "aggregate_types": {"person": "person", "household": "household"},
            "batch_size": 1000,
            "poll_interval": 0.2,
            "heartbeat_interval": 5.0,
        }
        if hukou_schema:
            outbox["schema"] = hukou_schema
        self._write("public_security.yaml", {"sources": {"hukou-outbox": outbox}})
        civil = {
            f"mz-{entity_type}-export": {
                "kind": "snapshot",
                "department": "civil_affairs",
                "system": f"{entity_type} registry",
                "entity_type": entity_type,
                "input": {"kind": "csv", "path": str(exports / f"{entity_type}-*.csv")},
                "key_field": "registration_no",
                "columns": columns,
                "state": str(self.folder / "civil_affairs" / f"{entity_type}-snapshot.sqlite"),
                "interval": 86400.0,
                "batch_size": 1000,
            }
            for entity_type, columns in EXPORT_COLUMNS.items()
        }
        self._write("civil_affairs.yaml", {"sources": civil})
        self._write("gateway.yaml", {"gateway": {"api_keys": {"health": hash_api_key(self.health_key)}}})

    def _write(self, name: str, data: dict[str, Any]) -> None:
        text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
        (self.folder / name).write_text(text, encoding="utf-8")

    def _onceonly(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "onceonly", *args, "--state-dir", str(self.state_dir)]

    # -- long-running adapters -------------------------------------------------------------------------
    def start(self) -> None:
        """The outbox source and the gateway; returns once both are started (the gateway answers /healthz)."""
        if not self.settings.redis_url:
            raise ConfigError("the demo's gateway needs Redis for Idempotency-Key", hint="set ONCEONLY_REDIS_URL")
        logs = self.folder / "logs"
        self.outbox = Child(
            "outbox source",
            self._onceonly("source", "run", str(self.folder / "public_security.yaml")),
            logs / "outbox-source.log",
            self.env,
        )
        port = free_port()
        self.gateway_url = f"http://127.0.0.1:{port}"
        cmd = self._onceonly("gateway", "serve", str(self.folder / "gateway.yaml"), "--port", str(port))
        self.gateway = Child("gateway", cmd, logs / "gateway.log", self.env)
        for child in (self.outbox, self.gateway):
            self.children.append(child)
            child.start()
        self._wait_gateway()

    def _wait_gateway(self, timeout: float = 30.0) -> None:
        import httpx

        assert self.gateway is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.gateway.alive():
                raise StackError(f"the gateway stopped at start: {self.gateway.tail()}")
            try:
                if httpx.get(self.gateway_url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise StackError(f"the gateway did not answer on {self.gateway_url} within {timeout:.0f}s")

    def dead(self) -> list[Child]:
        """Long-running adapters that stopped by themselves."""
        return [c for c in (self.outbox, self.gateway) if c is not None and c.proc is not None and not c.alive()]

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()

    # -- the daily snapshot job ------------------------------------------------------------------------
    def snapshot_once(self, timeout: float = 180.0) -> SnapshotRun:
        """``onceonly source run civil_affairs.yaml --once``: both registries' exports, diffed and published."""
        cmd = self._onceonly("source", "run", str(self.folder / "civil_affairs.yaml"), "--once")
        log = self.folder / "logs" / "snapshot-source.log"
        started = time.monotonic()
        with log.open("ab") as err:
            done = subprocess.run(cmd, env=self.env, stdout=subprocess.PIPE, stderr=err, timeout=timeout, check=False)
        out = done.stdout.decode(errors="replace")
        with log.open("a", encoding="utf-8") as f:
            f.write(out)
        if done.returncode != 0:
            raise StackError(f"the snapshot source failed (exit {done.returncode}); see {log}")
        run = SnapshotRun(seconds=time.monotonic() - started)
        for _, published, rejected in _REPORT.findall(out):
            run.published += int(published)
            run.rejected += int(rejected)
        return run
