"""kvcache served over TCP, compared with a real memcached 1.6.18 (the oracle).

Spec: issue 4 — replies identical to memcached's except version strings, cas
values and stats values; noreply; pipelining; values split across reads;
pymemcache works; items go far and come back byte-exact.
"""

from __future__ import annotations

import pytest
from kvproc import KvCache, exchange, normalize


@pytest.fixture(scope="module")
def kv():
    """A kvcache with an embedded far node and a small heap."""
    with KvCache("-m", "8") as server:
        yield server


STREAMS = [
    b"set k1 5 0 3\r\nabc\r\nget k1\r\ngets k1\r\nadd k1 0 0 1\r\n"
    b"x\r\nreplace k1 7 0 2\r\nzz\r\nget k1\r\n",
    b"get nope1 nope2\r\nadd k2 1 0 2\r\nhi\r\nappend k2 0 0 3\r\n"
    b"!!!\r\nprepend k2 0 0 1\r\n<\r\nget k2\r\n",
    b"append nope 0 0 1\r\nx\r\nprepend nope 0 0 1\r\nx\r\nreplace nope 0 0 1\r\nx\r\n",
    b"set n1 0 0 2\r\n10\r\nincr n1 5\r\ndecr n1 100\r\nget n1\r\nincr n1 18446744073709551615\r\n",
    b"set n2 0 0 3\r\n100\r\ndecr n2 1\r\nget n2\r\nincr n2 1\r\n"
    b"get n2\r\nincr nope 1\r\nincr k1 1\r\n",
    b"set n3 0 0 20\r\n18446744073709551615\r\nincr n3 2\r\nget n3\r\n",
    b"delete k1\r\ndelete k1\r\ndelete k1 0\r\ndelete k1 noreply\r\n"
    b"touch k2 100\r\ntouch nope 1\r\n",
    b"set q 0 0 1 noreply\r\nx\r\nget q\r\nincr q 1 noreply\r\ndelete q noreply\r\nget q\r\n",
    b"set e 0 -1 1\r\nx\r\nget e\r\nset e2 0 0 1\r\nx\r\ntouch e2 -1\r\nget e2\r\n",
    b"gat 100 k2 nope\r\ngats 0 k2\r\ncas k2 0 0 1 1\r\nx\r\ncas nope 0 0 1 1\r\nx\r\n",
    b"set big 0 0 2000000\r\n" + b"x" * 2000000 + b"\r\nget big\r\nfoo\r\nset bad 0 0 1\r\nxyz\r\n",
    b"mn\r\nmg k2 v f t\r\nmg nope v\r\nmg nope v q\r\nmn\r\n"
    b"ms m1 2 T0 F9\r\nhi\r\nmg m1 v f s k\r\n",
    b"ms m2 2 MR\r\nhi\r\nms m2 2 ME\r\nhi\r\nms m2 2 ME\r\nyo\r\nms m2 1 MA\r\n!\r\nmg m2 v\r\n",
    b"md m2\r\nmd m2\r\nmd m2 q\r\nmn\r\nma c1\r\nma c1 N0 J5\r\nma c1 v\r\nma c1 MD D10 v\r\n",
    b"mg mv N30 v\r\nmg mv v\r\nmd mv I\r\nmg mv v\r\nmg mv v\r\n",
    b"version\r\nverbosity 1\r\nflush_all noreply\r\nget k2\r\nGET x\r\n\r\n",
]


@pytest.mark.parametrize("stream", STREAMS, ids=range(len(STREAMS)))
def test_stream_matches_memcached(kv, memcached, stream):
    ours, _ = exchange(kv.port, stream)
    theirs, _ = memcached.exchange(stream, quiet=0.3)
    assert normalize(ours) == normalize(theirs)


def test_pipelined_bytewise(kv, memcached):
    stream = b"set pb 3 0 5\r\nhello\r\nget pb\r\nmg pb v f\r\ndelete pb\r\nget pb\r\n"
    import socket
    import time

    def bytewise(port):
        with socket.create_connection(("127.0.0.1", port)) as s:
            for b in stream:
                s.sendall(bytes([b]))
            time.sleep(0.3)
            s.settimeout(0.3)
            out = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    out += chunk
            except TimeoutError:
                pass
            return out

    assert bytewise(kv.port) == bytewise(memcached.port)


def test_quit_closes(kv):
    out, closed = exchange(kv.port, b"set qq 0 0 1\r\nx\r\nquit\r\nget qq\r\n")
    assert out == b"STORED\r\n" and closed


def test_pymemcache_client(kv):
    from pymemcache.client.base import Client

    c = Client(("127.0.0.1", kv.port))
    c.set("a", b"1")
    assert c.get("a") == b"1"
    assert c.add("a", b"2", noreply=False) is False
    assert c.incr("a", 5) == 6
    assert c.decr("a", 10) == 0
    c.set_many({"x": b"1", "y": b"2"})
    assert c.get_many(["x", "y", "z"]) == {"x": b"1", "y": b"2"}
    value, cas = c.gets("x")
    assert c.cas("x", b"3", cas) is True
    assert c.cas("x", b"4", cas) is False
    assert c.append("x", b"!", noreply=False) and c.get("x") == b"3!"
    assert c.touch("x", 100, noreply=False) is True
    assert c.delete("x", noreply=False) is True and c.get("x") is None
    assert c.version().startswith(b"1.6")
    assert int(c.stats()[b"curr_connections"]) >= 1
    c.close()


def test_items_go_far_and_come_back(kv):
    from pymemcache.client.base import Client

    c = Client(("127.0.0.1", kv.port))
    sizes = [100, 5000, 50_000, 200_000]
    for i in range(400):  # ~ 25 MB through an 8 MB heap
        c.set(f"far{i}", bytes([i % 251]) * sizes[i % 4], noreply=False)
    bad = [i for i in range(400) if c.get(f"far{i}") != bytes([i % 251]) * sizes[i % 4]]
    stats = c.stats()
    c.close()
    assert bad == []
    assert int(stats[b"evacuations"]) > 0 and int(stats[b"far_reads"]) > 0
    assert int(stats[b"local_bytes"]) <= int(stats[b"local_limit_bytes"])


def test_sigterm_exits_cleanly():
    server = KvCache("-m", "8")
    out, _ = exchange(server.port, b"set a 0 0 1\r\nx\r\n")
    assert out == b"STORED\r\n"
    assert server.stop() == 0


def test_binary_protocol_is_closed_counted_and_logged_once():
    """A first byte of 0x80 (memcached's binary protocol): closed, counted, logged at INFO."""
    noop = b"\x80\x0a" + b"\x00" * 22  # a binary NOOP request header
    with KvCache("-m", "8", "--far", "none", "-v") as kv:
        for _ in range(2):
            out, closed = exchange(kv.port, noop + b"version\r\n")
            assert (out, closed) == (b"", True)
        stats, _ = exchange(kv.port, b"version\r\nstats\r\n")
        assert b"STAT binary_protocol_rejected 2\r\n" in stats
        assert stats.startswith(b"VERSION ")  # a text connection is not affected
        logged = [line for line in kv.lines if b"binary-protocol" in line]
    assert len(logged) == 2 and all(b" INFO " in line for line in logged)
