#!/usr/bin/env python3
"""Medians of a bench/run.py results file as Markdown tables.

    python bench/summary.py bench/results/run-YYYYmmdd-HHMMSS.jsonl
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def _med(rows: list[Row], key: str) -> float:
    vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return statistics.median(vals) if vals else float("nan")


def _span(rows: list[Row], key: str) -> str:
    vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return f"{min(vals) / 1e6:.2f}-{max(vals) / 1e6:.2f}" if vals else "-"


def _groups(rows: list[Row], part: str) -> dict[tuple[int, str], list[Row]]:
    out: dict[tuple[int, str], list[Row]] = defaultdict(list)
    for r in rows:
        if r.get("part") == part:
            out[(r["clients"], r["server"])].append(r)
    return out


def _failed(group: list[Row]) -> str:
    bad = sum(1 for r in group if "error" in r)
    return f" ({bad} failed)" if bad else ""


def _order(key: tuple[int, str]) -> tuple[int, int, str]:
    return (key[0], 0 if key[1] == "ngircd" else 1, key[1])


def saturation(rows: list[Row]) -> str:
    groups = _groups(rows, "sat")
    lines = [
        "| C | server | runs | deliveries/s (median) | min-max (M/s) | x ngIRCd | p50 ms | p99 ms "
        "| lost | server us/delivery | loadgen us/delivery | peak RSS MB | core-1 busy % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(groups, key=_order):
        c, name = key
        g = [r for r in groups[key] if "error" not in r]
        base = _med([r for r in groups.get((c, "ngircd"), []) if "error" not in r],
                    "deliveries_per_s")
        dps = _med(g, "deliveries_per_s")
        lines.append(
            f"| {c} | {name} | {len(g)}{_failed(groups[key])} | {dps / 1e6:.2f} M | {_span(g, 'deliveries_per_s')} "
            f"| {dps / base:.2f} | {_med(g, 'lat_p50_us') / 1e3:.1f} | {_med(g, 'lat_p99_us') / 1e3:.1f} "
            f"| {sum(r.get('lost', 0) for r in g)} | {_med(g, 'server_us_per_delivery'):.3f} "
            f"| {_med(g, 'loadgen_us_per_delivery'):.3f} | {_med(g, 'server_vmhwm_kb') / 1024:.1f} "
            f"| {_med(g, 'cpu1_busy_pct'):.0f} |")
    return "\n".join(lines)


def latency(rows: list[Row]) -> str:
    lines = [
        "| clients | server | runs | msgs/s | deliveries/s | p50 ms | p99 ms | p99.9 ms | max ms | lost |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for part, label in (("lat", "ordinary (delayed ACK)"), ("lat-quickack", "TCP_QUICKACK")):
        groups = _groups(rows, part)
        for key in sorted(groups, key=_order):
            g = [r for r in groups[key] if "error" not in r]
            lines.append(
                f"| {key[0]} {label} | {key[1]} | {len(g)}{_failed(groups[key])} | {_med(g, 'msgs_per_s'):.0f} "
                f"| {_med(g, 'deliveries_per_s'):.0f} | {_med(g, 'lat_p50_us') / 1e3:.2f} "
                f"| {_med(g, 'lat_p99_us') / 1e3:.2f} | {_med(g, 'lat_p999_us') / 1e3:.2f} "
                f"| {_med(g, 'lat_max_us') / 1e3:.1f} | {sum(r.get('lost', 0) for r in g)} |")
    return "\n".join(lines)


def idle(rows: list[Row]) -> str:
    lines = [
        "| connections | server | runs | RSS before MB | RSS after MB | KB per connection | login s |",
        "|---|---|---|---|---|---|---|",
    ]
    groups = _groups(rows, "idle")
    for key in sorted(groups, key=_order):
        g = [r for r in groups[key] if "error" not in r]
        lines.append(
            f"| {key[0]} | {key[1]} | {len(g)}{_failed(groups[key])} | {_med(g, 'server_rss_before_kb') / 1024:.1f} "
            f"| {_med(g, 'server_rss_kb') / 1024:.1f} | {_med(g, 'rss_per_conn_kb'):.2f} "
            f"| {_med(g, 'login_s'):.1f} |")
    return "\n".join(lines)


def render(rows: list[Row]) -> str:
    loads = [float(r["loadavg"]) for r in rows if "loadavg" in r]
    head = (f"{len(rows)} runs; 1-minute load average during runs: "
            f"{min(loads):.2f}-{max(loads):.2f}" if loads else f"{len(rows)} runs")
    parts = [head]
    if any(r.get("part") == "sat" for r in rows):
        parts += ["", "### Saturation (closed loop)", "", saturation(rows)]
    if any(str(r.get("part", "")).startswith("lat") for r in rows):
        parts += ["", "### Fixed rate", "", latency(rows)]
    if any(r.get("part") == "idle" for r in rows):
        parts += ["", "### Idle logged-in connections", "", idle(rows)]
    return "\n".join(parts)


if __name__ == "__main__":
    print(render([json.loads(x) for x in Path(sys.argv[1]).read_text().splitlines() if x.strip()]))
