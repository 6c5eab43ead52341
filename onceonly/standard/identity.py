"""Identifiers of the data standard: resident ID numbers, unified social credit codes, event ids.

The rules live here once; the publisher, the gateway and the demo all call them.
"""

from __future__ import annotations

import re
import uuid
from datetime import date

_ID18_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID18_CHECK = "10X98765432"
_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def id18_check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of an 18-character resident ID number (GB 11643-1999)."""
    total = sum(int(d) * w for d, w in zip(first17, _ID18_WEIGHTS, strict=True))
    return _ID18_CHECK[total % 11]


def _birth_date(yyyymmdd: str) -> date | None:
    try:
        return date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return None


def resident_id_problem(value: str) -> str | None:
    """Why ``value`` is not a valid resident ID number, or None when it is (15- or 18-character form)."""
    if len(value) == 18:
        if not re.fullmatch(r"\d{17}[\dX]", value):
            return "an 18-character ID number is 17 digits and a digit or X"
        if _birth_date(value[6:14]) is None:
            return f"embedded birth date {value[6:14]} is not a date"
        expected = id18_check_char(value[:17])
        if value[17] != expected:
            return f"check character is {value[17]}, expected {expected}"
        return None
    if len(value) == 15:
        if not value.isdigit():
            return "a 15-digit ID number has digits only"
        if _birth_date("19" + value[6:12]) is None:
            return f"embedded birth date 19{value[6:12]} is not a date"
        return None
    return f"an ID number has 15 or 18 characters, not {len(value)}"


def upgrade_id15(id15: str) -> str:
    """The 18-character ID number a 15-digit one became: century 19 inserted, check character appended."""
    if problem := resident_id_problem(id15):
        raise ValueError(problem)
    if len(id15) != 15:
        raise ValueError("only a 15-digit ID number can be upgraded")
    first17 = id15[:6] + "19" + id15[6:]
    return first17 + id18_check_char(first17)


def legacy_id15(id18: str) -> str | None:
    """The 15-digit number a valid 18-character one was upgraded from (born 1900-1999): the same person; else None."""
    if resident_id_problem(id18) is not None or len(id18) != 18 or id18[6:8] != "19":
        return None
    return id18[:6] + id18[8:17]


def uscc_check_char(first17: str) -> str:
    """GB 32100-2015 check character of a unified social credit code."""
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_CHARS[(31 - total % 31) % 31]


def uscc_problem(value: str) -> str | None:
    """Why ``value`` is not a valid unified social credit code, or None."""
    if len(value) != 18 or any(c not in _USCC_CHARS for c in value):
        return "a unified social credit code is 18 characters of 0-9 and A-Y without I, O, S, V, Z"
    expected = uscc_check_char(value[:17])
    if value[17] != expected:
        return f"check character is {value[17]}, expected {expected}"
    return None


def event_id(authority: str, entity_type: str, entity_key: str, authority_version: int) -> str:
    """Deterministic event id: the same change published twice is recognisably the same event."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{authority}/{entity_type}/{entity_key}/{authority_version}"))
