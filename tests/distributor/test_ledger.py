"""The delivery ledger's hash chain: a clean copy verifies; a changed, removed or reordered entry is named."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.distributor.ledger import GENESIS, Chain, LedgerBroken, entry_hash, read_jsonl, verify, write_jsonl


def entries(n: int = 6) -> list[dict[str, Any]]:
    chain = Chain()
    return [
        chain.append(
            {
                "kind": "change",
                "outcome": "delivered",
                "reason": None,
                "event_id": f"ev-{i}",
                "change_event_id": f"ev-{i}",
                "holder": ("tax", "hrss")[i % 2],
                "agreement_id": "tax-2024-007",
                "purpose": "taxpayer registration",
                "legal_basis": "Tax Collection Law",
                "entity_type": "person",
                "entity_key": f"key-{i}",
                "authority_version": i,
                "fields": ["id_number", "name"],
                "withheld_fields": [],
                "inbox": "inbox.tax",
                "at": 1_760_000_000_000 + i,
            }
        )
        for i in range(1, n + 1)
    ]


def pairs(items: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"line {i}", e) for i, e in enumerate(items, 1)]


def broken(items: list[dict[str, Any]]) -> str:
    with pytest.raises(LedgerBroken) as e:
        verify(pairs(items))
    return str(e.value)


def test_a_clean_chain_verifies_and_continues_after_its_head() -> None:
    items = entries()
    result = verify(pairs(items))
    assert (result.entries, result.seq, result.head) == (6, 6, items[-1]["hash"])
    assert items[0]["prev_hash"] == GENESIS and items[1]["prev_hash"] == items[0]["hash"]
    more = Chain.after(items[-1]).append({**items[0], "event_id": "ev-7"})
    assert verify(pairs([*items, more])).seq == 7


def test_decoded_timestamps_hash_as_the_milliseconds_they_were() -> None:
    items = entries(2)
    decoded = [{**e, "at": datetime.fromtimestamp(e["at"] / 1000, UTC)} for e in items]
    assert verify(pairs(decoded)).entries == 2


def test_a_changed_entry_is_named() -> None:
    items = entries()
    items[2] = {**items[2], "fields": ["id_number", "name", "address"]}
    assert "entry seq 3 at line 3 (event ev-3, holder hrss, person key-3) was changed" in broken(items)


def test_a_changed_and_rehashed_entry_is_found_by_the_next_link() -> None:
    items = entries()
    forged = {**items[2], "holder": "nobody"}
    items[2] = {**forged, "hash": entry_hash(forged)}
    assert "entry seq 4 at line 4" in broken(items) and "entry seq 3 was rewritten" in broken(items)


def test_a_removed_entry_is_named() -> None:
    items = entries()
    del items[3]
    assert "entry seq 5 at line 4" in broken(items) and "entry seq 4 was removed" in broken(items)


def test_reordered_entries_are_named() -> None:
    items = entries()
    items[1], items[2] = items[2], items[1]
    message = broken(items)
    assert "entry seq 3 at line 2" in message and "reordered" in message


def test_a_cut_off_end_is_found_only_against_a_known_head() -> None:
    items = entries()
    assert verify(pairs(items[:-1])).seq == 5
    with pytest.raises(LedgerBroken, match="cut off the end"):
        verify(pairs(items[:-1]), head=items[-1]["hash"])


def test_the_cli_verifies_a_jsonl_copy_and_names_the_tampered_entry(tmp_path: Path) -> None:
    copy = tmp_path / "ledger.jsonl"
    assert write_jsonl(entries(), copy) == 6
    assert [e["seq"] for _, e in read_jsonl(copy)] == [1, 2, 3, 4, 5, 6]

    def audit(path: Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "onceonly", "audit", "verify", "--file", str(path)]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    clean = audit(copy)
    assert clean.returncode == 0, clean.stderr
    assert "ledger ok: 6 entries" in clean.stdout
    lines = copy.read_text().splitlines()
    tampered = json.loads(lines[4])
    tampered["holder"] = "civil_affairs"
    lines[4] = json.dumps(tampered)
    copy.write_text("\n".join(lines) + "\n")
    result = audit(copy)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "entry seq 5 at line 5" in result.stderr and "was changed" in result.stderr
