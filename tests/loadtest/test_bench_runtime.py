"""bench_runtime's lookups workload runs and reports three positive timings."""

from __future__ import annotations

import math

from loadtest.bench_runtime import bench_lookups


def test_bench_lookups_reports_the_batched_the_per_key_and_the_dict_reads():
    batched, one_by_one, ref = bench_lookups(1 << 10, requests=300)
    for us in (batched, one_by_one, ref):
        assert math.isfinite(us) and 0 < us < 10_000
    assert one_by_one > batched  # 32 calls cost more than one, cache misses or not
