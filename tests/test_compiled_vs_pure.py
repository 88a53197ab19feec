"""The compiled hot modules and their pure-Python sources give the same results.

Spec (DESIGN §9, STYLE 14, issue 11): "a differential test drives the same
random operation streams (parser input split at random points; table and
heap operations with evacuation) through the compiled and the pure modules
and compares every result". `cython.compiled` may pick a faster branch,
never different behaviour.

How: tests/differential_driver.py runs every stream for every seed in two
processes at once, with the same PYTHONHASHSEED (hash() places keys in the
table's index and the cuckoo filter): one imports the packages from the repo
root, where the extensions are (every module of kvcache/compiled.py must
import compiled), one from a copy of protocol/, runtime/, kvcache/ and
farserver/ holding only .py and .pxd files (every one must import pure; each
run's far node imports what its run imports). Each run pickles, per stream
and seed, the list of (operation, result); this test compares them element
by element, types included (True is not 1, bytes is not bytearray), and
reports the first difference with its stream, seed, index and operation.

Streams (the driver's docstring says exactly what each records):
- parser: text and meta commands of every verb, valid and malformed (bad
  numbers, wrong and too-large data blocks, noreply, 250/251-byte keys,
  overlong lines, NULs, the binary protocol's magic, HTTP), fed to
  protocol.memcache.Parser cut at random points: every event, error and
  the parser's buffered/closed state;
- dispatch: the same kind of bytes through kvcache.server.Connection,
  Dispatcher and RemHashTable (no sockets), a virtual clock: every reply byte,
  and the counters and table at checkpoints;
- dispatch_far: the same with a far node and a 1 MiB heap, for the commands
  whose replies cannot depend on where items are (no stats, me or metadump,
  no mg h/l, no stale or win marks, no base64 keys, cas uniques masked, no
  cas compared but 0 or one no item has, a clock that stands still): every
  reply byte;
- table: RemHashTable's API on a heap small enough that the evacuator keeps
  hot items and forgets cold ones (no far node): every result, locations
  included, and the table, heap and evacuator counters at checkpoints;
- heap: runtime.heap.Heap's allocation, freeing, pins, retiring and resizing;
- cuckoo: the cuckoo filter through its growth;
- farproto: far-protocol frames in random chunks, and the body codecs;
- runtime: RemHashTable with a real far node (a farserver on 127.0.0.1)
  and a 1 MiB heap: items are written back, dropped, read back and updated
  at the node. When the evacuator runs and when acks land depend on timing,
  so here only what cannot depend on it is compared: every value read,
  each store's and update's outcome, delete's answer for keys holding a
  live item, and a read of every key at checkpoints (not residency, not
  counters). test_far_memory_was_exercised checks that items did go far and
  come back in both runs (and in dispatch_far), and that the evacuator ran
  in the table stream.

Not compared: the libc time() branch of the dispatcher and the table (they
take it only when their clock is time.time, and a virtual clock is what
makes replies comparable); with a far node, what depends on where items
happen to be when (the commands dispatch_far leaves out, counters,
residency); process facts in `stats` (pid, uptime, time, rusage, the GC's
counters, the evacuator's busy seconds). Skipped, with the reason
"extensions not built", when this build runs pure Python (make test-pure).
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys

import pytest

from kvcache import compiled

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.path.join(ROOT, "tests", "differential_driver.py")
PACKAGES = ("protocol", "runtime", "kvcache", "farserver")
STREAMS = ("parser", "dispatch", "dispatch_far", "table", "heap", "cuckoo", "farproto", "runtime")
HASH_SEED = "17"
TIMEOUT = 300  # seconds per run (a run takes ~10 s on the 2-core dev machine)

pytestmark = pytest.mark.skipif(not compiled.compiled(), reason="extensions not built")


def _pure_copy(dest: str) -> None:
    """The packages' .py and .pxd files (no extensions) under `dest`."""
    for pkg in PACKAGES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, pkg)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            rel = os.path.relpath(dirpath, ROOT)
            os.makedirs(os.path.join(dest, rel), exist_ok=True)
            for name in filenames:
                if name.endswith((".py", ".pxd")):
                    shutil.copy2(os.path.join(dirpath, name), os.path.join(dest, rel, name))


