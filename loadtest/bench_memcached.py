"""Benchmark: kvcache against memcached (Debian's, `-t 1`) and the null server, in one run.

The servers are child processes on ephemeral 127.0.0.1 ports, pinned with
`taskset -c 0`; this process (the load generator, loadtest/loadgen.py's C
engine, loadtest/cloadgen.c: one process, N connections on one epoll loop,
`depth` requests in flight per connection, 1 = no pipelining) runs under
`taskset -c 1`. The null server (loadtest/nullserver.py: a uvloop protocol
in plain Python, one dict lookup per key, preformatted replies) is the
ceiling of any Python server on uvloop. For workloads 1-3 kvcache runs with
its embedded far node (a child of it, so also on core 0; it stays idle:
everything fits). For workload 4 the far node is a separate farserver on
core 1, beside the generator: far memory is another machine's CPU and
memory, not the cache server's.

Workloads (100-byte values, keys `key:NNNNNNN`, 50 connections):

 1. get        uniform over 10k preloaded keys          target >= 0.9x memcached,
                                                        >= 0.95x the null server
 2. set        uniform over 10k keys                    target >= 0.85x memcached
 3. multi-get  `get k1 ... k100` over 10k keys, keys/s  target >= 1.5x memcached
 4. Zipf 0.99  gets over 200k preloaded keys (22 MB of key+value): kvcache with
               a local heap that keeps ~25% of the items resident (measured
               and printed: local_items / curr_items) vs kvcache all-local
               (-m 128), both over the same far node   target >= 0.85x
               (memcached all-local is printed for reference)
 5. far hit    uniform gets over 200k keys through kvcache -m 8 (most items far)
               against -m 128: the cache's CPU per far hit (its process's
               utime+stime, less the resident gets' share)   target <= 15 us
 6. far-hit instructions (`--only farhit-ir`, not in the default set: slow)
               the same far-hit workload with kvcache -m 8 under
               `valgrind --tool=callgrind --instr-atstart=no`, collection
               switched on (`callgrind_control -i on`) only around the
               measured run: user-space instructions per far hit (the run's
               total less its resident gets, each costing what a get of
               resident keys costs in the same process, then / far hits).
               One connection, one get in flight: with many, a traced server
               batches more requests per loop turn the slower the machine
               is, and the count followed the machine's load (31.7k-50.5k
               per far hit for one build); with one it is repeatable

Each is run `--runs` times, servers alternating; medians are printed with the
generator's CPU use: at ~1.0 of a core the generator, not the server, is the
limit (marked SATURATED) and the ratio understates the faster server.

Also kvcache's local memory per resident item (tracemalloc around 100k sets
into an in-process RemHashTable with no far node) and per far item (cuckoo
filter bytes per key).

Run: python -m loadtest.bench_memcached [--quick] [--runs 3] [--seconds 5]
     [--conns 50] [--depth 1] [--only basic,zipf,farhit,memory,farhit-ir]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

from loadtest import loadgen
from loadtest.loadgen import END, STORED

MEMCACHED = "/usr/bin/memcached"
SERVER_CORE = "0"
LOADGEN_CORE = 1
VALUE = b"v" * 100
SMALL_KEYS = 10_000
ZIPF_KEYS = 200_000
ZIPF_S = 0.99
MGET_KEYS = 100
MiB = 1 << 20
TARGETS = {"get": 0.9, "get_null": 0.95, "set": 0.85, "mget": 1.5, "zipf": 0.85}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((loadgen.HOST, 0))
        return s.getsockname()[1]


class Server:
    """A server child process pinned to the server core, stopped by PID."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        core: str = SERVER_CORE,
        probe: bool = True,
        start_timeout: float = 30.0,
    ):
        self.name = name
        self.start_timeout = start_timeout  # seconds to wait for it to answer
        self.port = _free_port()
        self.argv = ["taskset", "-c", core] + [a.format(port=self.port) for a in argv]
        self.probe = probe  # answers memcached's `version` (a far node does not)
        self.log = tempfile.TemporaryFile()
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"{self.name} exited: {self.log.read().decode()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((loadgen.HOST, self.port), timeout=1) as s,
            ):
                if not self.probe:
                    return self  # accepting connections is all a far node shows
                s.sendall(b"version\r\n")
                if s.recv(100).startswith(b"VERSION"):
                    return self
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"{self.name} did not start: {' '.join(self.argv)}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        self.proc = None


