"""Mistakes an operator can make with replay, bootstrap, status and lag: each is one clear line and a non-zero exit.

They are ``OnceonlyError`` subclasses, so the CLI prints them without a traceback and the HTTP routes answer 4xx.
"""

from __future__ import annotations

from onceonly.errors import OnceonlyError


class NothingToReplay(OnceonlyError):
    """The selection holds no change the holder would receive: replaying it would do nothing."""


class BadWindow(OnceonlyError):
    """The replay window cannot be used: a time in the future, an end before the start, a bad duration."""


class UnknownKey(OnceonlyError):
    """A key no change topic of the holder's entity types holds (a typo, or the wrong entity type)."""


class NoAgreement(OnceonlyError):
    """The holder is a department, but no agreement grants it anything: there is nothing it may receive."""


class HolderBusy(OnceonlyError):
    """Another replay or bootstrap for the same holder holds its lock; the message names who and since when."""

    exit_code = 3


class UnknownEvent(OnceonlyError):
    """No receipt and no ledger entry names this event id."""


class DistributorNotReady(OnceonlyError):
    """The distributor does not deliver to the holder yet, so a snapshot now could miss what happens meanwhile."""
