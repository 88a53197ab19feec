"""kvcache's connection limit, CLI flags and process lifecycle.

Spec (issue 4): max connections enforced (-c) with memcached's
`ERROR Too many open connections`; --far none runs local only and evicts
like memcached; -I changes the item size limit; bad flags exit non-zero.
"""

from __future__ import annotations

import socket
import subprocess
import sys

from kvproc import KvCache, exchange


def test_connection_limit():
    with KvCache("-m", "8", "--far", "none", "-c", "3") as kv:
        held = [socket.create_connection(("127.0.0.1", kv.port)) for _ in range(3)]
        for s in held:
            s.sendall(b"version\r\n")
            assert s.recv(100).startswith(b"VERSION")
        out, closed = exchange(kv.port, b"version\r\n")
        assert out == b"ERROR Too many open connections\r\n" and closed
        held.pop().close()
        import time

        time.sleep(0.2)
        out, _ = exchange(kv.port, b"version\r\n")
        assert out.startswith(b"VERSION")
        for s in held:
            s.close()


def test_local_only_evicts_like_memcached():
    with KvCache("-m", "4", "--far", "none") as kv:
        data = b"".join(b"set k%d 0 0 1000\r\n%s\r\n" % (i, b"v" * 1000) for i in range(10_000))
        out, _ = exchange(kv.port, data + b"get k9999\r\nget k0\r\nstats\r\n", quiet=1.0)
        assert out.count(b"STORED\r\n") == 10_000
        assert b"VALUE k9999 0 1000\r\n" in out and b"VALUE k0 " not in out
        assert b"STAT evictions 0\r\n" not in out


def test_item_size_limit_flag():
    with KvCache("-m", "8", "--far", "none", "-I", "2m") as kv:
        value = b"x" * 1_500_000
        out, _ = exchange(kv.port, b"set big 0 0 %d\r\n%s\r\nget big\r\n" % (len(value), value))
        assert out.startswith(b"STORED\r\nVALUE big 0 1500000\r\n")
    with KvCache("-m", "8", "--far", "none", "-I", "1k") as kv:
        out, _ = exchange(kv.port, b"set s 0 0 2000\r\n" + b"y" * 2000 + b"\r\nget s\r\n")
        assert out == b"SERVER_ERROR object too large for cache\r\nEND\r\n"


def test_bad_flags_exit_nonzero():
    for args in (["--far", "nohost"], ["-m", "1"], ["-I", "lots"]):
        r = subprocess.run([sys.executable, "-m", "kvcache", *args], capture_output=True)
        assert r.returncode != 0 and r.stderr


def _stat(out: bytes, name: bytes) -> int:
    start = out.index(b"STAT " + name + b" ") + len(name) + 6
    return int(out[start : out.index(b"\r\n", start)])


def test_cache_memlimit_resizes_the_local_heap():
    with KvCache("-m", "16", "--far", "none") as kv:
        fill = b"".join(b"set k%d 0 0 1000\r\n%s\r\n" % (i, b"v" * 1000) for i in range(12_000))
        out, _ = exchange(kv.port, fill + b"stats\r\n", quiet=1.0)
        assert _stat(out, b"limit_maxbytes") == 16 << 20
        assert _stat(out, b"local_bytes") > 10 << 20
        out, _ = exchange(kv.port, b"cache_memlimit 4\r\ncache_memlimit 8\r\n")
        assert out == b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\nOK\r\n"
        import time

        time.sleep(0.5)  # the evacuator brings usage under the new budget
        out, _ = exchange(kv.port, b"set after 0 0 3\r\nnew\r\nget after\r\nstats\r\n")
        assert out.startswith(b"STORED\r\nVALUE after 0 3\r\nnew\r\nEND\r\n")
        assert _stat(out, b"limit_maxbytes") == 8 << 20
        assert _stat(out, b"local_bytes") <= 8 << 20
        assert _stat(out, b"evictions") > 0
        out, _ = exchange(kv.port, b"cache_memlimit 32\r\n" + fill + b"stats\r\n", quiet=1.0)
        assert out.startswith(b"OK\r\n") and out.count(b"STORED\r\n") == 12_000
        assert _stat(out, b"limit_maxbytes") == 32 << 20
        assert _stat(out, b"local_bytes") > 10 << 20