def memcached() -> Server:
    """Debian's memcached, one worker thread, 64 MB."""
    return Server(
        "memcached",
        [MEMCACHED, "-u", "root", "-t", "1", "-p", "{port}", "-l", "127.0.0.1", "-U", "0"]
        + ["-m", "64", "-c", "1024"],
    )


def kvcache(heap_mb: int, far: Server | None = None, wrapper: list[str] = ()) -> Server:
    """kvcache with a `heap_mb` MiB local heap; its far node `far`, else an embedded one.

    wrapper: a command kvcache runs under (valgrind); it then gets 5 minutes to start.
    """
    argv = [*wrapper, sys.executable, "-m", "kvcache", "-p", "{port}", "-l", "127.0.0.1"]
    argv += ["-m", str(heap_mb)]
    if far is not None:
        argv += ["--far", f"{loadgen.HOST}:{far.port}"]
    return Server(f"kvcache -m {heap_mb}", argv, start_timeout=300.0 if wrapper else 30.0)


def nullserver() -> Server:
    """The null server: plain Python on uvloop, one dict lookup per key."""
    argv = [sys.executable, "-m", "loadtest.nullserver", "-p", "{port}", "-l", "127.0.0.1"]
    return Server("null server", argv)


def far_node() -> Server:
    """A farserver on the load generator's core: far memory is another machine's CPU."""
    argv = [sys.executable, "-m", "farserver", "-p", "{port}", "-l", "127.0.0.1", "-m", "1024"]
    return Server("farserver", argv, core=str(LOADGEN_CORE), probe=False)


def _runs(servers, requests, terminator, args, warmup: float = 0.0) -> dict[str, list]:
    """Results per server name, `args.runs` runs each, servers alternating."""
    out: dict[str, list] = {s.name: [] for s in servers}
    if warmup:
        for s in servers:
            loadgen.run(s.port, requests, args.conns, warmup, args.depth, terminator)
    for _ in range(args.runs):
        for s in servers:
            r = loadgen.run(s.port, requests, args.conns, args.seconds, args.depth, terminator)
            out[s.name].append(r)
    return out


def _median(results, per_key: bool = False) -> float:
    return statistics.median(r.hits_per_s if per_key else r.ops_per_s for r in results)


def _line(label: str, results, per_key: bool = False) -> float:
    """Print the median rate of `results` with the generator's CPU; return the rate."""
    rate = _median(results, per_key)
    cpu = statistics.median(r.cpu for r in results)
    unit = "keys/s" if per_key else "ops/s"
    runs = " ".join(f"{(r.hits_per_s if per_key else r.ops_per_s):.0f}" for r in results)
    flag = "  SATURATED: generator at a full core" if cpu >= loadgen.SATURATED_CPU else ""
    hit = ""
    if results[0].hits:
        found = sum(r.hits for r in results) / sum(r.ops for r in results)
        hit = f"  {found:.1f} keys found/reply" if per_key else f"  hit ratio {found:.3f}"
    batch = statistics.median(r.per_wakeup for r in results)
    print(
        f"   {label:<30} {rate:10.0f} {unit:<6} (runs: {runs})  loadgen cpu {cpu:.2f},"
        f" {batch:.1f} replies/wakeup{hit}{flag}"
    )
    return rate


