"""onceonly: record a change once; every department that holds the data gets it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AsyncPublisher", "Publisher", "__version__"]

if TYPE_CHECKING:
    from onceonly.publisher import AsyncPublisher, Publisher


def __getattr__(name: str) -> Any:
    """``from onceonly import Publisher`` without importing Kafka clients for every ``import onceonly``."""
    if name in ("Publisher", "AsyncPublisher"):
        import onceonly.publisher

        return getattr(onceonly.publisher, name)
    raise AttributeError(f"module 'onceonly' has no attribute {name!r}")
