"""The sweep's outputs: a CSV row per point, a markdown table, a two-panel PNG.

    top     throughput / local's throughput against measured local memory (% of W),
            one line per mode, the issue's targets marked
    bottom  hash and array miss rates against the same x-axis
Uses matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import csv
import os
from typing import Any

__all__ = ["COLUMNS", "markdown_table", "plot", "write_csv"]

COLUMNS = [
    "mode",
    "local_pct",
    "local_pct_measured",
    "local_mib",
    "throughput",
    "vs_local",
    "p50_ms",
    "p90_ms",
    "hash_miss",
    "array_miss",
    "bytes_per_req",
    "faults_per_req",
    "cpu_us_per_req",
    "node_cpu_us_per_req",
    "requests",
    "load_s",
]


def rows_of(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """CSV rows (COLUMNS) from run_point results; vs_local uses the local row (None without)."""
    local = next((r["throughput"] for r in results if r["mode"] == "local"), None)
    rows = []
    for r in results:
        row = {k: r.get(k) for k in COLUMNS}
        row["local_mib"] = r["local_bytes"] / (1 << 20)
        row["vs_local"] = r["throughput"] / local if local else None
        rows.append(row)
    return rows


def write_csv(path: str, rows: list[dict[str, Any]]) -> None:
    """Write rows to `path` (directories created)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for row in rows:
            w.writerow({k: _fmt(v) for k, v in row.items()})


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
    return v


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table (what the README shows)."""
    head = (
        "| mode | local % (nominal / measured) | local MiB | req/s | vs local | p50 ms | p90 ms"
        " | hash miss | array miss | KB moved / req | faults / req | CPU us / req (app + node) |"
    )
    lines = [head, "|" + " --- |" * 12]
    for r in rows:
        vs_local = "n/a" if r["vs_local"] is None else f"{r['vs_local']:.3f}"
        lines.append(
            f"| {r['mode']} | {r['local_pct']:g} / {r['local_pct_measured']:.1f}"
            f" | {r['local_mib']:.1f} | {r['throughput']:,.0f} | {vs_local}"
            f" | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['hash_miss']:.1%}"
            f" | {r['array_miss']:.1%} | {r['bytes_per_req'] / 1000:.1f}"
            f" | {r['faults_per_req']:.2f}"
            f" | {r['cpu_us_per_req']:.0f} + {r['node_cpu_us_per_req']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot(path: str, rows: list[dict[str, Any]], title: str = "") -> None:
    """Two panels: normalized throughput, and miss rates, against local memory %."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 8), sharex=True)
    styles = {"far": ("tab:blue", "o"), "paging": ("tab:red", "s")}
    for mode, (color, marker) in styles.items():
        pts = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["local_pct"])
        if not pts:
            continue
        x = [r["local_pct_measured"] for r in pts]
        top.plot(x, [r["vs_local"] for r in pts], marker=marker, color=color, label=mode)
        bottom.plot(
            x, [r["hash_miss"] for r in pts], marker=marker, color=color, label=f"{mode}: hash"
        )
        bottom.plot(
            x,
            [r["array_miss"] for r in pts],
            marker=marker,
            color=color,
            linestyle="--",
            fillstyle="none",
            label=f"{mode}: array",
        )
    top.axhline(1.0, color="gray", linewidth=1, label="local (ideal)")
    top.plot(
        [25, 5],
        [0.85, 0.6],
        linestyle="none",
        marker="*",
        markersize=12,
        color="tab:green",
        label="far targets (0.85x at 25%, 0.6x at 5%)",
    )
    top.set_ylabel("throughput / local")
    top.set_ylim(bottom=0)
    top.grid(True, alpha=0.3)
    top.legend(fontsize=8)
    if title:
        top.set_title(title, fontsize=9)
    bottom.set_xlabel("local memory, measured, % of working set W")
    bottom.set_ylabel("miss rate")
    bottom.set_ylim(0, 1.05)
    bottom.grid(True, alpha=0.3)
    bottom.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
