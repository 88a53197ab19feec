"""loadtest/webfrontend: AIFM's web frontend in three modes, every reply checked.

Spec (issue 5): a request is 32 lookups of 12-byte keys (u32 values) in one
DerefScope, their sum % n_elems picks an 8 KiB array element read
non-temporally, the reply is Snappy(AES-128-CBC(element)); `local`, `far`
(the runtime, a far node in its own process) and `paging` (4 KiB pages, a
CLOCK cache, faults that block the process) serve the same data, so every
reply's checksum must equal the one computed locally from the data set.
Far nodes are real farserver processes on ephemeral 127.0.0.1 ports.
"""

from __future__ import annotations

import pytest

from loadtest.webfrontend.__main__ import QUICK, main
from loadtest.webfrontend.app import (
    HEAP_ITEM_BYTES,
    WebTable,
    heap_bytes_for,
    index_bytes_for,
    run_point,
)
from loadtest.webfrontend.data import Dataset, Responder, zipf_stream
from loadtest.webfrontend.paging import PAGE, BlockingFar, PagedMemory
from loadtest.webfrontend.plot import COLUMNS, markdown_table, rows_of
from runtime import hub as H
from runtime.farprocess import FarProcess
from runtime.manager import Manager


@pytest.fixture(scope="module")
def quick():
    """The --quick data set and a request stream over it."""
    ds = Dataset(QUICK["keys"], QUICK["elems"])
    return ds, zipf_stream(ds.n_requests, 1 << 16)


def check_replies(ds: Dataset, replies: list[tuple[int, int]]) -> int:
    """Assert every (request, crc) matches the local reference; distinct requests seen."""
    responder = Responder()
    refs: dict[int, int] = {}
    for r, crc in replies:
        if r not in refs:
            refs[r] = ds.reference(r, responder)
        assert crc == refs[r], f"request {r}: reply checksum differs from the reference"
    return len(refs)


@pytest.mark.parametrize(
    "mode,pct",
    [("local", 100), ("far", 5), ("far", 25), ("paging", 5), ("paging", 25)],
)
def test_every_reply_matches_the_local_reference(quick, mode, pct):
    ds, stream = quick
    r = run_point(ds, mode, pct, stream, threads=64, warmup=0.5, seconds=1.0, check=True)
    assert len(r["replies"]) > 200
    assert check_replies(ds, r["replies"]) > 50
    assert r["throughput"] > 0
    if mode == "far":
        assert r["hash_miss"] > 0 and r["array_miss"] > 0.9  # non-temporal: never kept
        assert r["local_pct_measured"] < 2 * pct + 5  # the budget holds, measured
    if mode == "paging":
        assert r["faults_per_req"] > 0
        assert r["local_pct_measured"] == pytest.approx(pct, abs=1)


def test_zipf_stream_is_skewed_and_deterministic():
    a = zipf_stream(1000, 20_000)
    assert a == zipf_stream(1000, 20_000)
    counts = sorted((a.count(r) for r in set(a)), reverse=True)
    assert sum(counts[:100]) > 0.4 * len(a)  # top 10% of requests: > 40% of traffic


def test_dataset_shapes():
    ds = Dataset(64, 8)
    keys = ds.keys_of(1)
    assert keys[0] == b"000000000100" and keys[31] == b"000000000131"
    assert all(len(k) == 12 for k in keys)
    assert ds.index_of(1) == sum(ds.values[32:64]) % 8
    assert len(ds.element(3)) == 8192 and ds.element(3) == ds.element(3)
    assert ds.working_set == 64 * 16 + 8 * 8192


