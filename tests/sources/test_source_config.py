"""The ``sources:`` section: mistakes are one line naming the source and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.sources import OutboxSourceConfig, SnapshotSourceConfig, load_sources
from onceonly.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "onceonly.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_valid_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUKOU_PW", "s3cret")
    config = load_sources(
        write(
            tmp_path,
            """
sources:
  hukou:
    kind: outbox
    department: public_security
    url: postgresql+psycopg://hukou:${HUKOU_PW}@db/hukou
  registrations:
    kind: snapshot
    department: market_regulation
    entity_type: enterprise
    input: {kind: csv, path: /exports/enterprise-*.csv}
""",
        )
    )
    hukou, registrations = config.select(None)
    assert isinstance(hukou, OutboxSourceConfig) and "s3cret" in hukou.url and hukou.name == "hukou"
    assert isinstance(registrations, SnapshotSourceConfig) and registrations.input.kind == "csv"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            "s: {kind: snapshot, department: tax, entity_type: person, input: {kind: csv, path: x.csv}}",
            "tax is not the authority for person",
        ),
        ("s: {kind: outbox, department: police, url: 'sqlite:///x.db'}", "unknown department 'police'"),
        ("s: {kind: ftp, department: tax}", "s"),
        ("s: {kind: outbox, department: health, url: 'sqlite:///x.db', table: 'drop table'}", "table"),
        ("s: {kind: snapshot, department: health, entity_type: death, input: {kind: sql, url: 'sqlite://'}}", "table"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, section: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_sources(write(tmp_path, f"sources:\n  {section}\n"))
    assert message in str(e.value) and str(tmp_path) in str(e.value)


def test_an_unknown_source_name(tmp_path: Path) -> None:
    config = load_sources(write(tmp_path, "sources:\n  a: {kind: outbox, department: health, url: 'sqlite://'}\n"))
    with pytest.raises(ConfigError, match="no source named 'b'"):
        config.select("b")
