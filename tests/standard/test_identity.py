"""Identifier rules of the data standard: resident ID numbers, credit codes, event ids."""

from __future__ import annotations

import pytest

from onceonly.standard import event_id, resident_id_problem, upgrade_id15, uscc_problem
from onceonly.standard.identity import id18_check_char, legacy_id15, uscc_check_char


def test_the_published_example_id_number_is_valid() -> None:
    # GB 11643-1999's worked example: 11010519491231002X.
    assert id18_check_char("11010519491231002") == "X"
    assert resident_id_problem("11010519491231002X") is None


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("110105194912310021", "check character is 1, expected X"),
        ("11010519491331002X", "not a date"),
        ("1101051949123100", "15 or 18 characters"),
        ("11010519491231002Y", "17 digits and a digit or X"),
        ("11010549123100A", "digits only"),
        ("110105491331002", "not a date"),
    ],
)
def test_a_bad_id_number_says_why(value: str, words: str) -> None:
    problem = resident_id_problem(value)
    assert problem is not None and words in problem


def test_a_15_digit_number_upgrades_to_its_18_digit_form() -> None:
    assert resident_id_problem("110105491231002") is None
    upgraded = upgrade_id15("110105491231002")
    assert upgraded == "11010519491231002X"
    with pytest.raises(ValueError, match="only a 15-digit"):
        upgrade_id15(upgraded)


def test_an_18_digit_number_of_the_1900s_names_the_15_digit_number_it_was_upgraded_from() -> None:
    assert legacy_id15("11010519491231002X") == "110105491231002"
    assert legacy_id15(upgrade_id15("110105491231002")) == "110105491231002"
    assert legacy_id15("110105200001010016") is None  # born in 2000: never had a 15-digit number
    assert legacy_id15("110105194912310021") is None  # wrong check character: not an ID number
    assert legacy_id15("91110105MA0000001X") is None  # a credit code


def test_unified_social_credit_code_check() -> None:
    code = "91350100M000100Y4"
    full = code + uscc_check_char(code)
    assert uscc_problem(full) is None
    wrong = full[:-1] + ("0" if full[-1] != "0" else "1")
    assert "check character" in (uscc_problem(wrong) or "")
    assert "18 characters" in (uscc_problem("91350100M000100YI") or "")


def test_event_id_is_the_same_for_the_same_change_and_differs_otherwise() -> None:
    a = event_id("public_security", "person", "11010519491231002X", 3)
    assert a == event_id("public_security", "person", "11010519491231002X", 3)
    assert a != event_id("public_security", "person", "11010519491231002X", 4)
    assert a != event_id("health", "person", "11010519491231002X", 3)
