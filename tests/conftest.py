"""Suite-wide fixtures: the session broker and friends come from ``onceonly.testing``; this file adds the net under
them: whatever a failed test left running (a broker, a registry that came up too late) is stopped at the end, so
it cannot slow or disturb the next run on the same machine."""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest

pytest_plugins = ["onceonly.testing"]


@pytest.fixture(scope="session", autouse=True)
def no_processes_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    left = [p for p in psutil.Process().children(recursive=True) if p.is_running()]
    names = ", ".join(sorted({_name(p) for p in left}))
    for p in left:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(left, timeout=5)
    for p in alive:
        p.kill()
    if left:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"stopped {len(left)} processes the tests left running: {names}")


def _name(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline()[:3])[:80]
    except psutil.Error:
        return str(p.pid)
