"""The far node supervised, no orphans, and stats that tell the truth (issue 10).

Spec: an embedded far node that dies is reaped and restarted (with backoff,
logged at WARNING, counted in `stats far`) while the cache keeps answering
and never returns a wrong value; the node never outlives kvcache (a taken
port starts no node; kill -9 of kvcache stops it within 2 s); a far node
that stalls is treated as down after a few timeouts in a row and taken back
when it answers a PING; an unreachable --far node is warned about at once;
while a node is unavailable, stats describe no node; a clean shutdown logs
no lost node. Every test runs real processes on 127.0.0.1 ports.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kvproc import KvCache
from oracle import free_port
from test_kvcache_far import Conn, value_of

from runtime.farprocess import FarProcess


def stat(conn: Conn, name: bytes, group: bytes = b"") -> bytes:
    """One stat's value (KeyError if the server does not list it)."""
    return conn.stats(group)[name]


def wait_for(cond, limit: float, step: float = 0.05) -> bool:
    """Poll cond() until it holds (True) or `limit` seconds pass (False)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def processes_with(marker: str) -> list[int]:
    """PIDs of live processes whose command line contains `marker`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def embedded_pid(conn: Conn) -> int:
    """The embedded far node's PID, from `stats far`."""
    return int(stat(conn, b"embedded_pid", b"far"))