def _ratio(label: str, num: float, den: float, target: float, den_results=()) -> None:
    r = num / den
    verdict = "ok" if r >= target else "BELOW TARGET"
    cpu = statistics.median(x.cpu for x in den_results) if den_results else 0.0
    bound = (
        "; reference held back by the generator: the true ratio is lower"
        if cpu >= loadgen.SATURATED_CPU
        else ""
    )
    print(f"   {label:<30} {r:10.2f}x   target >= {target}x  {verdict}{bound}")


def memory_overhead(n: int = 100_000) -> float:
    """Print kvcache's local bytes per resident item and per far key; the first."""
    from runtime import hub as H
    from runtime.cuckoo import CuckooFilter
    from runtime.hashtable import RemHashTable
    from runtime.manager import Manager

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def new_table() -> RemHashTable:
        # no far node: everything stays resident; made outside the measured
        # window (its filter, sized for 1M far keys, is a fixed cost: below)
        return RemHashTable(Manager(64 * MiB))

    def fill(table: RemHashTable) -> None:
        for i in range(n):  # keys made here: the table keeps them, as the server does
            table.set(loadgen.key_of(i), VALUE)
        assert len(table) == n

    def main():
        table = new_table()
        gc.collect()
        rss0 = rss()  # first pass: RSS, without tracemalloc's own bookkeeping
        fill(table)
        gc.collect()
        rss_grown = rss() - rss0
        del table
        gc.collect()
        table = new_table()
        gc.collect()
        tracemalloc.start()  # second pass: exact Python allocations
        t0 = tracemalloc.get_traced_memory()[0]
        fill(table)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - t0
        tracemalloc.stop()
        # segments in the heap's arena (anonymous maps, runtime.hugepages) are not
        # Python allocations: tracemalloc does not see them, so they are added here
        arena = sum(
            len(seg.buf)
            for seg in table.manager.heap.segments.values()
            if not isinstance(seg.buf, bytearray)
        )
        st = table.manager.stats()
        return grown + arena, rss_grown, st["used_bytes"], st["live_bytes"]

    grown, rss_grown, used, live = H.run(main)
    kv = len(loadgen.key_of(0)) + len(VALUE)
    print(f"6. local memory, {n} resident items of {kv} B key+value (in-process RemHashTable)")
    print(
        f"   tracemalloc growth + arena segments {grown / n:6.1f} B/item -> overhead"
        f" {grown / n - kv:6.1f} B/item"
        f" beyond key+value; process RSS growth (a separate pass) {rss_grown / n:6.1f} B/item"
    )
    print(
        f"   of which heap objects (8 B header + 22 B item header + key + value, 8-aligned)"
        f" {live / n:6.1f} B/item, heap segments in use {used / n:6.1f} B/item,"
        f" Python structures (index entries, word array)"
        f" {(grown - used) / n:6.1f} B/item"
    )
    for cap in (n, 1 << 20):
        f = CuckooFilter(cap)
        for i in range(n):
            f.add(loadgen.key_of(i))
        print(
            f"   far item: cuckoo filter sized for {cap} keys holding {len(f)}:"
            f" {f.nbytes} B = {f.nbytes / len(f):.2f} B per far key"
            f" ({f.nbytes / cap:.2f} B per key at its capacity)"
        )
    table_default = 1 << 20
    print(
        f"   (RemHashTable's filter is sized for expected_far_items={table_default}:"
        f" {CuckooFilter(table_default).nbytes} B fixed until more keys go far)"
    )
    return grown / n - kv


