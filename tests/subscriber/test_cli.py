"""``onceonly subscriber``: a mistake in the configuration is one line on stderr and a non-zero exit, no traceback.

The configuration cases go through the real entry point (``onceonly.cli.main``) in this process, because a
process start costs seconds here; one case runs ``python -m onceonly`` to see what a user's terminal sees.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from subscriber_kit import make_store

from onceonly.cli import main
from onceonly.settings import Settings
from onceonly.stack.process import free_port

Cli = Callable[..., tuple[int, str, str]]
SQL = 'sink: {kind: sql, url: "sqlite:///gjj.db", tables: {person: {table: gjj_grxx, key_column: sfzhm, columns: {}}}}'


@pytest.fixture
def cli(tmp_path: Path, topics: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """``cli(*args) -> (exit code, stdout, stderr)``: ``onceonly subscriber ...`` against the test's broker."""
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "BOOTSTRAP_SERVERS": topics.bootstrap_servers,
        "REGISTRY_URL": topics.registry_url,
        "TOPIC_PREFIX": topics.topic_prefix,
        "STATE_DIR": str(tmp_path),
    }.items():
        monkeypatch.setenv(f"ONCEONLY_{name}", value)
    monkeypatch.delenv("GJJ_DB_PASSWORD", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["onceonly", "subscriber", *args])
        try:
            main()
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (None, "onceonly.yaml: file not found"),
        ("subscribers: [\n", "not valid YAML: expected the node content, but found '<stream end>' at line 2, column 1"),
        ("subscribers:\n  nobody:\n    delete_policy: delete\n    " + SQL, "unknown department 'nobody'"),
        ("subscribers:\n  tax:\n    sink: {kind: ftp}", "tax.sink: Input tag 'ftp' found using 'kind' does not match"),
        (
            "subscribers:\n  tax:\n    " + SQL.replace("columns: {}", "columns: {}, deleted_column: zt, extra: 1"),
            "tax.sink.sql.tables.person.table.extra: Extra inputs are not permitted",
        ),
        (
            "subscribers:\n  tax:\n    "
            + SQL.replace("sqlite:///gjj.db", "postgresql://gjj:${GJJ_DB_PASSWORD}@db/gjj"),
            "environment variable GJJ_DB_PASSWORD is not set",
        ),
        ("subscribers:\n  tax:\n    delete_policy: delete\n    " + SQL, "table gjj_grxx does not exist"),
        (
            "subscribers:\n  tax:\n    source_topic: change.persn\n    sink: {kind: files, path: 'out/x.jsonl'}",
            "topic {prefix}change.persn does not exist (run: onceonly topics apply)",
        ),
        (  # the same check on the other host (it asks through a consumer, the Faust host through an admin client)
            "subscribers:\n  tax:\n    engine: loop\n    source_topic: change.persn\n"
            "    sink: {kind: files, path: 'out/x.jsonl'}",
            "topic {prefix}change.persn does not exist (run: onceonly topics apply)",
        ),
        ("subscribers:\n  tax:\n    engine: fast\n    " + SQL, "tax.engine: Input should be 'faust' or 'loop'"),
    ],
)
def test_a_bad_config_is_one_line_and_a_nonzero_exit(
    cli: Cli, tmp_path: Path, topics: Settings, config: str | None, message: str
) -> None:
    if config is not None:
        (tmp_path / "onceonly.yaml").write_text(config)
    code, _, err = cli("run", "onceonly.yaml")
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message.format(prefix=topics.topic_prefix) in lines[0]


def test_check_opens_each_store_and_help_has_an_example(cli: Cli, tmp_path: Path) -> None:
    make_store(f"sqlite:///{tmp_path / 'gjj.db'}")
    (tmp_path / "onceonly.yaml").write_text(
        "subscribers:\n  housing_fund:\n    source_topic: change.person\n    delete_policy: delete\n    " + SQL
    )
    code, out, err = cli("check", "onceonly.yaml")
    assert code == 0, err
    assert "housing_fund: change.person -> sql sqlite:///gjj.db ok" in out
    code, out, _ = cli("run", "--help")
    assert code == 0 and "Example:  onceonly subscriber run onceonly.yaml" in out


@pytest.fixture
def api_url() -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    """A department API over real HTTP that answers every request 404; yields its URL and what it was asked."""
    asked: list[tuple[str, str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            asked.append((self.command, self.path, self.headers.get("Authorization", "")))
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_GET = do_POST = answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", asked
    finally:
        server.shutdown()
        server.server_close()


def http_config(tmp_path: Path, url: str) -> None:
    (tmp_path / "onceonly.yaml").write_text(
        "subscribers:\n  tax:\n    source_topic: change.person\n    sink: {kind: http, url: '"
        + url
        + "/v1/{entity_type}', timeout: 0.5, headers: {Authorization: 'Bearer t0k'}}"
    )


def test_check_asks_an_http_sink_s_api_and_any_answer_is_reachable(
    cli: Cli, tmp_path: Path, api_url: tuple[str, list[tuple[str, str, str]]]
) -> None:
    url, asked = api_url
    http_config(tmp_path, url)
    code, out, err = cli("check", "onceonly.yaml")
    assert code == 0, err
    assert f"tax: change.person -> http {url}/v1/{{entity_type}} ok" in out
    assert asked == [("HEAD", "/v1/", "Bearer t0k")], "one HEAD on the URL up to {entity_type}, with its headers"


def test_check_says_an_http_sink_s_api_that_does_not_answer_is_not_reachable(cli: Cli, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never answers
        for url, why in [
            (f"http://127.0.0.1:{free_port()}", "ConnectError"),
            (f"http://127.0.0.1:{silent.getsockname()[1]}", "ReadTimeout"),
        ]:
            http_config(tmp_path, url)
            code, out, err = cli("check", "onceonly.yaml")
            assert code != 0 and "ok" not in out, (url, out)
            lines = err.strip().splitlines()
            assert len(lines) == 1, err
            assert lines[0].startswith(f"error: tax: the store is not reachable: HEAD {url}/v1/: {why}"), err


def test_a_broker_that_does_not_answer_is_one_line_in_a_real_terminal(tmp_path: Path) -> None:
    (tmp_path / "onceonly.yaml").write_text("subscribers:\n  tax:\n    sink: {kind: files, path: 'out/x.jsonl'}")
    env = {**os.environ, "ONCEONLY_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", "ONCEONLY_STATE_DIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "onceonly", "subscriber", "run", "onceonly.yaml"]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(errors) == 1 and "the Kafka cluster did not answer" in errors[0], result.stderr
    assert result.stderr.count("Connection refused") <= 2, "librdkafka's repeats are held back"