def test_killed_embedded_node_is_restarted_under_load_and_no_value_is_wrong():
    with KvCache("-m", "4", "--far-timeout", "1") as kv:
        c = Conn(kv.port)
        n = 600
        for i in range(n):  # 6 MB through 4 MB: most go far
            assert c.set(b"k%d" % i, value_of(i, 10_000)) == b"STORED"
        first = embedded_pid(c)
        assert first > 0
        stop = threading.Event()
        wrong: list = []
        errors: list = []
        served = [0]

        def reader(seed: int) -> None:
            rnd = random.Random(seed)
            conn = Conn(kv.port, timeout=10)
            try:
                while not stop.is_set():
                    i = rnd.randrange(n)
                    got = conn.get(b"k%d" % i)
                    if got is not None and got != value_of(i, 10_000):
                        wrong.append(i)
                    served[0] += 1
            except Exception as exc:  # reported below
                errors.append(repr(exc))
            finally:
                conn.close()

        threads = [threading.Thread(target=reader, args=(s,)) for s in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        os.kill(first, signal.SIGKILL)
        t0 = time.monotonic()
        back = wait_for(
            lambda: int(stat(c, b"far_available")) == 1 and embedded_pid(c) not in (0, first), 10
        )
        took = time.monotonic() - t0
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
        assert back, "the embedded node did not come back"
        assert took < 5
        assert wrong == [] and errors == []
        assert served[0] > 100
        far = c.stats(b"far")
        assert int(far[b"embedded_restarts"]) == 1 and int(far[b"embedded_deaths"]) == 1
        st = c.stats()
        assert int(st[b"far_items_lost"]) > 0  # the old node took its items with it
        # the restarted node works: new items go far and come back byte-exact
        for i in range(n):
            assert c.set(b"new%d" % i, value_of(i + 1, 10_000)) == b"STORED"
        assert all(c.get(b"new%d" % i) == value_of(i + 1, 10_000) for i in range(0, n, 7))
        c.close()
    log = b"\n".join(kv.lines)
    assert b"WARNING lost far node" in log
    assert b"WARNING embedded far node (pid %d) died (killed by SIGKILL)" % first in log
    assert b"WARNING embedded far node restarted" in log
    assert b"is back" in log


def test_kill_9_of_kvcache_takes_its_far_node_with_it():
    kv = KvCache("-m", "4")
    try:
        c = Conn(kv.port)
        child = embedded_pid(c)
        c.close()
        assert child in processes_with("farserver")
        os.kill(kv.proc.pid, signal.SIGKILL)
        kv.proc.wait()
        assert wait_for(lambda: child not in processes_with("farserver"), 2.0), "orphan node"
    finally:
        kv.stop()


def test_a_taken_port_is_one_line_exit_1_and_leaves_no_process(tmp_path):
    secret = tmp_path / "marker-secret-taken-port"  # its path marks our far node's argv
    secret.write_text("s3cret\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "kvcache", "-p", str(port), "--secret-file", str(secret)],
            capture_output=True,
            timeout=30,
        )
    assert run.returncode == 1
    assert run.stderr == b"kvcache: cannot listen on 127.0.0.1:%d: address already in use\n" % port
    assert processes_with(str(secret)) == []


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_clean_shutdown_logs_no_lost_node_and_stops_the_node(how):
    kv = KvCache("-m", "4", new_session=True)
    try:
        c = Conn(kv.port)
        child = embedded_pid(c)
        assert c.set(b"k", b"v") == b"STORED"
        c.close()
        if how == "SIGTERM":
            os.kill(kv.proc.pid, signal.SIGTERM)
        else:  # a terminal's Ctrl-C: SIGINT to the whole foreground process group
            os.killpg(kv.proc.pid, signal.SIGINT)
        assert kv.proc.wait(15) == 0
    finally:
        kv.stop()
    log = b"\n".join(kv.lines)
    assert b"lost far node" not in log and b"died" not in log, log
    assert wait_for(lambda: child not in processes_with("farserver"), 2.0)


def test_stalled_node_is_declared_down_then_taken_back():
    node = FarProcess(memory_mb=256)
    try:
        with KvCache("-m", "4", "--far", f"127.0.0.1:{node.port}", "--far-timeout", "0.5") as kv:
            c = Conn(kv.port)
            n = 600
            for i in range(n):
                assert c.set(b"k%d" % i, value_of(i, 10_000)) == b"STORED"
            node.pause()
            try:
                times = []
                for i in range(40):  # the first few wait the timeout, then none does
                    t0 = time.monotonic()
                    got = c.get(b"k%d" % i)
                    times.append(time.monotonic() - t0)
                    assert got in (None, value_of(i, 10_000))
                far = c.stats(b"far")
                assert far[b"far_state"] == b"stalled" and int(far[b"far_stalls"]) == 1
                assert int(stat(c, b"far_available")) == 0
                assert sum(t > 0.3 for t in times) <= 3  # only those in flight at the stall
                assert max(times[-20:]) < 0.2
            finally:
                node.resume()
            assert wait_for(lambda: int(stat(c, b"far_available")) == 1, 3.0)
            got = [c.get(b"k%d" % i) for i in range(0, n, 10)]
            assert all(g in (None, value_of(i * 10, 10_000)) for i, g in enumerate(got))
            assert sum(g is not None for g in got) > len(got) // 2  # the node kept them
            c.close()
        log = b"\n".join(kv.lines)
        assert b"WARNING far node 127.0.0.1:%d stalled" % node.port in log
        assert b"answered a PING" in log
    finally:
        node.stop()


def test_unreachable_far_node_is_warned_about_at_startup_and_stats_describe_no_node():
    port = free_port()
    with KvCache("-m", "4", "--far", f"127.0.0.1:{port}", "--far-timeout", "0.3") as kv:
        c = Conn(kv.port)
        st = c.stats()
        assert st[b"far_available"] == b"0" and st[b"far_items"] == b"0"
        assert not any(k.startswith(b"node_") for k in c.stats(b"far"))
        assert c.stats(b"far")[b"far_state"] == b"down"
        c.close()
    line = [x for x in kv.lines if b"unreachable" in x]
    assert len(line) == 1 and b"WARNING" in line[0] and b"127.0.0.1:%d" % port in line[0]


def test_stats_while_the_node_is_down_then_back_empty():
    node = FarProcess(memory_mb=256)
    try:
        with KvCache("-m", "4", "--far", f"127.0.0.1:{node.port}", "--far-timeout", "1") as kv:
            c = Conn(kv.port)
            n = 600
            for i in range(n):
                assert c.set(b"k%d" % i, value_of(i, 10_000)) == b"STORED"
            up = c.stats()
            far_items = int(up[b"far_items"])
            assert far_items > 0 and int(up[b"far_items_lost"]) == 0
            assert int(up[b"curr_items"]) == int(up[b"local_items"]) + far_items
            assert b"node_pid" in c.stats(b"far")
            node.kill()
            assert wait_for(lambda: int(stat(c, b"far_available")) == 0, 3.0)
            down = c.stats()
            assert int(down[b"far_items"]) == 0
            assert int(down[b"far_items_unreachable"]) == far_items
            assert int(down[b"curr_items"]) == int(down[b"local_items"])
            assert int(down[b"far_bytes"]) == 0
            assert not any(k.startswith(b"node_") for k in c.stats(b"far"))
            assert c.get(b"k0") is None  # far keys read as misses while it is down
            node.start()  # same port, a new and empty node
            assert wait_for(lambda: int(stat(c, b"far_available")) == 1, 5.0)
            back = c.stats()
            assert int(back[b"far_items_lost"]) == far_items
            assert int(back[b"far_items"]) == 0 and int(back[b"far_items_unreachable"]) == 0
            c.close()
    finally:
        node.stop()


def test_node_figures_in_stats_are_current_at_the_first_call():
    # a far node of 8 MB under 20 MB of items must evict; the first `stats` says so
    with KvCache("-m", "4", "--far-memory", "8") as kv:
        c = Conn(kv.port)
        for i in range(2000):
            assert c.set(b"k%d" % i, value_of(i, 10_000)) == b"STORED"
        time.sleep(0.3)  # the last write-backs land
        st = c.stats()
        assert int(st[b"evictions"]) > 0
        assert int(st[b"far_bytes"]) > 4 << 20
        c.close()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--secret-file", "/nonexistent"], b"kvcache: cannot read --secret-file /nonexistent: "),
        (["-m", "8", "-I", "5m"], b"cannot set item size limit higher than 1/2 of memory max"),
        (["-I", "512"], b"item max size cannot be less than 1024 bytes"),
    ],
)
def test_bad_settings_are_refused_with_one_line(args, message):
    run = subprocess.run(
        [sys.executable, "-m", "kvcache", "-p", "0", *args], capture_output=True, timeout=30
    )
    assert run.returncode in (1, 2)
    assert message in run.stderr
    assert b"Traceback" not in run.stderr
    if args[0] == "--secret-file":
        assert run.returncode == 1 and run.stderr.count(b"\n") == 1


def test_stats_settings_show_the_bound_port_and_the_backlog():
    with KvCache("-m", "4", "--far", "none", "-b", "2048") as kv:
        c = Conn(kv.port)
        st = c.stats(b"settings")
        assert int(st[b"tcpport"]) == kv.port != 0
        assert int(st[b"tcp_backlog"]) == 2048
        c.close()


def _connected_while_stopped(backlog: int, attempts: int) -> int:
    """Connections whose handshake completes while kvcache -b `backlog` is SIGSTOPped."""
    with KvCache("-m", "4", "--far", "none", "-b", str(backlog)) as kv:
        os.kill(kv.proc.pid, signal.SIGSTOP)
        socks = []
        try:
            for _ in range(attempts):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", kv.port))
                socks.append(s)
            time.sleep(0.5)
            done = 0
            for s in socks:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    try:
                        s.getpeername()
                        done += 1
                    except OSError:
                        pass
            return done
        finally:
            for s in socks:
                s.close()
            os.kill(kv.proc.pid, signal.SIGCONT)


def test_listen_backlog_takes_a_burst_of_connections():
    # the server does not accept while stopped: only the listen queue holds connections
    assert _connected_while_stopped(1024, 600) >= 590
    assert _connected_while_stopped(50, 600) <= 60
