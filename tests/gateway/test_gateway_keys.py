"""API keys stored hashed (plain ones refused in production); ``onceonly gateway serve|new-key`` as users run them."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from publisher.change_kit import GOOD_ID, person_change, read_topic

from onceonly.errors import ConfigError
from onceonly.settings import Settings
from onceonly.signing import generate_api_key, hash_api_key, verify_api_key
from onceonly.stack.process import free_port
from onceonly.testing import process_env
from services.gateway import GatewayConfig, create_app, load_gateway_config

pytestmark = pytest.mark.broker


def body(version: int = 1) -> dict[str, object]:
    return {**person_change(GOOD_ID, version), "valid_from": "2024-05-01T00:00:00+08:00"}


def test_a_hashed_key_lets_its_department_in_and_nobody_else(topics: Settings) -> None:
    key, other = generate_api_key(), generate_api_key()
    config = GatewayConfig(api_keys={"public_security": hash_api_key(key), "health": hash_api_key(other)})
    with TestClient(create_app(config, topics)) as gateway:
        assert gateway.post("/v1/changes", json=body(), headers={"X-API-Key": key}).status_code == 202
        assert gateway.post("/v1/changes", json=body(2), headers={"X-API-Key": key}).status_code == 202  # cached
        assert gateway.post("/v1/changes", json=body(3), headers={"X-API-Key": key + "x"}).status_code == 401
        assert gateway.post("/v1/changes", json=body(3), headers={"X-API-Key": other}).status_code == 403
    assert [r["authority_version"] for _, r, _ in read_topic(topics, "change.person", expect=2)] == [1, 2]
    assert key not in config.model_dump_json() and key not in repr(config)


def test_production_refuses_plain_keys_and_broken_hashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "onceonly.yaml"
    config.write_text("gateway:\n  api_keys:\n    health: a-plain-key-0123456789\n")
    assert load_gateway_config(config).plain_keys() == ["health"]  # fine on a laptop
    monkeypatch.setenv("ONCEONLY_PROFILE", "prod")
    with pytest.raises(ConfigError, match="the API keys of health are written in plain"):
        load_gateway_config(config)
    config.write_text('gateway:\n  api_keys:\n    health: "scrypt$16384$8$1$c2FsdA=="\n')
    with pytest.raises(ConfigError, match=r"the API key hash of health is not scrypt\$n\$r\$p\$salt\$hash"):
        load_gateway_config(config)


def test_new_key_prints_a_key_once_and_the_hash_to_store() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "onceonly", "gateway", "new-key", "health"], capture_output=True, text=True, check=True
    ).stdout
    key = re.search(r"shown once\): (\S+)", out)
    stored = re.search(r'gateway\.api_keys\.health: "(\S+)"', out)
    assert key and stored and verify_api_key(key.group(1), stored.group(1))
    bad = subprocess.run(
        [sys.executable, "-m", "onceonly", "gateway", "new-key", "nobody"], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "unknown department 'nobody'" in bad.stderr and "Traceback" not in bad.stderr


def test_gateway_serve_runs_logs_json_and_stops_on_sigterm(topics: Settings, tmp_path: Path) -> None:
    key, port = generate_api_key(), free_port()
    (tmp_path / "onceonly.yaml").write_text(f'gateway:\n  api_keys:\n    public_security: "{hash_api_key(key)}"\n')
    log = tmp_path / "gateway.log"
    env = process_env(topics, ONCEONLY_REDIS_URL=str(topics.redis_url), ONCEONLY_STATE_DIR=str(tmp_path))
    cmd = [sys.executable, "-m", "onceonly", "gateway", "serve", "onceonly.yaml", "--port", str(port)]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        answer = httpx.post(f"{url}/v1/changes", json=body(), headers={"X-API-Key": key}, timeout=15)
        assert answer.status_code == 202, answer.text
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(10)
    # uvicorn shuts down cleanly, then re-raises the signal so the exit status tells who stopped it
    assert code in (0, -signal.SIGTERM), log.read_text()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert "Application shutdown complete." in [doc["message"] for doc in lines]
    assert any("/v1/changes" in doc["message"] and "202" in doc["message"] for doc in lines), lines
    accepted = [doc for doc in lines if doc["message"].startswith("accepted")]
    assert [(doc["event_id"], doc["department"]) for doc in accepted] == [
        (answer.json()["event_id"], "public_security")
    ]
    assert accepted[0]["topic"] == topics.topic("change.person") and isinstance(accepted[0]["offset"], int)
    assert key not in log.read_text()
