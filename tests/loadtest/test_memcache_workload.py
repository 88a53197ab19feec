"""loadtest.memcache_workload: what the locust memcached user asks for.

Spec (issue 6): --host takes HOST:PORT and memcache://HOST:PORT; the key
space, Zipf skew, value size distribution, get/set/multi-get/delete mix and
key prefix are configurable.
"""

from __future__ import annotations

import collections
import random

import pytest

from loadtest.memcache_workload import Keys, Mix, ValueSizes, parse_host, parse_size, payload


@pytest.mark.parametrize(
    "text, want",
    [
        ("127.0.0.1:11211", ("127.0.0.1", 11211)),
        ("memcache://127.0.0.1:22122", ("127.0.0.1", 22122)),
        ("memcache://cache:11211/", ("cache", 11211)),
        ("memcached://cache:1", ("cache", 1)),
        ("cache", ("cache", 11211)),
        ("[::1]:11211", ("::1", 11211)),
        ("[::1]", ("::1", 11211)),
    ],
)
def test_parse_host(text, want):
    assert parse_host(text) == want


@pytest.mark.parametrize(
    "bad", [None, "", "http://x:80", "x:0", "x:99999", "x:port", ":11211", "[::1]x"]
)
def test_parse_host_rejects(bad):
    with pytest.raises(ValueError):
        parse_host(bad)


def test_parse_size():
    assert parse_size("100") == 100
    assert parse_size("4k") == 4096
    assert parse_size("1M") == 1 << 20
    with pytest.raises(ValueError):
        parse_size("x1")


def test_keys_uniform_and_prefix():
    keys = Keys(100, 0.0, "t:")
    rng = random.Random(1)
    drawn = [keys.draw(rng) for _ in range(5000)]
    assert all(k.startswith("t:") and len(k) == 12 for k in drawn)
    counts = collections.Counter(drawn)
    assert len(counts) == 100
    assert max(counts.values()) < 3 * min(counts.values())


def test_keys_zipf_skew():
    keys = Keys(10_000, 0.99)
    rng = random.Random(2)
    ranks = [keys.rank(rng) for _ in range(50_000)]
    assert 0 <= min(ranks) and max(ranks) < 10_000
    hot = sum(r < 100 for r in ranks) / len(ranks)  # hottest 1% of keys
    assert 0.45 < hot < 0.6  # ~52% in theory
    assert collections.Counter(ranks).most_common(1)[0][0] == 0


def test_draw_many_is_distinct_and_bounded():
    rng = random.Random(3)
    many = Keys(1000, 1.2).draw_many(rng, 10)
    assert len(many) == len(set(many)) == 10
    assert len(Keys(3, 0).draw_many(rng, 10)) == 3


@pytest.mark.parametrize("n, skew, prefix", [(0, 0, "k"), (10, -1, "k"), (10, 0, "a b")])
def test_keys_reject(n, skew, prefix):
    with pytest.raises(ValueError):
        Keys(n, skew, prefix)


def test_value_sizes():
    rng = random.Random(4)
    assert {ValueSizes("100").size(rng) for _ in range(10)} == {100}
    ranged = [ValueSizes("16-4k").size(rng) for _ in range(2000)]
    assert min(ranged) >= 16 and max(ranged) <= 4096 and len(set(ranged)) > 500
    mixed = ValueSizes("100:9, 100k:1")
    sizes = collections.Counter(mixed.size(rng) for _ in range(10_000))
    assert set(sizes) == {100, 102_400}
    assert 0.07 < sizes[102_400] / 10_000 < 0.13
    assert mixed.max == 102_400
    for bad in ("", "x", "10-5", "100:0", "100:x"):
        with pytest.raises(ValueError):
            ValueSizes(bad)


def test_mix():
    rng = random.Random(5)
    mix = Mix("get=85,set=10,mget=4,delete=1")
    counts = collections.Counter(mix.choose(rng) for _ in range(20_000))
    assert set(counts) == {"get", "set", "mget", "delete"}
    assert 0.83 < counts["get"] / 20_000 < 0.87
    assert mix.share("set") == pytest.approx(0.10)
    assert Mix("get, set=0").ops == ["get"]
    for bad in ("", "get=0", "put=1", "get=x", "get=-1"):
        with pytest.raises(ValueError):
            Mix(bad)


def test_payload_sizes():
    assert payload(0) == b""
    assert len(payload(100)) == 100
    assert len(payload(200_000)) == 200_000
