"""Source fixtures: the application's database on SQLite and on the machine's PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def app_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty application database (the source test creates what it needs)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hukou.db'}"
    return str(request.getfixturevalue("postgres_db"))