def _stats(port: int, group: bytes = b"") -> dict[str, str]:
    """The server's `stats [group]` reply as a dict."""
    with socket.create_connection((loadgen.HOST, port), timeout=10) as s:
        s.sendall(b"stats %s\r\n" % group if group else b"stats\r\n")
        buf = b""
        while not buf.endswith(b"END\r\n"):
            data = s.recv(1 << 16)
            if not data:
                break
            buf += data
    out = {}
    for line in buf.decode().splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] == "STAT":
            out[parts[1]] = parts[2]
    return out


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def basic(args: argparse.Namespace) -> None:
    """Workloads 1-3: get, set and 100-key multi-get against memcached."""
    rnd = random.Random(1)
    uniform = [rnd.randrange(SMALL_KEYS) for _ in range(200_000)]
    gets = loadgen.get_requests(uniform)
    sets = loadgen.set_requests(uniform, VALUE)
    mgets = loadgen.mget_requests(uniform, MGET_KEYS)
    with memcached() as mc, nullserver() as ns, kvcache(64) as kv:
        servers = [kv, ns, mc]
        for s in servers:
            print(f"   {s.name}: {' '.join(s.argv)}")
            loadgen.preload(s.port, SMALL_KEYS, VALUE)
        compiled = _stats(kv.port, b"settings").get("compiled", "?")
        print(f"   kvcache compiled: {compiled} (kvcache/compiled.py; stats settings)")
        print(f"1. get, {SMALL_KEYS} keys preloaded, uniform")
        res = _runs(servers, gets, END, args, warmup=0.5)
        a, n, b = (_line(s.name, res[s.name]) for s in servers)
        _ratio("kvcache / memcached", a, b, TARGETS["get"], res[mc.name])
        _ratio("kvcache / null server", a, n, TARGETS["get_null"], res[ns.name])
        print(f"2. set, {SMALL_KEYS} keys, uniform")
        res = _runs(servers, sets, STORED, args, warmup=0.5)
        a, n, b = (_line(s.name, res[s.name]) for s in servers)
        _ratio("kvcache / memcached", a, b, TARGETS["set"], res[mc.name])
        print(f"   {'kvcache / null server':<30} {a / n:10.2f}x   (for reference)")
        print(f"3. multi-get of {MGET_KEYS} keys, {SMALL_KEYS} keys preloaded (keys/s)")
        res = _runs(servers, mgets, END, args, warmup=0.5)
        a, n, b = (_line(s.name, res[s.name], per_key=True) for s in servers)
        _ratio("kvcache / memcached", a, b, TARGETS["mget"], res[mc.name])
        print(f"   {'kvcache / null server':<30} {a / n:10.2f}x   (for reference)")


def zipf(args: argparse.Namespace) -> None:
    """Workload 4: Zipf gets with ~25% of the items resident against all-local."""
    data = ZIPF_KEYS * (len(loadgen.key_of(0)) + len(VALUE))
    # a resident item takes 40 B of headers + key + value in the heap; under
    # this churn segments hold ~58% live item bytes on average (the evacuator
    # keeps 12-22% free, victims and survivors carry dead space): measured,
    # -m 9 kept 17.6% of the items resident and -m 12 25-30%
    per_item = 40 + len(loadgen.key_of(0)) + len(VALUE)
    small_mb = max(3, round(ZIPF_KEYS / 4 * per_item / 0.58 / MiB))
    requests = loadgen.get_requests(loadgen.zipf_indexes(ZIPF_KEYS, 400_000, ZIPF_S))
    print(
        f"4. Zipf {ZIPF_S} gets over {ZIPF_KEYS} preloaded keys, {data / 1e6:.1f} MB key+value;"
        f" heap -m {small_mb} (for ~25% of the items) vs -m 128 (all local); far node on core"
        f" {LOADGEN_CORE}"
    )
    with (
        far_node() as far,
        kvcache(small_mb, far) as small,
        kvcache(128, far) as big,
        memcached() as mc,
    ):
        for s in (small, big, mc):
            t = loadgen.preload(s.port, ZIPF_KEYS, VALUE)
            print(f"   preloaded {s.name}: {ZIPF_KEYS / t:.0f} sets/s (pipelined 500)")
        warm = 1.0 if args.quick else 2.0
        before = {s.name: _stats(s.port) for s in (small, big)}
        res = _runs([small, big, mc], requests, END, args, warmup=warm)
        for s in (small, big):
            after = _stats(s.port)
            gets = int(after["cmd_get"]) - int(before[s.name]["cmd_get"])
            hits = int(after.get("far_hits", 0)) - int(before[s.name].get("far_hits", 0))
            resident = int(after["local_items"]) / max(int(after["curr_items"]), 1)
            print(
                f"   {s.name}: {resident:.1%} of the items resident, {hits / max(gets, 1):.1%}"
                " of gets far hits (warm-up included)"
            )
        a = _line(f"kvcache -m {small_mb} (~25% local)", res[small.name])
        b = _line("kvcache -m 128 (all local)", res[big.name])
        c = _line("memcached -m 64 (reference)", res[mc.name])
        _ratio("25% local / all-local", a, b, TARGETS["zipf"], res[big.name])
        print(f"   {'kvcache all-local / memcached':<30} {b / c:10.2f}x   (for reference)")


