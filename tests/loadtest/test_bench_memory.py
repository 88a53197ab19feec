"""loadtest/bench_memcached.py's memory workload (issue 11: <= 56 B per resident item).

Spec: the per-item overhead counts every local byte an item costs, the heap's
segments included wherever they live (bytearrays that tracemalloc sees, or
blocks of the huge-page arena that it does not).
"""

from __future__ import annotations

from loadtest.bench_memcached import memory_overhead


def test_memory_overhead_counts_the_heap_segments(capsys):
    overhead = memory_overhead(20_000)
    out = capsys.readouterr().out
    assert "arena segments" in out
    # 8 B object header + 22 B item header + word + index entries + alignment: ~55 B at
    # 100k items, ~61 B at 20k (the last 1 MiB segment is part empty); the arena's
    # segments missing from the count made it negative
    assert 40 < overhead < 70
