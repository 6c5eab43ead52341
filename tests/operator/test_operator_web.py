"""The operator service as a process, against a real pipeline (distributor and three holders' subscribers on the
session broker), seen through its HTTP API and through headless Chromium: the live page must show every holder with
the same numbers the API gives, and its screenshot must be a real picture (not blank, not one colour)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dlq_scorecard_kit import produce

from onceonly.catalog import schema_dir
from onceonly.demo.city import seed_city
from onceonly.demo.holders import create_store, holder_agreement, sqlite_store, subscriber_config
from onceonly.demo.truth import Truth
from onceonly.demo.workload import seed
from onceonly.publisher import Publisher
from onceonly.settings import Settings
from onceonly.stack.process import free_port
from onceonly.testing import process_env
from services.distributor import load_agreements, make_distributor
from services.subscriber import make_subscriber

RUNNING = ("hrss", "health", "tax")  # holders with a subscriber; the others' inboxes fill up (lag)
WINDOW = (1280, 900)


CHROMIUM_NAMES = ("chromium", "chromium-browser")


def find_chromium() -> str:
    """The headless browser on PATH. Without one the page test is skipped on a developer's machine, but fails
    under CI (the CI variable set): .ci/run installs Chromium, so its absence there is a broken setup, not a skip."""
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    reason = f"no chromium binary on PATH ({', '.join(CHROMIUM_NAMES)}): apt-get install -y chromium"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; under CI the page must be checked (.ci/run installs it)")
    pytest.skip(reason)


@pytest.fixture
def chromium() -> str:
    """Requested before the pipeline, so a missing browser is known before the pipeline is built."""
    return find_chromium()


def test_a_missing_chromium_skips_on_a_laptop_and_fails_under_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no browser
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no chromium binary"):
        find_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="under CI"):
        find_chromium()
    fake = tmp_path / "chromium-browser"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert find_chromium() == str(fake)


@pytest.fixture
def pipeline(topics: Settings, tmp_path: Path) -> Iterator[dict[str, int]]:
    """Distributor and subscribers running in threads; 20 people registered, one poison record for hrss.
    Yields holder -> changes applied, once the pipeline is quiet."""
    settings = topics
    agreements = load_agreements(schema_dir() / "agreements.yaml")
    workers: list[Any] = [make_distributor(agreements, settings)]
    for holder in RUNNING:
        config = subscriber_config(holder_agreement(agreements, holder), sqlite_store(tmp_path, holder))
        create_store(config.sink.url, config.sink)  # type: ignore[union-attr, arg-type]
        workers.append(make_subscriber(config, settings))
    stop = threading.Event()
    threads = [threading.Thread(target=w.run, args=(stop,), daemon=True) for w in workers]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while not (workers[0].assigned.is_set() and all(w.assigned for w in workers[1:])):
            assert time.monotonic() < deadline, "services did not join their groups"
            time.sleep(0.1)
        truth = Truth()
        changes = [step.change for step in seed(seed_city(20), truth)]
        with Publisher(settings) as publisher:
            publisher.publish_many(changes)
        produce(settings, "inbox.hrss", b"poison", b"\x00\x7f\xff\xff\xfa not a change")
        produce(settings, "change.person", b"garbage", b"not framed")  # the distributor's dead letter
        applied: dict[str, int] = {}
        while time.monotonic() < deadline:
            applied = {h: w.stats["applied"] for h, w in zip(RUNNING, workers[1:], strict=True)}
            if applied["hrss"] == len(changes) and workers[1].stats["dead_lettered"] == 1:
                break
            time.sleep(0.2)
        assert applied["hrss"] == len(changes), applied
        yield applied
    finally:
        stop.set()
        for t in threads:
            t.join(15)


@pytest.fixture
def operator_url(topics: Settings, tmp_path: Path) -> Iterator[str]:
    """``onceonly operator serve`` as its own process on a free port."""
    port = free_port()
    env = process_env(topics, ONCEONLY_STATE_DIR=str(tmp_path / "state"), ONCEONLY_REDIS_URL=topics.redis_url or "")
    log = (tmp_path / "operator.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "onceonly", "operator", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (tmp_path / "operator.log").read_text()
            assert time.monotonic() < deadline, "the operator service did not start"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes), unfiltered."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, up_left = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 0xFF
        rows.append(bytes(line[j] for j in range(stride) if j % bpp < 3))  # RGB only
        previous = line
    return width, height, rows


def test_the_live_page_shows_every_holder_with_the_apis_numbers(
    chromium: str, pipeline: dict[str, int], operator_url: str, topics: Settings, tmp_path: Path
) -> None:
    live = httpx.get(f"{operator_url}/api/live", timeout=30).json()
    shown = {h["holder"]: h for h in live["holders"]}
    assert set(RUNNING) <= set(shown), shown.keys()
    for holder, applied in pipeline.items():
        assert (shown[holder]["applied"], shown[holder]["lag"]) == (applied, 0), holder
    assert shown["hrss"]["dead_letters_open"] == 1 and shown["hrss"]["recent"][0]["outcome"] in (
        "applied",
        "dead_lettered",
    )
    assert shown["civil_affairs"]["lag"] > 0 and shown["civil_affairs"]["applied"] == 0, "no subscriber runs there"
    assert live["distributor_dead_letters_open"] == 1

    metrics = httpx.get(f"{operator_url}/metrics", timeout=30).text
    assert 'onceonly_dead_letters_open{source="hrss"} 1.0' in metrics
    assert 'onceonly_dead_letters_open{source="distributor"} 1.0' in metrics
    (letter,) = httpx.get(f"{operator_url}/api/dlq", params={"holder": "hrss"}, timeout=30).json()["dead_letters"]
    assert letter["stage"] == "VALUE_CONVERTER" and letter["open"]
    assert httpx.get(f"{operator_url}/api/dlq/{letter['id']}", timeout=30).json()["record"] is None
    assert httpx.get(f"{operator_url}/api/dlq/nonsense", timeout=30).status_code == 422
    assert httpx.get(f"{operator_url}/api/dlq/hrss:0:999", timeout=30).status_code == 404
    assert httpx.get(f"{operator_url}/api/dlq", params={"holder": "nobody"}, timeout=30).status_code == 422
    bad = httpx.post(f"{operator_url}/api/dlq/redrive", json={"ids": [letter["id"]], "operator": "ops"}, timeout=30)
    assert bad.status_code == 422, "a re-drive without a reason is refused"
    card = httpx.get(f"{operator_url}/api/scorecard", params={"since": "1h", "format": "html"}, timeout=30)
    assert card.status_code == 200 and "<svg" in card.text and ">hrss<" in card.text
    assert httpx.get(f"{operator_url}/api/scorecard", params={"since": "7x"}, timeout=30).status_code == 422

    page = tmp_path / "page.png"
    browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    browser += ["--virtual-time-budget=8000", f"--window-size={WINDOW[0]},{WINDOW[1]}"]
    dom = subprocess.run([*browser, "--dump-dom", f"{operator_url}/"], capture_output=True, text=True, timeout=90)
    assert 'data-rendered="yes"' in dom.stdout, dom.stderr[-2000:]
    for holder, h in shown.items():
        section = dom.stdout.split(f'id="holder-{holder}"', 1)[1].split("</section>", 1)[0]
        assert f"<h2>{holder}</h2>" in section and h["name"] in section
        assert f'data-field="applied"><b>{h["applied"]}</b>' in section, (holder, section[:500])
        assert f'data-field="dead_letters_open"><b>{h["dead_letters_open"]}</b>' in section
    assert "hrss:" in dom.stdout and "distributor dead letters open: 1" in dom.stdout

    shot = subprocess.run([*browser, f"--screenshot={page}", f"{operator_url}/"], capture_output=True, timeout=90)
    assert page.is_file(), shot.stderr[-2000:]
    width, height, rows = png_pixels(page.read_bytes())
    assert (width, height) == WINDOW
    pixels = [row[i : i + 3] for row in rows[::4] for i in range(0, len(row), 12)]  # a sample grid
    colours = len(set(pixels))
    luminance = [0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2] for p in pixels]
    mean = sum(luminance) / len(luminance)
    spread = (sum((v - mean) ** 2 for v in luminance) / len(luminance)) ** 0.5
    assert colours > 20 and spread > 8, f"the screenshot looks blank: {colours} colours, luminance spread {spread:.1f}"

    # Re-driving over HTTP: the same checks and the same ledger as the CLI.
    redrive = f"{operator_url}/api/dlq/redrive"
    asked = {"ids": [letter["id"]], "operator": "ops", "reason": "INC-3: registry restored"}
    refused = httpx.post(redrive, json={**asked, "set": ["op=u"]}, timeout=30)
    assert refused.status_code == 422 and "cannot be edited" in refused.json()["detail"]
    assert httpx.post(redrive, json={**asked, "all": True}, timeout=30).status_code == 422
    done = httpx.post(redrive, json=asked, timeout=30)
    assert done.status_code == 200, done.text
    assert done.json()["redriven"][0]["target"] == topics.topic("inbox.hrss") and done.json()["redriven"][0]["seq"] == 1
    again = httpx.post(redrive, json=asked, timeout=30)
    assert again.status_code == 409 and "re-driven already" in again.json()["detail"]
    deadline = time.monotonic() + 30
    while not (letters := httpx.get(f"{operator_url}/api/dlq", params={"holder": "hrss"}, timeout=30).json())[
        "dead_letters"
    ]:
        assert time.monotonic() < deadline, "the re-driven garbage did not come back as a new dead letter"
        time.sleep(0.3)
    assert letters["dead_letters"][0]["redrive_of"] == letter["id"], "it failed again: a new letter says where from"