def _cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process `pid` so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _settle(
    port: int,
    n_keys: int,
    args: argparse.Namespace,
    seconds: float = 1.0,
    per: int = 100,
    traced: bool = False,
) -> None:
    """Warm up until the preload's dirty items are written back: up to 30 runs of `seconds`
    of uniform gets, each over keys of its own (a run replays its list from the start: a
    list used twice would find its keys resident), until one writes back fewer than one
    item per `per` gets. A far hit's own cost has no write-back in it: an item read from
    far memory is clean, and dropped when evicted. A server `traced` by valgrind on a busy
    machine may stall past the generator's patience: that run just ends early."""
    rnd = random.Random(7)
    for _ in range(30):
        requests = loadgen.get_requests([rnd.randrange(n_keys) for _ in range(100_000)])
        before = _stats(port)
        try:
            loadgen.run(port, requests, args.conns, seconds, args.depth, END)
        except (ConnectionError, TimeoutError):
            if not traced:
                raise
        after = _stats(port)
        gets = int(after["cmd_get"]) - int(before["cmd_get"])
        writes = int(after.get("far_writes", 0)) - int(before.get("far_writes", 0))
        if writes * per < gets:
            return


def farhit(args: argparse.Namespace) -> None:
    """Workload 5: the cache's CPU per far hit, against a resident get's."""
    n_keys = ZIPF_KEYS
    rnd = random.Random(5)
    requests = loadgen.get_requests([rnd.randrange(n_keys) for _ in range(400_000)])
    print(
        f"5. far hits: uniform gets over {n_keys} preloaded keys of 100 B; kvcache -m 8"
        f" (most items far) vs -m 128 (all local), far node on core {LOADGEN_CORE};"
        " CPU = the kvcache process's utime+stime over the run, after a warm-up that writes"
        " back the preload's dirty items"
    )
    with far_node() as far, kvcache(8, far) as small, kvcache(128, far) as big:
        for s in (small, big):
            loadgen.preload(s.port, n_keys, VALUE)
        rows = {}
        for s in (small, big):
            _settle(s.port, n_keys, args)
            before = _stats(s.port)
            user0, sys0 = _cpu_split(s.proc.pid)
            r = loadgen.run(s.port, requests, args.conns, args.seconds, args.depth, END)
            user1, sys1 = _cpu_split(s.proc.pid)
            user, system = user1 - user0, sys1 - sys0
            cpu = user + system
            after = _stats(s.port)
            gets = int(after["cmd_get"]) - int(before["cmd_get"])
            hits = int(after["far_hits"]) - int(before["far_hits"])
            rows[s.name] = (r, cpu, user, gets, hits)
            print(
                f"   {s.name:<30} {r.ops_per_s:10.0f} ops/s, {hits / max(gets, 1):.1%} far hits,"
                f" {cpu / max(gets, 1) * 1e6:.1f} us of CPU per get"
                f" ({user / max(gets, 1) * 1e6:.1f} user)"
            )
        r_s, cpu_s, user_s, gets_s, hits_s = rows[small.name]
        r_b, cpu_b, user_b, gets_b, _ = rows[big.name]
        per_local = cpu_b / max(gets_b, 1)
        per_far = (cpu_s - (gets_s - hits_s) * per_local) / max(hits_s, 1)
        user_far = (user_s - (gets_s - hits_s) * user_b / max(gets_b, 1)) / max(hits_s, 1)
        verdict = "ok" if per_far <= 15e-6 else "ABOVE TARGET"
        print(
            f"   CPU per far hit {per_far * 1e6:10.1f} us ({user_far * 1e6:.1f} user)"
            f"   target <= 15 us  {verdict}"
        )