def test_paging_writes_back_dirty_pages_whole_and_reads_ahead():
    with FarProcess() as node:
        far = BlockingFar("127.0.0.1", node.port)
        mem = PagedMemory(far, n_pages=64, nframes=12)
        mem.load((p, bytes([p]) * PAGE) for p in range(64))
        mem.write(5 * PAGE + 10, b"dirty")  # fault 5, then dirty it
        for p in range(20, 40):  # sequential: the window grows to 8 pages
            assert mem.read(p * PAGE, 4) == bytes([p]) * 4
        assert mem.readahead > 0 and mem.faults < 20
        assert mem.pages_out == 1  # page 5 was evicted and written back whole
        mem.flush()
        assert mem.read(5 * PAGE, 16) == bytes([5]) * 10 + b"dirty" + bytes([5])
        before = mem.faults
        for p in (60, 3, 47, 11):  # random faults: no readahead window
            mem.read(p * PAGE, 1)
        assert mem.faults == before + 4 and mem.window == 1
        assert mem.local_bytes() >= 12 * PAGE
        far.close()


def test_cli_run_quick_measures_its_local_reference(capsys):
    args = ["run", "--quick", "--mode", "paging", "--local", "50", "--warmup", "0.3"]
    assert main(args + ["--seconds", "0.5"]) == 0
    local, paging = capsys.readouterr().out.splitlines()[2:]
    assert local.startswith("| local | 100 /") and paging.startswith("| paging | 50 /")
    assert local.split(" | ")[4] == "1.000"
    assert 0 < float(paging.split(" | ")[4]) < 10  # vs local: a number, not nan


def test_cli_run_rounds_alternate_and_print_the_median(capsys):
    args = ["run", "--quick", "--mode", "paging", "--local", "50", "--warmup", "0.2"]
    assert main(args + ["--seconds", "0.3", "--rounds", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith("| local |") or line.startswith("| paging |")]
    assert [r.split(" | ")[0] for r in rows] == ["| local", "| paging"] * 3
    ratios = [float(r.split(" | ")[4]) for r in rows[1::2]]  # each against its own round's local
    summary = lines[-1]
    assert summary.startswith("paging at 50% vs local, 3 rounds: ")
    assert summary.endswith(f"median {sorted(ratios)[1]:.3f}")
    with pytest.raises(SystemExit):
        main(["run", "--quick", "--mode", "local", "--rounds", "2"])


def test_table_without_a_local_row_says_na():
    r = {k: 1.0 for k in COLUMNS} | {"mode": "far", "local_bytes": 1 << 20}
    (row,) = rows_of([r])
    assert row["vs_local"] is None
    assert " | n/a | " in markdown_table([row])
    assert rows_of([r | {"mode": "local", "throughput": 4.0}, r])[1]["vs_local"] == 0.25


def test_cli_sweep_writes_csv_png_and_table(tmp_path, capsys):
    out = tmp_path / "results"
    args = ["sweep", "--quick", "--local", "25", "--warmup", "0.3", "--seconds", "0.5"]
    assert main(args + ["--out", str(out)]) == 0
    csv = (out / "webfrontend.csv").read_text().splitlines()
    assert csv[0].startswith("mode,local_pct,local_pct_measured")
    assert [line.split(",")[0] for line in csv[1:]] == ["local", "far", "paging"]
    assert (out / "webfrontend.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| far | 25 /" in (out / "webfrontend.md").read_text()
    assert "[3/3] paging at 25%" in capsys.readouterr().err


@pytest.mark.parametrize("n", [100, 768, 769, 3000, 24_577])
def test_the_far_heap_is_sized_by_the_index_it_will_really_have(n):
    """index_bytes_for predicts what index_bytes measures of a table holding n
    items (within the words array's growth slack), and heap_bytes_for gives
    the largest heap whose index still fits the budget beside it."""

    def main():
        table = WebTable(Manager(64 << 20))
        for i in range(n):
            table.set(b"%012d" % i, b"\0\0\0\0")
        return table.index_bytes()

    measured = H.run(main)
    predicted = index_bytes_for(n)
    assert 0.9 * predicted <= measured <= predicted
    n_keys = 5000
    for budget in (200_000, 1 << 20, 4 << 20):
        heap = heap_bytes_for(budget, n_keys)
        assert heap + index_bytes_for(min(n_keys, heap // HEAP_ITEM_BYTES)) <= budget
        bigger = heap + HEAP_ITEM_BYTES
        assert bigger + index_bytes_for(min(n_keys, bigger // HEAP_ITEM_BYTES)) > budget
