#!/usr/bin/env python3
"""Medians of a bench/run.py results file as Markdown tables.

    python bench/summary.py bench/results/run-YYYYmmdd-HHMMSS.jsonl [more.jsonl ...]

Several files are pooled (e.g. a run and its continuation).
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


def _core(rows: list[Row], key: str) -> float:
    """Median share of one core used over the measured window, in percent."""
    vals = [
        100.0 * r[key] / r["window_s"]
        for r in rows
        if isinstance(r.get(key), (int, float)) and r.get("window_s")
    ]
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
    return (key[0], 0 if key[1].startswith("ngircd") else 1, key[1])


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _header(*names: str) -> list[str]:
    return [_row(*names), _row(*["---"] * len(names))]


def _ok(group: list[Row]) -> list[Row]:
    return [r for r in group if "error" not in r]


def saturation(rows: list[Row], part: str = "sat") -> str:
    groups = _groups(rows, part)
    lines = _header(
        "C",
        "server",
        "runs",
        "deliveries/s (median)",
        "min-max (M/s)",
        "x ngIRCd",
        "p50 ms",
        "p99 ms",
        "lost",
        "server us/delivery",
        "loadgen us/delivery",
        "server core %",
        "loadgen core %",
        "peak RSS MB",
        "core-1 busy %",
    )
    for key in sorted(groups, key=_order):
        c, name = key
        g = _ok(groups[key])
        base = _med(_ok(groups.get((c, "ngircd"), [])), "deliveries_per_s")
        dps = _med(g, "deliveries_per_s")
        lines.append(
            _row(
                c,
                name,
                f"{len(g)}{_failed(groups[key])}",
                f"{dps / 1e6:.2f} M",
                _span(g, "deliveries_per_s"),
                f"{dps / base:.2f}",
                f"{_med(g, 'lat_p50_us') / 1e3:.1f}",
                f"{_med(g, 'lat_p99_us') / 1e3:.1f}",
                sum(r.get("lost", 0) for r in g),
                f"{_med(g, 'server_us_per_delivery'):.3f}",
                f"{_med(g, 'loadgen_us_per_delivery'):.3f}",
                f"{_core(g, 'server_cpu_s'):.0f}",
                f"{_core(g, 'loadgen_cpu_s'):.0f}",
                f"{_med(g, 'server_vmhwm_kb') / 1024:.1f}",
                f"{_med(g, 'cpu1_busy_pct'):.0f}",
            )
        )
    return "\n".join(lines)


def latency(rows: list[Row]) -> str:
    lines = _header(
        "clients",
        "server",
        "runs",
        "msgs/s",
        "deliveries/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "lost",
        "server us/delivery",
    )
    for part, label in (("lat", "ordinary (delayed ACK)"), ("lat-quickack", "TCP_QUICKACK")):
        groups = _groups(rows, part)
        for key in sorted(groups, key=_order):
            g = _ok(groups[key])
            lines.append(
                _row(
                    f"{key[0]} {label}",
                    key[1],
                    f"{len(g)}{_failed(groups[key])}",
                    f"{_med(g, 'msgs_per_s'):.0f}",
                    f"{_med(g, 'deliveries_per_s'):.0f}",
                    f"{_med(g, 'lat_p50_us') / 1e3:.2f}",
                    f"{_med(g, 'lat_p99_us') / 1e3:.2f}",
                    f"{_med(g, 'lat_p999_us') / 1e3:.2f}",
                    f"{_med(g, 'lat_max_us') / 1e3:.1f}",
                    sum(r.get("lost", 0) for r in g),
                    f"{_med(g, 'server_us_per_delivery'):.2f}",
                )
            )
    return "\n".join(lines)


def idle(rows: list[Row]) -> str:
    lines = _header(
        "connections",
        "server",
        "runs",
        "RSS before MB",
        "RSS after MB",
        "KB per connection",
        "peak RSS MB",
        "login s",
    )
    groups = _groups(rows, "idle")
    for key in sorted(groups, key=_order):
        g = _ok(groups[key])
        lines.append(
            _row(
                key[0],
                key[1],
                f"{len(g)}{_failed(groups[key])}",
                f"{_med(g, 'server_rss_before_kb') / 1024:.1f}",
                f"{_med(g, 'server_rss_kb') / 1024:.1f}",
                f"{_med(g, 'rss_per_conn_kb'):.2f}",
                f"{_med(g, 'server_vmhwm_kb') / 1024:.1f}",
                f"{_med(g, 'login_s'):.1f}",
            )
        )
    return "\n".join(lines)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if a == a and b == b and b else "-"  # a == a: not NaN


def before_after(rows: list[Row]) -> str:
    """One line per server: saturation at each C and the fixed-rate p99s, each with its
    ratio to ngIRCd and to base-t<N> (the --base-exe build) of the same thread count."""
    names = {r["server"] for r in rows if "server" in r}
    threads = sorted(int(n.split("-t")[-1]) for n in names if n.startswith("base-t"))
    sat = _groups(rows, "sat")
    cs = sorted({c for c, _ in sat})
    lat = {part: _groups(rows, part) for part in ("lat", "lat-quickack")}
    head = ["server", "runs"]
    for c in cs:
        head += [f"sat C={c} deliveries/s", "x ngIRCd", "x base"]
    head += [
        "p99 100 msg/s ordinary ms",
        "x ngIRCd",
        "x base",
        "p99 100 msg/s quick-ACK ms",
        "x ngIRCd",
        "x base",
    ]
    lines = _header(*head)
    for t in threads:
        base_name = f"base-t{t}"
        for name in (base_name, f"chat-t{t}", f"chat-tls-t{t}", "ngircd"):
            if name not in names:
                continue
            runs: set[int] = set()
            cells: list[object] = [name]
            for c in cs:
                g = _ok(sat.get((c, name), []))
                runs.add(len(g))
                v = _med(g, "deliveries_per_s")
                ng = _med(_ok(sat.get((c, "ngircd"), [])), "deliveries_per_s")
                b = _med(_ok(sat.get((c, base_name), [])), "deliveries_per_s")
                cells += [f"{v / 1e6:.2f} M" if v == v else "-", _ratio(v, ng), _ratio(v, b)]
            for groups in lat.values():
                keys = [k for k in groups if k[1] == name]
                g = _ok(groups[keys[0]]) if keys else []
                runs.add(len(g))
                c = keys[0][0] if keys else 0
                v = _med(g, "lat_p99_us") / 1e3
                ng = _med(_ok(groups.get((c, "ngircd"), [])), "lat_p99_us") / 1e3
                b = _med(_ok(groups.get((c, base_name), [])), "lat_p99_us") / 1e3
                cells += [f"{v:.2f}" if v == v else "-", _ratio(v, ng), _ratio(v, b)]
            cells.insert(1, "/".join(str(n) for n in sorted(runs)))
            lines.append(_row(*cells))
    return "\n".join(lines)


def render(rows: list[Row]) -> str:
    loads = [float(r["loadavg"]) for r in rows if "loadavg" in r]
    head = (
        f"{len(rows)} runs; 1-minute load average during runs: {min(loads):.2f}-{max(loads):.2f}"
        if loads
        else f"{len(rows)} runs"
    )
    parts = [head]
    if any(str(r.get("server", "")).startswith("base-t") for r in rows):
        parts += [
            "",
            "### Before/after (medians; x base = this row / base-t<N>)",
            "",
            before_after(rows),
        ]
    if any(r.get("part") == "sat" for r in rows):
        parts += ["", "### Saturation (closed loop)", "", saturation(rows)]
    if any(r.get("part") == "sat-ordinary" for r in rows):
        parts += [
            "",
            "### Saturation with ordinary clients (loadgen headroom check)",
            "",
            saturation(rows, "sat-ordinary"),
        ]
    if any(str(r.get("part", "")).startswith("lat") for r in rows):
        parts += ["", "### Fixed rate", "", latency(rows)]
    if any(r.get("part") == "idle" for r in rows):
        parts += ["", "### Idle logged-in connections", "", idle(rows)]
    return "\n".join(parts)


if __name__ == "__main__":
    print(
        render(
            [
                json.loads(x)
                for name in sys.argv[1:]
                for x in Path(name).read_text().splitlines()
                if x.strip()
            ]
        )
    )
