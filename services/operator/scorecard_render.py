"""The scorecard three ways: a rich table for the terminal, JSON for scripts, a static HTML page with an SVG chart.

The page is one self-contained file (inline CSS and SVG drawn here, no scripts, no CDN): it opens on a machine with
no internet, and it can be mailed or archived as the record of a period's service level.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape

from rich.table import Table

from services.operator.scorecard import HolderScore, Scorecard


def duration(ms: int | None) -> str:
    """Milliseconds for people: 850 ms, 12.4 s, 3.2 min, 5.1 h, 2.0 d."""
    if ms is None:
        return "-"
    for limit, unit, size in (
        (1000, "ms", 1),
        (60_000, "s", 1000),
        (3_600_000, "min", 60_000),
        (86_400_000, "h", 3_600_000),
    ):
        if ms < limit:
            return f"{ms} ms" if unit == "ms" else f"{ms / size:.1f} {unit}"
    return f"{ms / 86_400_000:.1f} d"


def when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _pct(h: HolderScore, digits: int = 1) -> str:
    return "-" if h.within_target_pct is None else f"{h.within_target_pct:.{digits}f}%"


def lag_text(h: HolderScore) -> str:
    """Records waiting, and how long the oldest has waited: "57 (oldest 12.3 s)"."""
    if h.lag is None:
        return "-"
    if h.lag and h.lag_oldest_s is not None:
        return f"{h.lag} (oldest {duration(int(h.lag_oldest_s * 1000))})"
    return str(h.lag)


def _distributor(card: Scorecard) -> str:
    backlog = "-" if card.distributor_lag is None else str(card.distributor_lag)
    return f"distributor: {card.distributor_dead_letters_open} dead letters open, {backlog} changes not yet distributed"


def rich_table(card: Scorecard) -> Table:
    table = Table(
        title=f"onceonly scorecard {when(card.since_ms)} to {when(card.until_ms)}, target {duration(card.target_ms)}",
        caption=f"in time: applied within the target; DLQ: dead letters open; lag: inbox records not applied yet\n"
        f"{_distributor(card)}",
    )
    table.add_column("holder", no_wrap=True)
    for name in ("received", "applied", "in time", "p50", "p99", "DLQ", "lag"):
        table.add_column(name, justify="right", no_wrap=True)
    for h in card.holders:
        table.add_row(
            h.holder,
            str(h.received),
            str(h.applied),
            f"{h.within_target} ({_pct(h, 0)})",
            duration(h.p50_ms),
            duration(h.p99_ms),
            f"[red]{h.dead_letters_open}[/]" if h.dead_letters_open else "0",
            lag_text(h),
        )
    return table


def as_json(card: Scorecard) -> str:
    return json.dumps(card.as_json(), indent=2, ensure_ascii=False)


def svg_chart(card: Scorecard, width: int = 760) -> str:
    """Horizontal bars per holder: p50 and p99 propagation, with the target as a dashed line."""
    row, label_w, pad = 34, 150, 16
    height = pad * 2 + row * max(len(card.holders), 1) + 24
    worst = max([card.target_ms, *(h.p99_ms or 0 for h in card.holders)])
    scale = (width - label_w - pad * 2 - 70) / (worst * 1.05 or 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'role="img" aria-label="propagation time per holder">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    for i, h in enumerate(card.holders):
        y = pad + i * row
        parts.append(f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end" font-size="13">{escape(h.holder)}</text>')
        for j, (value, colour, name) in enumerate(((h.p50_ms, "#4c8bd6", "p50"), (h.p99_ms, "#1f3f73", "p99"))):
            bar_w = max((value or 0) * scale, 1 if value is not None else 0)
            by = y + 3 + j * 13
            parts.append(
                f'<rect x="{label_w}" y="{by}" width="{bar_w:.1f}" height="11" fill="{colour}">'
                f"<title>{escape(h.holder)} {name} {duration(value)}</title></rect>"
            )
            parts.append(
                f'<text x="{label_w + bar_w + 4:.1f}" y="{by + 10}" font-size="10" fill="#333">'
                f"{name} {duration(value)}</text>"
            )
    tx = label_w + card.target_ms * scale
    bottom = pad + row * max(len(card.holders), 1)
    parts.append(
        f'<line x1="{tx:.1f}" y1="{pad - 4}" x2="{tx:.1f}" y2="{bottom}" stroke="#c0392b" stroke-dasharray="5,4"/>'
    )
    parts.append(
        f'<text x="{tx:.1f}" y="{bottom + 16}" text-anchor="middle" font-size="11" fill="#c0392b">'
        f"target {duration(card.target_ms)}</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def html_page(card: Scorecard) -> str:
    rows = "".join(
        "<tr>"
        f"<td>{escape(h.holder)}<div class=name>{escape(h.name)}</div></td>"
        f"<td>{h.received}</td><td>{h.applied}</td><td>{h.within_target} ({_pct(h)})</td>"
        f"<td>{duration(h.p50_ms)}</td><td>{duration(h.p99_ms)}</td>"
        f'<td class="{"bad" if h.dead_letters_open else ""}">{h.dead_letters_open}</td>'
        f"<td>{escape(lag_text(h))}</td>"
        "</tr>"
        for h in card.holders
    )
    notes = "".join(f"<li>{escape(n)}</li>" for n in card.notes)
    period = f"{when(card.since_ms)} to {when(card.until_ms)}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>onceonly scorecard {escape(period)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ border-bottom: 1px solid #ddd; padding: .4rem .8rem; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
.name {{ color: #777; font-size: .8rem; }}
.bad {{ color: #c0392b; font-weight: bold; }}
</style></head><body>
<h1>onceonly scorecard</h1>
<p>{escape(period)}; target: a change is applied at a holder within {duration(card.target_ms)} of being recorded.</p>
<table id="scorecard"><thead><tr><th>holder</th><th>received</th><th>applied</th>
<th>within {duration(card.target_ms)}</th><th>p50</th><th>p99</th><th>dead letters open</th><th>lag now</th>
</tr></thead>
<tbody>{rows}</tbody></table>
<p>{escape(_distributor(card))}</p>
<h2>Propagation time (recorded at the authority to applied at the holder)</h2>
{svg_chart(card)}
<ul>{notes}</ul>
</body></html>
"""
