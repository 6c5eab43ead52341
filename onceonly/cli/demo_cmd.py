"""``onceonly demo``: placeholder wired in the foundation; the demo issue fills it."""

from __future__ import annotations


def demo() -> None:
    """Run the whole story on the embedded stack.

    Example:  onceonly demo --people 1000
    """
    raise NotImplementedError
