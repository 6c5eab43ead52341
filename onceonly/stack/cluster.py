"""The cluster a long-running command or a benchmark works against: the configured one, else the embedded stack."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from onceonly.settings import Settings, load_settings
from onceonly.stack import EmbeddedStack, StackOptions
from onceonly.stack.process import free_port, port_open


def stack_settings(env: Mapping[str, str], **overrides: Any) -> Settings:
    """Settings for the connection env ``EmbeddedStack.up`` returned (its broker wants the dev profile)."""
    fields: dict[str, Any] = {
        "bootstrap_servers": env["ONCEONLY_BOOTSTRAP_SERVERS"],
        "registry_url": env["ONCEONLY_REGISTRY_URL"],
        "redis_url": env.get("ONCEONLY_REDIS_URL"),
        "broker_quirks": env.get("ONCEONLY_BROKER_QUIRKS", "tansu"),
        "profile": "dev",
    }
    return Settings(**{**fields, **overrides})


@contextmanager
def cluster(state_dir: Path, *, keep: bool = False, say: Callable[[str], None] = lambda _: None) -> Iterator[Settings]:
    """``ONCEONLY_BOOTSTRAP_SERVERS``'s cluster when set; else the embedded stack in ``state_dir``, reused when it
    runs, else started here (on free ports when the defaults are taken) and stopped afterwards unless ``keep``."""
    if os.environ.get("ONCEONLY_BOOTSTRAP_SERVERS"):
        yield load_settings()
        return
    stack = EmbeddedStack(state_dir)
    ports = StackOptions()
    if port_open("127.0.0.1", ports.broker_port) or port_open("127.0.0.1", ports.registry_port):
        ports = StackOptions(broker_port=free_port(), registry_port=free_port())
    env, started = stack.up(ports, say)
    say("embedded stack " + ("started" if started else "already running") + f": {env['ONCEONLY_BOOTSTRAP_SERVERS']}")
    try:
        yield stack_settings(env)
    finally:
        if started and not keep:
            stack.down()
            say("embedded stack stopped")


@contextmanager
def scratch_cluster(name: str) -> Iterator[Settings]:
    """A cluster for one benchmark run: topics under a fresh prefix, an embedded stack in a temporary folder."""
    state = Path(tempfile.mkdtemp(prefix=f"onceonly-{name}-"))
    try:
        with cluster(state) as base:
            yield base.model_copy(update={"topic_prefix": f"{name}{uuid.uuid4().hex[:8]}."})
    finally:
        shutil.rmtree(state, ignore_errors=True)
