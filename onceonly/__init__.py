"""onceonly: record a change once; every department that holds the data gets it."""

from __future__ import annotations

__version__ = "0.1.0"
