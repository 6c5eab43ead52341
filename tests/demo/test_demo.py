"""The main job end to end on the session stack: every holder converges, the poison record is dead-lettered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from onceonly.demo.run import DemoOptions, run_demo


def test_a_small_city_converges_at_every_holder(stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCEONLY_BOOTSTRAP_SERVERS", stack.bootstrap_servers)
    monkeypatch.setenv("ONCEONLY_REGISTRY_URL", stack.registry_url)
    monkeypatch.setenv("ONCEONLY_PROFILE", "dev")
    said: list[str] = []
    result = run_demo(DemoOptions(people=200, state_dir=tmp_path, timeout=180), said.append, lambda _: None)
    assert result.ok, result.problems
    assert result.converged == ["public_security", "civil_affairs", "health", "hrss", "housing_fund", "tax"]
    assert result.dead_letters == 1
    assert "schema id" in result.poison_reason
    assert result.changes > 200
    assert result.line().startswith("converged 6/6 holders, ")