def _start(root: str, out: str) -> subprocess.Popen:
    """The driver on the packages under `root` (first on sys.path), run from there."""
    env = dict(os.environ, PYTHONPATH=root, PYTHONHASHSEED=HASH_SEED)
    env.pop("KVCACHE_NO_EXTENSIONS", None)
    return subprocess.Popen(
        [sys.executable, DRIVER, out],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The driver's results on the compiled build and on the pure copy: (compiled, pure)."""
    tmp = tmp_path_factory.mktemp("differential")
    pure_root = str(tmp / "pure")
    _pure_copy(pure_root)
    outs = (str(tmp / "compiled.pickle"), str(tmp / "pure.pickle"))
    procs = [_start(ROOT, outs[0]), _start(pure_root, outs[1])]
    results = []
    for what, proc, out in zip(("compiled", "pure"), procs, outs, strict=True):
        try:
            log, _ = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        assert proc.returncode == 0, f"the {what} run failed:\n{log.decode(errors='replace')}"
        with open(out, "rb") as f:
            results.append(pickle.load(f))
    return results[0], results[1]


def test_each_run_imports_the_build_it_claims(runs):
    """Every hot module compiled in one run, pure Python (from the copy) in the other."""
    built, pure = runs
    assert (
        set(built["status"])
        == set(pure["status"])
        == {path[:-3].replace("/", ".") for path in compiled.MODULES}
    )
    assert all(built["status"].values()), built["status"]
    assert not any(pure["status"].values()), pure["status"]
    for name, path in built["files"].items():
        assert path.startswith(ROOT + os.sep), (name, path)
    for name, path in pure["files"].items():
        assert not path.startswith(ROOT + os.sep) and path.endswith(".py"), (name, path)


def first_difference(a: object, b: object, path: tuple = ()) -> tuple | None:
    """(path, a's part, b's part) where `a` and `b` first differ, types included; or None."""
    if type(a) is not type(b):
        return path, a, b
    if isinstance(a, list | tuple):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):  # lengths: below
            found = first_difference(x, y, (*path, i))
            if found is not None:
                return found
        if len(a) != len(b):
            return (*path, "length"), len(a), len(b)
        return None
    if isinstance(a, dict):
        if list(a) != list(b):
            return (*path, "keys"), list(a), list(b)
        for key in a:
            found = first_difference(a[key], b[key], (*path, key))
            if found is not None:
                return found
        return None
    if isinstance(a, float) and a != a and b != b:  # NaN
        return None
    return None if a == b else (path, a, b)


def _clip(value: object, most: int = 600) -> str:
    text = repr(value)
    return text if len(text) <= most else text[:most] + f"... ({len(text)} chars)"


def _where_bytes_differ(a: object, b: object) -> str:
    """For two byte strings: where they part and the bytes around it."""
    if not (isinstance(a, bytes) and isinstance(b, bytes)):
        return ""
    at = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    lo = max(0, at - 120)
    return (
        f"\n  bytes part at offset {at}:"
        f"\n  compiled: ...{a[lo : at + 120]!r}\n  pure:     ...{b[lo : at + 120]!r}"
    )


@pytest.mark.parametrize("stream", STREAMS)
def test_stream_gives_the_same_results(runs, stream):
    """Every recorded result of every seed of `stream`: the same compiled and pure."""
    built, pure = runs
    keys = sorted(k for k in built["records"] if k[0] == stream)
    assert keys and keys == sorted(k for k in pure["records"] if k[0] == stream)
    for key in keys:
        a, b = built["records"][key], pure["records"][key]
        found = first_difference(a, b)
        if found is None:
            continue
        path, x, y = found
        where = path[0] if path and isinstance(path[0], int) else None
        message = f"stream {stream}, seed {key[1]}: first difference"
        if where is not None and where < min(len(a), len(b)):
            message += f" at operation {where} of {len(a)}, {a[where][0]!r}, in {path[1:]}"
        else:
            message += f" in {path}"
        message += f":\n  compiled: {_clip(x)}\n  pure:     {_clip(y)}{_where_bytes_differ(x, y)}"
        if where is not None and where < min(len(a), len(b)) and len(path) > 2:
            message += "\nthe whole result of that operation:"
            message += f"\n  compiled: {_clip(a[where][1])}\n  pure:     {_clip(b[where][1])}"
        pytest.fail(message)


def test_far_memory_was_exercised(runs):
    """Items went far and came back in the far streams, and the evacuator ran, in both runs."""
    for run in runs:
        far: dict = {}
        for key, cover in run["coverage"].items():
            if key[0] == "runtime":
                assert cover["evacuations"] > 50 and cover["table_far_hits"] > 50, (key, cover)
                assert cover["offloads"] > 0, (key, cover)
            if key[0] == "table":
                assert cover["evac_survivors"] > 50 and cover["evac_forgotten"] > 0, (key, cover)
            if key[0] == "dispatch_far":
                for name in ("evacuations", "table_far_hits", "offloads", "far_gets_in_hub"):
                    far[name] = far.get(name, 0) + cover[name]
        assert all(n > 5 for n in far.values()), far
