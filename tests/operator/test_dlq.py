"""``onceonly dlq`` against a real subscriber: a refused change is listed with its reason, fixed with --set,
re-driven into the holder's inbox, applied, recorded in the operators' ledger, and no longer listed as open."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from distributor.distributor_kit import person_id
from dlq_scorecard_kit import HOLDER, cli_runner, encode_change, produce, read_all
from subscriber.subscriber_kit import make_store, person_change, running, subscriber_config, table, wait_until

from onceonly.settings import Settings
from onceonly.standard import RegistryClient, Serde
from services.operator.action_ledger import ActionLedger

INBOX = f"inbox.{HOLDER}"


def test_a_refused_change_is_fixed_redriven_applied_and_closed(
    topics: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = topics
    serde = Serde(RegistryClient(settings.registry_url))
    cli = cli_runner(settings, tmp_path, monkeypatch, capsys)
    store = make_store(f"sqlite:///{tmp_path / 'gjj.db'}")
    good = person_change(person_id(1), 1, "c")
    poison = person_change(person_id(2), 1, "c", district_code="000000")  # the fund's CHECK constraint refuses it
    config = subscriber_config(store, source_topic=INBOX)

    with running(config, settings, serde) as worker:
        for record in (good, poison):
            produce(settings, INBOX, record["entity_key"].encode(), encode_change(serde, settings, record, INBOX))
        produce(settings, INBOX, b"G", b"\x00\x7f\xff\xff\xfe not avro")  # a schema id nobody registered
        wait_until(lambda: worker.stats["applied"] == 1 and worker.stats["dead_lettered"] == 2, what="3 outcomes")

        code, out, err = cli("dlq", "list", "--holder", HOLDER, "--format", "json")
        assert code == 0, err
        listed = {d["entity_key"]: d for d in json.loads(out)}
        assert sorted(listed) == sorted([poison["entity_key"], "G"])
        assert "CHECK constraint failed" in listed[poison["entity_key"]]["reason"]
        assert listed[poison["entity_key"]]["stage"] == "TASK_PUT"
        assert listed[poison["entity_key"]]["event_id"] == poison["event_id"]
        assert "schema" in listed["G"]["reason"].lower() and listed["G"]["stage"] == "VALUE_CONVERTER"
        assert all(d["open"] and d["origin"]["topic"] == settings.topic(INBOX) for d in listed.values())
        poison_id, garbage_id = listed[poison["entity_key"]]["id"], listed["G"]["id"]

        code, out, err = cli("dlq", "list", "--holder", HOLDER)  # the table a person reads
        assert code == 0 and poison_id in out and "CHECK" in out, err

        code, out, err = cli("dlq", "show", "--id", poison_id)
        assert code == 0, err
        shown = json.loads(out)
        assert shown["record"]["after"]["district_code"] == "000000"
        assert shown["headers"]["__connect.errors.exception.class.name"] == "sqlite3.IntegrityError"

        code, out, err = cli(
            "dlq", "redrive", "--id", poison_id, "--set", "after.district_code=110105", "--reason", "INC-1: fixed"
        )
        assert code == 0, err
        assert f"re-driven {poison_id} -> {settings.topic(INBOX)}" in out
        wait_until(
            lambda: any(row[0] == poison["entity_key"] and row[3] == "110105" for row in table(store)),
            what="the edited change applied at the holder",
        )

        code, out, _ = cli("dlq", "list", "--holder", HOLDER, "--format", "json")
        assert [d["id"] for d in json.loads(out)] == [garbage_id], "the re-driven letter is closed"
        code, out, _ = cli("dlq", "list", "--holder", HOLDER, "--all", "--format", "json")
        closed = {d["id"]: d for d in json.loads(out)}[poison_id]
        assert not closed["open"] and closed["redriven"]["operator"] == "test-operator"

        code, _, err = cli("dlq", "redrive", "--id", poison_id, "--reason", "again")
        assert code == 1 and "was re-driven already" in err and len(err.strip().splitlines()) == 1

        # The garbage cannot be fixed by editing; re-driven as it is, it fails again: a new open letter says so.
        code, out, err = cli("dlq", "redrive", "--all", "--holder", HOLDER, "--reason", "INC-2: try again")
        assert code == 0 and f"re-driven {garbage_id}" in out and "1 dead letters re-driven" in out, err
        wait_until(lambda: worker.stats["dead_lettered"] == 3, what="the garbage dead-lettered again")
        code, out, _ = cli("dlq", "list", "--holder", HOLDER, "--format", "json")
        (again,) = json.loads(out)
        assert again["redrive_of"] == garbage_id and again["id"] != garbage_id

    entries = ActionLedger(settings).entries()
    assert [(e["seq"], e["action"], e["dead_letter_id"]) for e in entries] == [
        (1, "edit_redrive", poison_id),
        (2, "redrive", garbage_id),
    ]
    assert entries[0]["edits"] == ['after.district_code: "000000" -> "110105"']
    assert entries[0]["reason"] == "INC-1: fixed" and entries[0]["operator"] == "test-operator"
    code, out, err = cli("dlq", "history", "--holder", HOLDER)
    assert code == 0 and "ledger ok: 2 entries, head seq 2" in out, err

    redriven = [m for m in read_all(settings, INBOX) if m.key() == poison["entity_key"].encode()][-1]
    headers = dict(redriven.headers())
    assert headers["onceonly.redrive.of"] == poison_id.encode()
    assert not any(k.startswith("__connect.errors.") for k in headers), "error headers are not sent back"
    outcomes = [
        dict(serde.decode(m.value()).record)["outcome"]
        for m in read_all(settings, "receipts")
        if dict(serde.decode(m.value()).record)["event_id"] == poison["event_id"]
    ]
    assert outcomes == ["dead_lettered", "applied"]
