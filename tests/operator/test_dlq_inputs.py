"""Every operator mistake with dead letters is one clear line and a non-zero exit; edits are checked before sending.

The dead letters here are written exactly as the subscriber and the distributor write them (same header builder),
so these tests need no running pipeline.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from distributor.distributor_kit import person_id
from dlq_scorecard_kit import Cli, cli_runner, encode_change, read_all, write_dead_letter
from subscriber.subscriber_kit import person_change

from onceonly.settings import Settings
from onceonly.standard import RegistryClient, Serde
from onceonly.testing import process_env
from services.operator.action_ledger import ActionLedger
from services.operator.dead_letters import DeadLetterId, find_dead_letter
from services.operator.dlq_view import letters
from services.operator.record_edit import EditRefused, edit_letter
from services.operator.redrive import Redriver


@pytest.fixture
def cli(topics: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    return cli_runner(topics, tmp_path, monkeypatch, capsys)


@pytest.fixture
def serde(topics: Settings) -> Serde:
    return Serde(RegistryClient(topics.registry_url))


def one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def open_ids(settings: Settings, source: str) -> list[str]:
    return [str(s.letter.id) for s in letters(settings, [source])]


def open_by_key(settings: Settings, source: str) -> dict[bytes, str]:
    """Key -> id of the open dead letters (ids follow partitions, which follow the key's hash, not write order)."""
    return {s.letter.key or b"": str(s.letter.id) for s in letters(settings, [source])}


def test_empty_queues_bad_ids_unknown_holders_and_bad_options(cli: Cli) -> None:
    code, out, err = cli("dlq", "list", "--holder", "housing_fund")
    assert (code, out.strip()) == (0, "no open dead letters for housing_fund"), err
    code, out, err = cli("dlq", "redrive", "--all", "--holder", "tax", "--reason", "sweep")
    assert (code, out.strip()) == (0, "nothing to re-drive: no open dead letters for tax"), err

    mistakes = {
        ("dlq", "list", "--holder", "nobody"): (2, "unknown department 'nobody'"),
        ("dlq", "show", "--id", "nonsense"): (1, "'nonsense' is not a dead-letter id"),
        ("dlq", "show", "--id", "housing_fund-0-1"): (1, "is not a dead-letter id"),
        ("dlq", "show", "--id", "nobody:0:1"): (2, "unknown department 'nobody'"),
        ("dlq", "show", "--id", "housing_fund:7:0"): (1, "has partitions 0, 1, 2"),
        ("dlq", "show", "--id", "housing_fund:0:99"): (1, "partition 0 has no record at offset 99"),
        ("dlq", "redrive", "--reason", "x"): (1, "give --id (one or more) or --all"),
        ("dlq", "redrive", "--id", "tax:0:0", "--all", "--reason", "x"): (1, "give --id (one or more) or --all"),
        ("dlq", "redrive", "--id", "tax:0:0", "--holder", "tax", "--reason", "x"): (1, "--holder goes with --all"),
        ("dlq", "redrive", "--all", "--edit", "--reason", "x"): (1, "give exactly one --id"),
        ("dlq", "redrive", "--id", "tax:0:0"): (1, "a re-drive needs --reason"),
        ("dlq", "redrive", "--id", "tax:0:0", "--reason", "x"): (1, "no dead letter tax:0:0"),
        ("dlq", "redrive", "--id", "tax:0:0", "--reason", " "): (1, "a re-drive needs --reason"),
    }
    for args, (want_code, want) in mistakes.items():
        code, _, err = cli(*args)
        assert code == want_code, (args, err)
        assert want in one_line(err), (args, err)


def test_every_command_explains_itself_with_an_example() -> None:
    from typer.testing import CliRunner

    from onceonly.cli import app

    for command in (["dlq", "list"], ["dlq", "show"], ["dlq", "redrive"], ["dlq", "history"], ["scorecard"]):
        result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0 and "Example:  onceonly " + " ".join(command) in result.output, command
    result = CliRunner().invoke(app, ["operator", "serve", "--help"], env={"COLUMNS": "200"})
    assert "Example:  onceonly operator serve" in result.output


def test_operator_serve_refuses_a_taken_or_impossible_port(cli: Cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, _, err = cli("operator", "serve", "--port", str(port))
        assert code == 1 and f"127.0.0.1:{port} is already in use" in one_line(err)
    code, _, err = cli("operator", "serve", "--port", "70000")
    assert code == 1 and "--port 70000 is not a TCP port" in one_line(err)


def test_a_users_terminal_sees_one_line_and_no_traceback(topics: Settings, tmp_path: Path) -> None:
    env = process_env(topics, ONCEONLY_STATE_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "onceonly", "dlq", "show", "--id", "housing_fund:0:5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert one_line(result.stderr).startswith("error: no dead letter housing_fund:0:5")


def test_edits_are_checked_against_the_schema_and_the_data_standard(
    cli: Cli, topics: Settings, serde: Serde, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = person_change(person_id(3), 4, district_code="000000")
    value = encode_change(serde, topics, record, "inbox.hrss")
    write_dead_letter(topics, "hrss", record["entity_key"].encode(), value, "CHECK constraint failed: xzqh")
    (letter_id,) = open_ids(topics, "hrss")
    redrive = ("dlq", "redrive", "--id", letter_id, "--reason", "INC-7")

    refusals = {
        "after.distict_code=110105": "after has no field 'distict_code'",
        "event_id=e0000000-0000-0000-0000-000000000000": "event_id cannot be edited",
        "authority_version=5": "authority_version cannot be edited",
        "after.id_number=110105198001010000": "breaks the data standard: after.id_number",
        "after.birth_date=yesterday": "after.birth_date: 'yesterday' is not a date",
        "after.district_code": "is not field=value",
        "after.district_code=000000": "nothing was changed",
        "correction=maybe": "'maybe' is not a JSON value",
        "correction=3": "does not fit schema",
        "before.name=x": "before is empty (null) in this record",
    }
    letter = find_dead_letter(topics, DeadLetterId.parse(letter_id))
    for assignment, want in refusals.items():  # what `dlq redrive --set` runs, without a process per case
        with pytest.raises(EditRefused) as refused:
            edit_letter(serde, letter, assignments=[assignment], interactive=False)
        assert want in str(refused.value), assignment
    for assignment in ("after.distict_code=110105", "event_id=x"):  # and through the CLI: one line, exit 1
        code, _, err = cli(*redrive, "--set", assignment)
        assert code == 1 and refusals.get(assignment, "event_id cannot be edited") in one_line(err), err

    monkeypatch.delenv("EDITOR", raising=False)
    monkeypatch.delenv("VISUAL", raising=False)
    with pytest.raises(EditRefused, match=r"no editor: set \$EDITOR"):
        edit_letter(serde, letter, assignments=[], interactive=True)
    monkeypatch.setenv("EDITOR", "false")
    with pytest.raises(EditRefused, match="the editor 'false' exited with status 1; nothing was re-driven"):
        edit_letter(serde, letter, assignments=[], interactive=True)
    broken = tmp_path / "broken-editor"
    broken.write_text('#!/bin/sh\necho "{" > "$1"\n')
    broken.chmod(0o755)
    monkeypatch.setenv("EDITOR", str(broken))
    code, _, err = cli(*redrive, "--edit")
    assert code == 1 and "the edited record is not JSON: line 2" in one_line(err)
    assert open_ids(topics, "hrss") == [letter_id], "a refused edit sends nothing and closes nothing"

    fixer = tmp_path / "fixer"  # an operator's editor session, scripted: change the district, save, quit
    fixer.write_text('#!/bin/sh\nsed -i \'s/"district_code": "000000"/"district_code": "110108"/\' "$1"\n')
    fixer.chmod(0o755)
    monkeypatch.setenv("EDITOR", str(fixer))
    code, out, err = cli(*redrive, "--edit")
    assert code == 0, err
    assert 'edit after.district_code: "000000" -> "110108"' in out
    assert open_ids(topics, "hrss") == []
    (sent,) = read_all(topics, "inbox.hrss")
    decoded = serde.decode(sent.value())
    assert decoded.record["after"]["district_code"] == "110108"
    assert decoded.schema_id == serde.decode(value).schema_id, "framed with the schema it was written with"
    assert decoded.record["event_id"] == record["event_id"] and sent.key() == record["entity_key"].encode()
    (entry,) = ActionLedger(topics).entries()
    assert (entry["action"], entry["operator"], entry["reason"]) == ("edit_redrive", "test-operator", "INC-7")
    assert entry["original_sha256"] != entry["sent_sha256"]


def test_undecodable_and_distributor_dead_letters(cli: Cli, topics: Settings, serde: Serde) -> None:
    write_dead_letter(
        topics, "tax", b"K", b"not framed at all", "BadMagicByte: first byte is 110", stage="VALUE_CONVERTER"
    )
    (garbage,) = open_ids(topics, "tax")
    code, _, err = cli("dlq", "redrive", "--id", garbage, "--reason", "x", "--set", "op=u")
    assert code == 1 and f"dead letter {garbage} does not decode (BadMagicByte" in one_line(err)

    change = person_change(person_id(9), 2)
    value = encode_change(serde, topics, change, "change.person")
    write_dead_letter(topics, "distributor", b"A", value, "not encodable for tax", holder="tax")
    write_dead_letter(topics, "distributor", b"B", value, "odd", origin="receipts")
    write_dead_letter(topics, "distributor", change["entity_key"].encode(), value, "registry was missing a schema")
    by_key = open_by_key(topics, "distributor")
    for_tax, from_receipts, fine = by_key[b"A"], by_key[b"B"], by_key[change["entity_key"].encode()]

    code, _, err = cli("dlq", "redrive", "--id", for_tax, "--reason", "x")
    assert code == 1 and "failed for holder tax only" in one_line(err)
    code, _, err = cli("dlq", "redrive", "--id", from_receipts, "--reason", "x")
    assert code == 1 and "which is not a change topic of this deployment" in one_line(err)

    code, out, err = cli("dlq", "redrive", "--all", "--holder", "distributor", "--reason", "INC-9: schema registered")
    assert code == 0, err
    assert f"re-driven {fine} -> {topics.topic('change.person')}" in out
    assert f"skipped {for_tax}" in err and f"skipped {from_receipts}" in err
    (sent,) = read_all(topics, "change.person")
    assert sent.value() == value and dict(sent.headers())["onceonly.redrive.of"] == fine.encode()
    assert sorted(open_ids(topics, "distributor")) == sorted([for_tax, from_receipts])
    assert read_all(topics, "inbox.tax") == [], "a full change never goes into an inbox"


def test_two_operators_at_once_keep_one_chain(topics: Settings, serde: Serde) -> None:
    for n in range(4):
        write_dead_letter(topics, "health", f"K{n}".encode(), b"\x00\x00\x00\x00\x01x", f"reason {n}")
    ids = [DeadLetterId.parse(i) for i in open_ids(topics, "health")]
    failures: list[BaseException] = []

    def operator(name: str, mine: list[DeadLetterId]) -> None:
        try:
            for letter_id in mine:
                Redriver(topics).one(letter_id, operator=name, reason="parallel")
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=operator, args=(n, ids[i::2])) for i, n in enumerate(("ann", "bob"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures
    ledger = ActionLedger(topics, serde)
    assert ledger.verify().entries == 4
    assert sorted(e["dead_letter_id"] for e in ledger.entries()) == sorted(map(str, ids))
    assert open_ids(topics, "health") == []
    assert os.environ.get("ONCEONLY_REDIS_URL") or topics.redis_url, "the lock needs the machine's Redis"


def test_show_names_why_a_record_does_not_decode(cli: Cli, topics: Settings) -> None:
    write_dead_letter(topics, "tax", b"Z", b"\x00\x7f\xff\xff\xf0abc", "unknown schema id", stage="VALUE_CONVERTER")
    (letter_id,) = open_ids(topics, "tax")
    code, out, err = cli("dlq", "show", "--id", letter_id)
    assert code == 0, err
    shown = json.loads(out)
    assert shown["record"] is None and "UnknownSchemaId" in shown["record_error"]
    assert shown["value_preview"].startswith("00 7f ff ff f0")
    assert shown["reason"] == "unknown schema id" and shown["open"] is True
