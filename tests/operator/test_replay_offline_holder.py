"""A holder offline while 1,000 changes flow, then brought back by ``replay --by-duration`` (embedded broker, real
distributor, subscribers, tracker, Redis and SQLite; the commands run through the CLI).

The tax office's subscriber is stopped while 1,000 changes flow (``lag`` must count exactly what waits in its
inbox), and its group is then reset to the end of the inbox, as an operator does to "get it going again": nothing in
Kafka says the 1,000 are missing any more, only its store lacks them. One replay brings it to the state the others
have, and ``status`` of a sample of those changes shows them applied there.
"""

from __future__ import annotations

import json
import random
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from operator_kit import PERSON_GRANTS, Phases, system, wait_for
from typer.testing import CliRunner

from onceonly.cli import app, main
from onceonly.publisher import Publisher
from onceonly.settings import Settings
from onceonly.testing import process_env
from services.operator.holder_lock import HolderLock, Owner

pytestmark = pytest.mark.broker

runner = CliRunner()


def cli(settings: Settings, *args: str, operator: str = "alice") -> Any:
    env = process_env(settings, ONCEONLY_REDIS_URL=settings.redis_url or "", ONCEONLY_OPERATOR=operator, COLUMNS="200")
    return runner.invoke(app, list(args), env=env)


def as_json(result: Any) -> Any:
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def test_replay_brings_an_offline_holder_to_the_others_state(
    topics: Settings, tmp_path: Path, clean_redis: None
) -> None:
    mark = Phases()
    with system(topics, tmp_path, ["hrss", "tax"]) as s, Publisher(topics) as publisher:
        config = str(s.agreements_file)
        s.start_distributor()
        s.start_subscriber("hrss")
        s.start_subscriber("tax")
        s.start_tracker()
        s.wait_ready()
        mark("services ready")
        s.people.publish(publisher, s.people.born(200))
        for holder in ("hrss", "tax"):
            s.wait_converged(holder)
        mark("200 seeded, converged")

        # The tax office goes offline; 1,000 changes flow meanwhile.
        s.stop("subscriber.tax")
        burst = s.people.born(300) + s.people.moves(700)
        s.people.publish(publisher, burst)
        s.wait_distributed(1200)
        s.wait_converged("hrss")
        mark("burst distributed, hrss converged")
        waiting = s.count("inbox.tax") - sum(s.committed("subscriber.tax", "inbox.tax").values())
        assert waiting == len(s.people.mine("tax", burst)) > 300

        # lag counts exactly that, on the embedded broker, and how long the oldest has waited.
        wait_for(lambda: lag_of(topics, "hrss") == 0, 30, "hrss to commit what it applied")
        rows = {r["name"]: r for r in as_json(cli(topics, "lag", "--json"))}
        assert rows["tax"]["waiting"] == waiting and rows["tax"]["oldest_age_s"] > 0
        assert rows["hrss"]["waiting"] == 0 and rows["(distributor)"]["waiting"] == 0
        mark("lag checked")

        # Its group is reset to the end: it comes back, and its store lacks the burst with nothing to tell.
        s.skip_to_end("subscriber.tax", "inbox.tax")
        s.start_subscriber("tax")
        s.wait_ready()
        mark("tax back")
        assert lag_of(topics, "tax") == 0
        assert s.differences("tax"), "the store should lack the burst"
        hrss_inbox, hrss_committed = s.count("inbox.hrss"), s.committed("subscriber.hrss", "inbox.hrss")

        planned = as_json(
            cli(topics, "replay", "--holder", "tax", "--by-duration", "10m", "--dry-run", "--json", "-c", config)
        )
        assert planned["deliveries"] >= waiting and planned["partitions"]
        mark("dry runs")

        replayed = cli(
            topics, "replay", "--holder", "tax", "--by-duration", "10m", "--reason", "INC-7 group reset", "-c", config
        )
        assert replayed.exit_code == 0, (replayed.output, replayed.exception)
        assert f"replayed {planned['deliveries']} changes to tax" in replayed.stdout
        mark("replayed")
        s.wait_converged("tax")
        s.wait_converged("hrss")
        mark("tax converged")

        # status of a sample of the burst: applied at tax (by the replay), and at hrss. Three through the CLI (it
        # also reads both ledgers), a hundred more through the same lookup without the ledgers.
        mine = s.people.mine("tax", burst)
        for change in random.Random(3).sample(mine, 100):
            wait_for(lambda c=change: state_at(topics, c["event_id"], "tax") == "applied", 30, "the tracker")
        sample = random.Random(4).sample(mine, 3)
        for change in sample:
            lines = {line["holder"]: line for line in as_json(cli(topics, "status", change["event_id"], "--json"))}
            assert lines["tax"]["state"] == "applied" and lines["hrss"]["state"] in ("applied", "skipped_duplicate")
            assert any(d["via"].startswith("replay ") for d in lines["tax"]["deliveries"])
            assert any(d["via"] == "distributor" for d in lines["tax"]["deliveries"])
        trace = as_json(cli(topics, "trace", "--key", sample[0]["entity_key"], "--json"))
        assert {"hrss", "tax"} <= {line["holder"] for line in trace}
        for args in (["status", sample[0]["event_id"]], ["trace", "--key", sample[0]["entity_key"]], ["lag"]):
            shown = cli(topics, *args)  # the tables people read
            assert shown.exit_code == 0 and "tax" in shown.stdout, (args, shown.output, shown.exception)
        mark("status and trace")

        # What the replay wrote carries only what tax's agreement grants, marked with the operation.
        replayed_records = [r for h, r in s.inbox("tax") if "onceonly.replay" in h]
        assert len(replayed_records) == planned["deliveries"]
        assert all(set(r["after"]) == set(PERSON_GRANTS["tax"]) for r in replayed_records if r["after"])

        # Nobody else noticed: hrss's inbox and committed offsets did not move.
        assert s.count("inbox.hrss") == hrss_inbox and s.committed("subscriber.hrss", "inbox.hrss") == hrss_committed

        # The replay is in its ledger, chained, with the operator and the reason.
        ops = cli(topics, "holder", "operations", "tax", "--verify")
        assert ops.exit_code == 0, (ops.output, ops.exception)
        assert "alice" in ops.stdout and "INC-7 group reset" in ops.stdout and "replay ledger ok" in ops.stdout
        mark("ledger")


