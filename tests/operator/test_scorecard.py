"""``onceonly scorecard``: per holder, changes counted once, propagation from recorded_at to the first 'applied',
open dead letters, and lag measured at the fetch high watermark (the embedded broker's ListOffsets is wrong)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer
from distributor.distributor_kit import person_id
from dlq_scorecard_kit import HOLDER, Cli, cli_runner, encode_change, produce
from operator_kit import write_agreements
from subscriber.subscriber_kit import make_store, person_change, running, subscriber_config, wait_until, write_config

from onceonly.kafka import confluent_producer_config
from onceonly.settings import Settings
from onceonly.standard import RegistryClient, Serde
from services.operator.app import create_app
from services.operator.holder_lag import lag_by_holder
from services.operator.lag_report import measure
from services.operator.receipt_log import ReceiptRow
from services.operator.scorecard import BadDuration, parse_duration_ms, percentile, score
from services.subscriber.config import load_subscribers

INBOX = f"inbox.{HOLDER}"
T0 = 1_760_000_000_000


def receipt(holder: str, event: str, outcome: str, recorded: int | None, applied: int) -> ReceiptRow:
    return ReceiptRow(holder, event, outcome, "person", f"key-{event}", recorded, applied, None)


def test_each_change_counts_once_from_recorded_to_its_first_applied_receipt() -> None:
    rows = [
        receipt("tax", "a", "applied", T0, T0 + 1_000),
        receipt("tax", "a", "skipped_duplicate", T0, T0 + 9_000),  # a redelivery: still one change
        receipt("tax", "b", "applied", T0, T0 + 3_000),
        receipt("tax", "c", "dead_lettered", T0, T0 + 2_000),
        receipt("tax", "c", "applied", T0, T0 + 600_000),  # re-driven ten minutes later: that is its propagation
        receipt("tax", "d", "skipped_stale", T0, T0 + 1_500),
        receipt("tax", "e", "dead_lettered", None, T0 + 1_000),
        receipt("tax", "old", "applied", T0 - 10**9, T0 - 10**9 + 5),  # before the window
        receipt("hrss", "a", "applied", T0, T0 + 70_000),
    ]
    card = score(
        rows,
        since_ms=T0,
        target_ms=60_000,
        dead_letters_open={"tax": 1, "health": 0},
        lag={"tax": 0, "hrss": 4, "health": 0},
        now_ms=T0 + 700_000,
    )
    by = {h.holder: h for h in card.holders}
    assert list(by) == ["hrss", "tax"], "departments in registry order, only those with something to show"
    tax = by["tax"]
    assert (tax.received, tax.applied, tax.within_target, tax.skipped, tax.dead_lettered) == (5, 3, 2, 1, 1)
    assert (tax.p50_ms, tax.p99_ms, tax.max_ms) == (3_000, 600_000, 600_000)
    assert tax.within_target_pct == 50.0, "2 of the 4 it had to apply (the stale one was not needed)"
    assert (tax.dead_letters_open, tax.lag) == (1, 0)
    assert (by["hrss"].within_target, by["hrss"].lag, by["hrss"].p50_ms) == (0, 4, 70_000)
    assert json.loads(json.dumps(card.as_json()))["holders"][1]["within_target_pct"] == 50.0
    empty = score([], since_ms=T0, target_ms=1, dead_letters_open={}, lag={}, now_ms=T0)
    assert len(empty.holders) == 7 and all(h.received == 0 and h.p50_ms is None for h in empty.holders)
    only = score(rows, since_ms=T0, target_ms=1, dead_letters_open={}, lag={}, holders=["health"], now_ms=T0)
    assert [(h.holder, h.received) for h in only.holders] == [("health", 0)]


def test_durations_and_percentiles() -> None:
    assert [parse_duration_ms(t, "--since") for t in ("7d", "12h", "30m", "60s", "500ms", "90", "1.5h", "2w")] == [
        604_800_000,
        43_200_000,
        1_800_000,
        60_000,
        500,
        90_000,
        5_400_000,
        1_209_600_000,
    ]
    for bad in ("7x", "", "-1d", "0s", "d", "1 day"):
        with pytest.raises(BadDuration, match="is not a duration"):
            parse_duration_ms(bad, "--since")
    assert (percentile([], 0.5), percentile([5], 0.99), percentile(list(range(1, 101)), 0.99)) == (None, 5, 99)
    assert percentile(list(range(1, 101)), 0.5) == 50


@pytest.fixture
def cli(topics: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    return cli_runner(topics, tmp_path, monkeypatch, capsys)


def test_bad_scorecard_options_are_one_clear_line(cli: Cli, tmp_path: Path) -> None:
    mistakes = {
        ("--since", "7x"): (1, "--since '7x' is not a duration (e.g. 7d, 12h, 30m, 60s, 500ms)"),
        ("--target", "0s"): (1, "--target '0s' is not a duration"),
        ("--format", "xml"): (2, "--format 'xml' is not one of: table, json, html"),
        ("--holder", "nobody"): (2, "unknown department 'nobody'"),
        ("--holder", "distributor"): (2, "the scorecard is per holder"),
        ("--format", "html", "--out", str(tmp_path / "missing" / "x.html")): (2, "cannot write"),
    }
    for args, (want_code, want) in mistakes.items():
        code, _, err = cli("scorecard", *args)
        assert code == want_code, (args, err)
        assert want in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)


def test_scorecard_of_a_real_subscriber(topics: Settings, cli: Cli, tmp_path: Path) -> None:
    settings = topics
    serde = Serde(RegistryClient(settings.registry_url))
    store = make_store(f"sqlite:///{tmp_path / 'gjj.db'}")
    now = int(time.time() * 1000)
    fresh = [person_change(person_id(n), 1, "c") | {"recorded_at": now} for n in range(5)]
    late = person_change(person_id(7), 1, "c") | {"recorded_at": now - 120_000}  # recorded two minutes ago
    poison = person_change(person_id(8), 1, "c", district_code="000000")

    # tax has no subscriber running: 57 records in several batches wait in its inbox
    producer = Producer(confluent_producer_config(settings))
    for n in range(57):
        producer.produce(settings.topic("inbox.tax"), key=b"k%d" % (n % 5), value=b"waiting")
        if n % 10 == 0:
            producer.flush(10)
    assert producer.flush(10) == 0

    with running(subscriber_config(store, source_topic=INBOX), settings, serde) as worker:
        for r in [*fresh, late, poison]:
            produce(settings, INBOX, r["entity_key"].encode(), encode_change(serde, settings, r, INBOX))
        wait_until(lambda: worker.stats["applied"] == 6 and worker.stats["dead_lettered"] == 1, what="7 outcomes")
        wait_until(lambda: lag_by_holder(settings, [HOLDER]) == {HOLDER: 0}, what="the subscriber's commit")

        code, out, err = cli("scorecard", "--since", "1h", "--target", "60s", "--format", "json")
    assert code == 0, err
    card = json.loads(out)
    by = {h["holder"]: h for h in card["holders"]}
    assert sorted(by) == [HOLDER, "tax"]
    fund = by[HOLDER]
    assert (fund["received"], fund["applied"], fund["within_target"], fund["dead_lettered"]) == (7, 6, 5, 1)
    assert fund["within_target_pct"] == 71.4, "5 of the 7 it had to apply: the dead letter was not applied in time"
    assert fund["dead_letters_open"] == 1 and fund["lag"] == 0
    assert 0 <= fund["p50_ms"] < 60_000 <= 120_000 <= fund["p99_ms"] < 150_000
    assert by["tax"]["lag"] == 57 and by["tax"]["received"] == 0, "lag at the fetch high watermark"
    assert 0 <= by["tax"]["lag_oldest_s"] < 60 and fund["lag_oldest_s"] is None
    assert card["distributor_lag"] == 0, "no change was published, so the distributor has nothing waiting"
    assert card["target_ms"] == 60_000 and card["distributor_dead_letters_open"] == 0

    code, out, err = cli("scorecard", "--since", "1h", "--holder", HOLDER)
    assert code == 0, err
    assert re.search(rf"{HOLDER}\s*│\s*7\s*│\s*6\s*│\s*5 \(71%\)", out), out

    page = tmp_path / "card.html"
    code, out, err = cli("scorecard", "--since", "1h", "--format", "html", "--out", str(page))
    assert code == 0 and f"scorecard written to {page}" in out.replace("\n", ""), err
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "<svg" in html
    assert re.findall(r"https?://[^\"]+", html) == ["http://www.w3.org/2000/svg"], "no external assets (no CDN)"
    assert "<script" not in html and "src=" not in html and "<link" not in html
    assert f">{HOLDER}<" in html and "target 1.0 min" in html and "71.4%" in html


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_lag_measures_a_subscriber_under_its_configured_group(topics: Settings, cli: Cli, tmp_path: Path) -> None:
    """A subscriber configured with its own group_id: ``lag -c`` (and the operator service's config) measure that
    group; without the config, the default group subscriber.<holder> has committed nothing."""
    from fastapi.testclient import TestClient

    settings = topics
    serde = Serde(RegistryClient(settings.registry_url))
    store = make_store(f"sqlite:///{tmp_path / 'gjj.db'}")
    config = write_config(tmp_path / "onceonly.yaml", store, source_topic=INBOX, group_id="gjj-sync")
    config.write_text(config.read_text() + write_agreements(tmp_path / "a.yaml", ["tax"]).read_text())
    subscribers = load_subscribers(config)
    changes = [person_change(person_id(n), 1, "c") for n in range(4)]
    with running(subscribers.select(HOLDER)[0], settings, serde) as worker:
        for r in changes:
            produce(settings, INBOX, r["entity_key"].encode(), encode_change(serde, settings, r, INBOX))
        wait_until(lambda: worker.stats["applied"] == 4, what="4 applies")
        wait_until(lambda: measure(settings, HOLDER, subscribers=subscribers)[0].waiting == 0, what="the commit")

        code, out, err = cli("lag", "--holder", HOLDER, "--json", "-c", str(config))
        with TestClient(create_app(settings, config=config)) as client:
            served = client.get("/api/lag", params={"holder": HOLDER}).json()
    assert code == 0, err
    (row,) = json.loads(out)
    assert (row["name"], row["group"], row["waiting"]) == (HOLDER, f"{settings.topic_prefix}gjj-sync", 0)
    assert [(r["group"], r["waiting"]) for r in served] == [(row["group"], 0)]
    code, out, err = cli("lag", "--holder", HOLDER, "--json")
    assert code == 0, err
    (default,) = json.loads(out)
    assert (default["group"], default["waiting"]) == (f"{settings.topic_prefix}subscriber.{HOLDER}", 4)

    (tmp_path / "no-subscribers.yaml").write_text("agreements: []\n")
    mistakes = {
        ("-c", str(tmp_path / "missing.yaml")): "missing.yaml: file not found",
        ("--holder", "tax", "-c", str(config)): "no subscriber configured for department 'tax'",
        ("-c", str(tmp_path / "no-subscribers.yaml")): "no 'subscribers' section",
    }
    for args, want in mistakes.items():
        code, _, err = cli("lag", *args)
        assert code == 2 and want in err and len(err.strip().splitlines()) == 1, (args, err)
