"""Which versions of one entity the distributor has distributed, kept small: a floor and the gaps above it.

Versions alone cannot tell a repeat from a late change: an authority's older version can reach the change topic
after a newer one (two adapters, a retry), and it may be the only one a condition holder is entitled to (the move
out of its district). So next to the latest version the state remembers what it skipped: versions below ``floor``
(the first one it saw) and inside ``gaps`` (jumps, e.g. v3 after v1) were never distributed. A version that is
neither newer nor among those was distributed (a replay after a crash, a duplicate publish) and is skipped; one
that is among them arrives late and is distributed, and the gap closes. Authorities that number versions from a
global sequence leave a gap per change; past ``MAX_GAPS`` the oldest two merge, which can only make a repeat look
late (a harmless second delivery: holders skip it as stale), never the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_GAPS = 32
Gap = tuple[int, int]  # inclusive


@dataclass(frozen=True, slots=True)
class Distributed:
    floor: int
    gaps: tuple[Gap, ...] = ()

    def covers(self, version: int) -> bool:
        """True when ``version`` (at most the latest) was distributed."""
        return version >= self.floor and not any(lo <= version <= hi for lo, hi in self.gaps)

    def advanced(self, latest: int, new: int) -> Distributed:
        """After distributing ``new`` on top of ``latest``: the versions jumped over are a gap."""
        if new <= latest + 1:
            return self
        return Distributed(self.floor, _capped((*self.gaps, (latest + 1, new - 1))))

    def filled(self, version: int) -> Distributed:
        """After distributing a late ``version``."""
        if version < self.floor:
            below = ((version + 1, self.floor - 1),) if version + 1 <= self.floor - 1 else ()
            return Distributed(version, _capped(below + self.gaps))
        gaps: list[Gap] = []
        for lo, hi in self.gaps:
            if lo <= version <= hi:
                gaps += [g for g in ((lo, version - 1), (version + 1, hi)) if g[0] <= g[1]]
            else:
                gaps.append((lo, hi))
        return Distributed(self.floor, tuple(gaps))

    def encode(self) -> bytes:
        return f"{self.floor};{','.join(f'{lo}:{hi}' for lo, hi in self.gaps)}".encode()

    @classmethod
    def parse(cls, value: str | bytes | None) -> Distributed | None:
        """The ``onceonly.distributed`` header; None when absent or unreadable."""
        try:
            text = value.decode() if isinstance(value, bytes) else value or ""
            floor, gaps = text.split(";")
            pairs = [gap.split(":") for gap in gaps.split(",") if gap]
            return cls(int(floor), tuple((int(lo), int(hi)) for lo, hi in pairs))
        except ValueError:
            return None


def _capped(gaps: tuple[Gap, ...]) -> tuple[Gap, ...]:
    ordered = sorted(gaps)
    while len(ordered) > MAX_GAPS:
        (lo, _), (_, hi) = ordered[0], ordered[1]
        ordered[:2] = [(lo, hi)]
    return tuple(ordered)