def test_a_second_replay_for_the_same_holder_is_refused(
    topics: Settings,
    tmp_path: Path,
    clean_redis: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two replays of one holder at once: the second is refused by the lock, naming the first's operator."""
    with system(topics, tmp_path, ["hrss", "tax"]) as s, Publisher(topics) as publisher:
        config = str(s.agreements_file)
        s.people.publish(publisher, s.people.born(60))
        from services.operator.replay import plan_replay, run_replay
        from services.operator.time_window import Window

        plan = plan_replay(topics, s.agreements, "hrss", Window.of(by_duration="1h"))
        errors: list[BaseException] = []

        def first() -> None:
            try:
                run_replay(topics, plan, reason="slow one", operator="bob", rate=20)
            except BaseException as e:
                errors.append(e)

        thread = threading.Thread(target=first, daemon=True)
        thread.start()
        lock = HolderLock.for_holder(topics, "hrss", Owner.me("probe", "-"))
        wait_for(lambda: lock.holder() is not None, 10, "the first replay to take the lock")
        # The second, as a shell runs it (``onceonly.cli.main``): exit code 3 and one line on stderr.
        for name, value in process_env(
            topics, ONCEONLY_REDIS_URL=topics.redis_url or "", ONCEONLY_OPERATOR="carol"
        ).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(
            sys, "argv", ["onceonly", "replay", "--holder", "hrss", "--by-duration", "1h", "-c", config]
        )
        with pytest.raises(SystemExit) as exited:
            main()
        assert exited.value.code == 3
        message = capsys.readouterr().err.strip()
        assert len(message.splitlines()) == 1 and "Traceback" not in message, message
        assert message.startswith("error: holder hrss is busy: replay ") and "by bob" in message, message
        assert lock.holder() is not None and lock.holder().operator == "bob"  # type: ignore[union-attr]
        other = cli(topics, "replay", "--holder", "tax", "--by-duration", "1h", "--dry-run", "-c", config)
        assert other.exit_code == 0, other.output  # another holder is not blocked
        thread.join(30)
        assert not errors, errors
        assert lock.holder() is None, "the lock is released when the replay ends"
        assert s.count("inbox.hrss") == 60  # the refused replay sent nothing


def lag_of(settings: Settings, holder: str) -> int:
    from services.operator.lag_report import measure

    return measure(settings, holder)[0].waiting


def state_at(settings: Settings, event_id: str, holder: str) -> str | None:
    from services.tracker import status

    found = status(event_id, settings).get(holder)
    return found["outcome"] if found else None
