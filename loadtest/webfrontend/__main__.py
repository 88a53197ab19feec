"""`python -m loadtest.webfrontend run|sweep`: AIFM's web frontend, far memory vs paging.

    run    one point:  --mode local|far|paging --local PCT, after the local
           point it is compared with (vs local), unless --no-reference;
           --rounds N alternates the two N times and prints the median ratio
    sweep  local once, then every (PCT, mode): CSV, markdown table and PNG under
           --out (results/), progress on stderr as it goes

Defaults are sized for the 2-core dev machine: 2^20 keys, 2^15 elements of
8 KiB (W = 272 MiB), 64 green threads, 30 s warm-up (the far heap fills
from cold), 10 s measured. `--quick` is the test preset: 2^15 keys, 2^10
elements, 1 s + 2 s.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import statistics
import sys
import time

from loadtest.bench_memcached import _callgrind
from loadtest.webfrontend.app import BACKENDS, run_point
from loadtest.webfrontend.data import Dataset, zipf_stream
from loadtest.webfrontend.plot import markdown_table, plot, rows_of, write_csv

__all__ = ["main"]

DEFAULTS = {"keys": 1 << 20, "elems": 1 << 15, "warmup": 30.0, "seconds": 10.0}
QUICK = {"keys": 1 << 15, "elems": 1 << 10, "warmup": 1.0, "seconds": 2.0}
SUBCOMMANDS = {  # argparse help strings: a literal percent sign must be written %%
    "run": "one point (mode, local memory), beside the all-local reference",
    "sweep": "local once, then every (local memory, mode) point: CSV, markdown table, PNG",
}


def _parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter  # the docstring's layout, not one paragraph
    ap = argparse.ArgumentParser(
        prog="python -m loadtest.webfrontend", description=__doc__, formatter_class=raw
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, what in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=what, description=what)
        p.add_argument("--quick", action="store_true", help="small data, short runs (tests)")
        p.add_argument("--keys", type=int, help="hash-table keys, a multiple of 32 (2^20)")
        p.add_argument("--elems", type=int, help="8 KiB array elements (2^15)")
        p.add_argument("--threads", type=int, default=64, help="green threads issuing requests")
        p.add_argument("--warmup", type=float, help="seconds before measuring (30)")
        p.add_argument("--seconds", type=float, help="seconds measured (10)")
        p.add_argument("--zipf", type=float, default=0.85, help="Zipf exponent s")
        p.add_argument("--seed", type=int, default=5)
    run = sub.choices["run"]
    run.add_argument("--mode", choices=sorted(BACKENDS), default="far")
    run.add_argument("--local", type=float, default=25.0, help="local memory, %% of W")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="alternate the local reference and the point this many times; the median ratio",
    )
    run.add_argument("--profile", metavar="FILE", help="cProfile the measured window into FILE")
    run.add_argument(
        "--callgrind",
        action="store_true",
        help="run under valgrind --tool=callgrind --instr-atstart=no: count the window only",
    )
    run.add_argument(
        "--no-reference", action="store_true", help="skip the local point (vs local: n/a)"
    )
    sweep = sub.choices["sweep"]
    sweep.add_argument("--local", default="5,10,25,50,75,100", help="comma-separated %% of W")
    sweep.add_argument("--modes", default="far,paging", help="comma-separated modes")
    sweep.add_argument("--out", default="results", help="output directory")
    return ap


class CallgrindWindow:
    """run_point's `profile`: callgrind collects the measured window only.

    For a process started under `valgrind --tool=callgrind --instr-atstart=no`
    (collection off until the window opens; callgrind_control switches it).
    """

    def enable(self) -> None:
        _callgrind(os.getpid(), "-i", "on")

    def disable(self) -> None:
        _callgrind(os.getpid(), "-i", "off")


def _setup(args: argparse.Namespace) -> tuple[Dataset, list[int]]:
    preset = QUICK if args.quick else DEFAULTS
    for k, v in preset.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    ds = Dataset(args.keys, args.elems, args.seed)
    stream = zipf_stream(ds.n_requests, 1 << 20, args.zipf, args.seed + 2)
    return ds, stream


def machine() -> str:
    """One line about where this ran."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}"
        f" {platform.release()}, Python {platform.python_version()}, load {load:.2f} at start"
    )


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _rounds(args: argparse.Namespace, ds: Dataset, stream: list[int], kw: dict) -> int:
    """`run --rounds N`: N alternating (local, point) pairs; every row and the median ratio.

    This machine's speed moves 20-30% over minutes (a neighbour's load): a
    point measured beside its own local reference, several times over, is
    what a comparison can rest on.
    """
    if args.mode == "local" or args.no_reference or args.profile or args.callgrind or args.json:
        raise SystemExit("--rounds needs a far or paging --mode with its local reference")
    rows, ratios = [], []
    for n in range(1, args.rounds + 1):
        _log(f"round {n}/{args.rounds}: local at 100%, then {args.mode} at {args.local:g}%")
        pair = [
            run_point(ds, "local", 100.0, stream, progress=_log, **kw),
            run_point(ds, args.mode, args.local, stream, progress=_log, **kw),
        ]
        pair_rows = rows_of(pair)
        rows += pair_rows
        ratios.append(pair_rows[1]["vs_local"])
    print(markdown_table(rows), end="")
    each = ", ".join(f"{r:.3f}" for r in ratios)
    print(
        f"{args.mode} at {args.local:g}% vs local, {args.rounds} rounds: {each};"
        f" median {statistics.median(ratios):.3f}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; the exit status."""
    args = _parser().parse_args(argv)
    ds, stream = _setup(args)
    kw = {"threads": args.threads, "warmup": args.warmup, "seconds": args.seconds}
    if args.cmd == "run":
        if args.rounds > 1:
            return _rounds(args, ds, stream, kw)
        results = []
        if args.mode != "local" and not args.no_reference:
            _log("local at 100% first: the reference for vs local")
            results.append(run_point(ds, "local", 100.0, stream, progress=_log, **kw))
        prof = cProfile.Profile() if args.profile else None
        if args.callgrind:
            prof = CallgrindWindow()
        r = run_point(ds, args.mode, args.local, stream, progress=_log, profile=prof, **kw)
        results.append(r)
        if args.callgrind:
            _log(
                f"callgrind: {r['requests']} requests in the measured window; instructions"
                " per request = valgrind's 'Collected' / that"
            )
        elif prof is not None:
            prof.dump_stats(args.profile)
            pstats.Stats(args.profile, stream=sys.stderr).sort_stats("tottime").print_stats(30)
        rows = rows_of(results)
        if args.json:
            r["vs_local"] = rows[-1]["vs_local"]
            print(json.dumps(r, default=str))
        else:
            print(markdown_table(rows), end="")
        return 0
    pcts = [float(p) for p in args.local.split(",") if p]
    modes = [m for m in args.modes.split(",") if m]
    points = [("local", 100.0)] + [(m, p) for p in pcts for m in modes if m != "local"]
    command = "python -m loadtest.webfrontend " + " ".join(sys.argv[1:] if argv is None else argv)
    _log(f"command: {command}")
    where = machine()
    _log(f"machine: {where}")
    _log(f"W = {ds.working_set / (1 << 20):.0f} MiB ({ds.n_keys} keys, {ds.n_elems} elements)")
    results = []
    t0 = time.perf_counter()
    for n, (mode, pct) in enumerate(points, 1):
        elapsed = time.perf_counter() - t0
        eta = "" if n == 1 else f", ~{elapsed / (n - 1) * (len(points) - n + 1):.0f} s left"
        _log(f"[{n}/{len(points)}] {mode} at {pct:g}% ({elapsed:.0f} s elapsed{eta})")

        def progress(msg: str, tag=f"  [{mode} {pct:g}%]") -> None:
            _log(f"{tag} {msg}")

        results.append(run_point(ds, mode, pct, stream, progress=progress, **kw))
    total = time.perf_counter() - t0
    rows = rows_of(results)
    os.makedirs(args.out, exist_ok=True)
    write_csv(os.path.join(args.out, "webfrontend.csv"), rows)
    title = f"{command}\n{where}; sweep {total:.0f} s"
    plot(os.path.join(args.out, "webfrontend.png"), rows, title)
    table = markdown_table(rows)
    with open(os.path.join(args.out, "webfrontend.md"), "w") as f:
        f.write(f"command: `{command}`\n\nmachine: {where}\n\nsweep time: {total:.0f} s\n\n")
        f.write(table)
    print(table, end="")
    _log(f"sweep done in {total:.0f} s; wrote {args.out}/webfrontend.csv, .png, .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