def _callgrind(pid: int, *cmd: str) -> None:
    """callgrind_control's `cmd` on process `pid` (it must succeed)."""
    subprocess.run(["callgrind_control", *cmd, str(pid)], check=True, capture_output=True)


def _instructions(pid: int, out_dir: str) -> tuple[int, str]:
    """Dump the counts collected since the last dump: their total Ir (the dump's `totals:`
    line, its last) and the dump's path."""
    before = set(os.listdir(out_dir))
    _callgrind(pid, "-d")
    for _ in range(600):  # the dump is written by the traced process, at its pace
        for name in sorted(set(os.listdir(out_dir)) - before):
            path = os.path.join(out_dir, name)
            with open(path) as f:
                for line in f:
                    if line.startswith("totals:"):
                        return int(line.split()[1]), path
        time.sleep(0.1)
    raise RuntimeError("callgrind wrote no dump")


def farhit_ir(args: argparse.Namespace) -> None:
    """Workload 6: instructions per far hit (callgrind), against a resident get's."""
    n_keys = ZIPF_KEYS
    resident_keys = 2_000  # set again just before their run: resident and hot
    seconds = 20.0 if args.quick else 60.0
    rnd = random.Random(5)
    far_reqs = loadgen.get_requests([rnd.randrange(n_keys) for _ in range(400_000)])
    res_reqs = loadgen.get_requests([rnd.randrange(resident_keys) for _ in range(100_000)])
    print(
        f"6. far-hit instructions: uniform gets over {n_keys} preloaded keys of 100 B, kvcache"
        f" -m 8 under callgrind (far node on core {LOADGEN_CORE}), 1 connection (no batching:"
        " the count does not depend on the machine's speed),"
        f" {seconds:g} s of collection per run; resident reference: gets of {resident_keys}"
        " keys just set, same process"
    )
    with contextlib.ExitStack() as stack:
        out_dir = args.callgrind_out or stack.enter_context(tempfile.TemporaryDirectory())
        os.makedirs(out_dir, exist_ok=True)
        wrapper = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out_dir}/callgrind.out.%p",
        ]
        with far_node() as far, kvcache(8, far, wrapper) as kv:
            pid = kv.proc.pid
            loadgen.preload(kv.port, n_keys, VALUE)
            _settle(kv.port, n_keys, args, seconds=10.0, per=10_000, traced=True)
            rows = {}
            for label, reqs, prep in (("far", far_reqs, None), ("resident", res_reqs, True)):
                if prep:
                    loadgen.preload(kv.port, resident_keys, VALUE)
                    loadgen.run(kv.port, reqs, 1, 5.0, 1, END)  # warm
                before = _stats(kv.port)
                _instructions(pid, out_dir)  # drop what the preparation counted
                _callgrind(pid, "-i", "on")
                r = loadgen.run(kv.port, reqs, 1, seconds, 1, END)
                _callgrind(pid, "-i", "off")
                ir, dump = _instructions(pid, out_dir)
                after = _stats(kv.port)
                gets = int(after["cmd_get"]) - int(before["cmd_get"])
                hits = int(after["far_hits"]) - int(before["far_hits"])
                writes = int(after["far_writes"]) - int(before["far_writes"])
                rows[label] = (ir, gets, hits)
                if args.callgrind_out:  # the dump just written holds this run alone
                    last = max(
                        os.listdir(out_dir), key=lambda n: os.path.getmtime(f"{out_dir}/{n}")
                    )
                    os.replace(f"{out_dir}/{last}", f"{out_dir}/{label}.callgrind")
                print(
                    f"   {label + ' run':<14} {gets:8d} gets, {hits:8d} far hits, {ir:14d} Ir,"
                    f" {ir / max(gets, 1):8.0f} Ir per get, {writes} write-backs"
                    f" ({r.ops_per_s:.0f} ops/s traced)"
                )
            ir_f, gets_f, hits_f = rows["far"]
            ir_r, gets_r, hits_r = rows["resident"]
            per_res = ir_r / max(gets_r, 1)
            per_far = (ir_f - (gets_f - hits_f) * per_res) / max(hits_f, 1)
            print(f"   instructions per resident get {per_res:10.0f}")
            print(f"   instructions per far hit      {per_far:10.0f}")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.sched_getaffinity(0) != {LOADGEN_CORE}:  # the load generator runs on core 1
        cmd = ["taskset", "-c", str(LOADGEN_CORE), sys.executable, "-m", __spec__.name, *argv]
        sys.stdout.flush()
        os.execvp("taskset", cmd)
    ap = argparse.ArgumentParser(
        prog="python -m loadtest.bench_memcached", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--quick", action="store_true", help="1 run of 2 s per workload")
    ap.add_argument("--runs", type=int, default=3, help="runs per server; medians printed")
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each run")
    ap.add_argument("--conns", type=int, default=50, help="client connections")
    ap.add_argument("--depth", type=int, default=1, help="requests in flight per connection")
    ap.add_argument(
        "--only",
        default="basic,zipf,farhit,memory",
        help="comma-separated parts to run: basic (get, set, multi-get), zipf, farhit, memory;"
        " farhit-ir (callgrind, slow) only when named",
    )
    ap.add_argument(
        "--callgrind-out",
        metavar="DIR",
        help="farhit-ir: keep each run's callgrind dump as DIR/far.callgrind, resident.callgrind"
        " (for callgrind_annotate)",
    )
    args = ap.parse_args(argv)
    parts = set(args.only.split(","))
    if args.quick:
        args.runs, args.seconds = 1, 2.0
    print(
        "command: taskset -c 1 python -m loadtest.bench_memcached", *argv
    )  # re-executed under taskset if not already pinned
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}, {platform.platform()}"
    )
    print(
        f"servers on core {SERVER_CORE} (taskset), load generator on core {LOADGEN_CORE}:"
        f" loadtest/loadgen.py ({'C engine, cloadgen.c' if loadgen.c_engine() else 'Python'}),"
        f" 1 process, {args.conns} connections, {args.depth} request(s) in flight each, 127.0.0.1"
    )
    print(
        f"workload: 100 B values, {args.runs} run(s) x {args.seconds:g} s per server, medians;"
        " loadgen cpu = its CPU s / wall s (1.0 = a full core)"
    )
    ver = subprocess.run([MEMCACHED, "-V"], capture_output=True, text=True).stdout.strip()
    load0 = _loadavg()
    print(f"load average at the start: {load0}")
    print(f"reference: {ver} -t 1 -m 64, same generator, same run; Zipf: kvcache all-local")
    print()

    if "basic" in parts:
        basic(args)
    if "zipf" in parts:
        zipf(args)
    if "farhit" in parts:
        farhit(args)
    if "farhit-ir" in parts:
        farhit_ir(args)
    if "memory" in parts:
        print()
        memory_overhead()
    print()
    print(
        f"load average at the start: {load0}, at the end: {_loadavg()} (other work on the cores?)"
    )


if __name__ == "__main__":
    main()
