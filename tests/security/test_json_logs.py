"""Structured logs: one JSON object per line, the change's identity on each, secrets scrubbed."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from onceonly.logs import change_fields, configure_logging, is_secret_key, log_context, redact

log = logging.getLogger("onceonly.test.logs")


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = configure_logging("INFO", stream=buffer)
    yield buffer
    logging.getLogger().removeHandler(handler)


def parsed(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_every_line_carries_the_change_fields(lines: io.StringIO) -> None:
    log.info("applied", extra={"event_id": "e-1", "holder": "tax", "topic": "inbox.tax", "offset": 17})
    log.warning("broker slow")
    applied, slow = parsed(lines)
    assert applied["message"] == "applied" and applied["level"] == "INFO" and applied["logger"] == log.name
    assert (applied["event_id"], applied["holder"], applied["topic"], applied["offset"]) == (
        "e-1",
        "tax",
        "inbox.tax",
        17,
    )
    assert {"event_id", "holder", "topic"} <= slow.keys() and slow["event_id"] is None
    assert applied["ts"].endswith("+00:00")


def test_a_context_tags_every_line_inside_it(lines: io.StringIO) -> None:
    with log_context(event_id="e-2", holder="housing_fund"):
        log.info("decoded")
        with log_context(topic="inbox.housing_fund"):
            log.info("applied", extra={"holder": "overridden-by-extra"})
    log.info("idle")
    decoded, applied, idle = parsed(lines)
    assert (decoded["event_id"], decoded["holder"], decoded["topic"]) == ("e-2", "housing_fund", None)
    assert (applied["topic"], applied["holder"]) == ("inbox.housing_fund", "overridden-by-extra")
    assert idle["event_id"] is None


def test_contexts_do_not_leak_between_concurrent_tasks(lines: io.StringIO) -> None:
    async def handle(event_id: str) -> None:
        with log_context(event_id=event_id):
            await asyncio.sleep(0.01)
            log.info("done")

    async def main() -> None:
        await asyncio.gather(handle("a"), handle("b"))

    asyncio.run(main())
    assert sorted(r["event_id"] for r in parsed(lines)) == ["a", "b"]


def test_exceptions_are_one_line_with_the_traceback_inside(lines: io.StringIO) -> None:
    try:
        _ = {"present": 1}["missing"]
    except KeyError:
        log.exception("lookup failed", extra={"event_id": "e-3"})
    (record,) = parsed(lines)
    assert "KeyError" in record["exception"] and record["event_id"] == "e-3"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("sasl_password=hunter22 user=tax", "hunter22"),
        ("{'sasl.password': 'hunter22', 'acks': 'all'}", "hunter22"),
        ('{"password": "hunter22"}', "hunter22"),
        ("ssl.key.password: hunter22", "hunter22"),
        ('PlainLoginModule required username="admin" password="hun ter22";', "hun ter22"),
        ("postgresql+psycopg://gjj:hunter22@db/gjj", "hunter22"),
        ("redis://:hunter22@redis:6379/0", "hunter22"),
        ("Authorization: Bearer eyJhbGciOi.hunter22", "hunter22"),
        ("X-API-Key: hunter22", "hunter22"),
        ("api_key=hunter22", "hunter22"),
        ("sasl_password=SecretStr('**********')", "SecretStr"),
    ],
)
def test_secret_looking_values_are_redacted(text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert "***" in redact(text)


def test_ordinary_text_is_left_alone() -> None:
    text = "applied e-1 to tax in 12 ms (timeout=30s, tokens_used=3) http://registry:8081/subjects"
    assert redact(text) == text


def test_secret_named_extra_fields_are_masked_at_any_depth(lines: io.StringIO) -> None:
    log.info("config", extra={"conf": {"sasl.password": "p1", "nested": [{"api_key": "p2"}]}, "ssl_key_password": "p3"})
    (record,) = parsed(lines)
    assert record["conf"] == {"sasl.password": "***", "nested": [{"api_key": "***"}]}
    assert record["ssl_key_password"] == "***"
    assert all(is_secret_key(k) for k in ("sasl.password", "ssl_key_password", "API-Key", "private_key", "token"))
    assert not any(is_secret_key(k) for k in ("event_id", "holder", "topic", "keyword", "bypass_count"))


def test_text_format_redacts_too() -> None:
    buffer = io.StringIO()
    handler = configure_logging("INFO", json=False, stream=buffer)
    try:
        log.info("url %s", "redis://:hunter22@redis", extra={"holder": "tax"})
    finally:
        logging.getLogger().removeHandler(handler)
    line = buffer.getvalue()
    assert "hunter22" not in line and "holder=tax" in line


def test_configuring_twice_replaces_the_handler() -> None:
    root = logging.getLogger()
    before, level = len(root.handlers), root.level
    first = configure_logging("INFO", stream=io.StringIO())
    second = configure_logging("DEBUG", stream=io.StringIO())
    try:
        assert first not in root.handlers and second in root.handlers
        assert len(root.handlers) == before + 1 and root.level == logging.DEBUG
    finally:
        root.removeHandler(second)
        root.setLevel(level)


def test_change_fields_leave_out_only_what_is_unknown(lines: io.StringIO) -> None:
    """None must not hide the worker's context (its holder); partition 0 and offset 0 are known, not missing."""
    with log_context(holder="tax"):
        log.warning("dead letter", extra=change_fields(None, None, "inbox.tax", 0, 0, outcome="dead_lettered"))
    (line,) = parsed(lines)
    assert (line["event_id"], line["holder"], line["topic"], line["partition"], line["offset"]) == (
        None,
        "tax",
        "inbox.tax",
        0,
        0,
    )
    assert line["outcome"] == "dead_lettered"
