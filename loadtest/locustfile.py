"""Locust load test for kvcache (or any memcached): `locust -f loadtest/locustfile.py`.

    locust -f loadtest/locustfile.py --headless -u 50 -r 10 -t 30s --host 127.0.0.1:11211
    locust -f loadtest/locustfile.py --host memcache://127.0.0.1:11211   (web UI, :8089)

Each simulated user holds one pymemcache connection (TCP_NODELAY, replies
awaited: no noreply) and loops with no think time by default: draw an
operation from the mix, keys from the Zipf key space, a value size from the
size distribution, run it, report it. Every request goes through locust's
request event (request_type "memcache", the response time in ms, the bytes
received or sent, the exception if it failed), so locust's statistics,
charts, failure counts and --csv/--json/--html reports work as for its HTTP
users. Names in the statistics:

    get        a get that found its key      (length: value bytes)
    get miss   a get that found nothing      (not a failure: a cache may forget)
    set        set with a reply              (length: value bytes sent)
    get_multi  one `get k1 ... kN`           (length: value bytes; N = --mget-keys)
    delete     delete (a miss is not a failure)

A failure is an exception (timeout, connection reset, an error reply) or a
set not answered STORED. The options below are locust command-line (and
config-file / LOCUST_* environment) arguments, also editable in the web UI;
`--host` takes HOST:PORT or memcache://HOST:PORT. Workload details:
loadtest/memcache_workload.py. Only point it at servers you run.
"""

from __future__ import annotations

import logging
import random
import time

from locust import User, constant, events, task
from pymemcache.client.base import Client

from loadtest.memcache_workload import Keys, Mix, ValueSizes, parse_host, payload

__all__ = ["MemcacheUser"]

log = logging.getLogger("locustfile")

REQUEST_TYPE = "memcache"  # the "method" column of locust's statistics
PRELOAD_BATCH = 100  # keys per set_many while preloading


class SetNotStored(Exception):
    """A set answered something other than STORED."""


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    """The workload's options (shown in the web UI's custom parameters).

    Added with the parser's own add_argument: an argument group's would not
    mark them for the web UI.
    """
    parser.add_argument("--keys", type=int, default=10_000, help="key space size (default 10000)")
    parser.add_argument("--zipf", type=float, default=0.99, help="Zipf skew, 0 = uniform (0.99)")
    parser.add_argument(
        "--value-size",
        default="100",
        help="value sizes: N, LO-HI or weighted SIZE:W,... e.g. 100:9,16k-64k:1 (default 100)",
    )
    parser.add_argument(
        "--mix",
        default="get=85,set=10,mget=4,delete=1",
        help="operation weights (default get=85,set=10,mget=4,delete=1)",
    )
    parser.add_argument("--mget-keys", type=int, default=10, help="keys per multi-get (10)")
    parser.add_argument("--key-prefix", default="kv:", help="prepended to every key (kv:)")
    parser.add_argument(
        "--preload", action="store_true", help="set every key once before the users start"
    )
    parser.add_argument("--mc-timeout", type=float, default=2.0, help="socket timeout, s (2)")


class Workload:
    """The parsed workload options of one run."""

    def __init__(self, options) -> None:
        self.keys = Keys(options.keys, options.zipf, options.key_prefix)
        self.sizes = ValueSizes(options.value_size)
        self.mix = Mix(options.mix)
        self.mget_keys = max(1, options.mget_keys)
        self.timeout = options.mc_timeout  # seconds, connect and each reply
        self.preload = options.preload


def _client(host: str | None, timeout: float) -> Client:
    return Client(
        parse_host(host),
        connect_timeout=timeout,
        timeout=timeout,
        no_delay=True,
        default_noreply=False,
    )


@events.init.add_listener
def _check_options(environment, **_kwargs) -> None:
    """Fail at start-up, not in every user, when an option is malformed."""
    options = environment.parsed_options
    if options is None:  # used as a library, without a command line
        return
    try:
        Workload(options)
        if environment.host:
            parse_host(environment.host)
    except ValueError as exc:
        raise SystemExit(f"locustfile: {exc}") from None


@events.test_start.add_listener
def _preload(environment, **_kwargs) -> None:
    """With --preload, set every key once (not counted in the statistics)."""
    options = environment.parsed_options
    if options is None or not options.preload:
        return
    work = Workload(options)
    rng = random.Random(0)
    client = _client(environment.host, work.timeout)
    started = time.perf_counter()
    try:
        for base in range(0, work.keys.n, PRELOAD_BATCH):
            ranks = range(base, min(work.keys.n, base + PRELOAD_BATCH))
            batch = {work.keys.key(r): payload(work.sizes.size(rng)) for r in ranks}
            failed = client.set_many(batch)
            if failed:
                log.warning("preload: %d keys not stored, e.g. %s", len(failed), failed[0])
    finally:
        client.close()
    log.info("preloaded %d keys in %.1f s", work.keys.n, time.perf_counter() - started)


class MemcacheUser(User):
    """One memcached connection running the configured mix of requests."""

    wait_time = constant(0)  # no think time: the next request as soon as one returns

    def on_start(self) -> None:
        """Parse the (possibly web-UI-edited) options and connect lazily."""
        self.work = Workload(self.environment.parsed_options)
        self.rng = random.Random()
        self.client = _client(self.host, self.work.timeout)
        self.ops = {
            "get": self.get,
            "set": self.set,
            "mget": self.get_multi,
            "delete": self.delete,
        }

    def on_stop(self) -> None:
        """Close the connection."""
        self.client.close()

    @task
    def request(self) -> None:
        """One request drawn from the mix."""
        self.ops[self.work.mix.choose(self.rng)]()

    def _report(self, name: str, started: float, length: int, exc: BaseException | None) -> None:
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE,
            name=name,
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=length,
            response=None,
            context={},
            exception=exc,
        )

    def get(self) -> None:
        """`get <key>`."""
        key = self.work.keys.draw(self.rng)
        started = time.perf_counter()
        try:
            value = self.client.get(key)
        except Exception as exc:
            self._report("get", started, 0, exc)
            return
        if value is None:
            self._report("get miss", started, 0, None)
        else:
            self._report("get", started, len(value), None)

    def set(self) -> None:
        """`set <key> 0 0 <size>` with a reply."""
        key = self.work.keys.draw(self.rng)
        value = payload(self.work.sizes.size(self.rng))
        started = time.perf_counter()
        exc: BaseException | None = None
        try:
            if not self.client.set(key, value, noreply=False):
                exc = SetNotStored(f"set {key} not stored")
        except Exception as e:
            exc = e
        self._report("set", started, len(value), exc)

    def get_multi(self) -> None:
        """`get k1 ... kN` (N = --mget-keys distinct keys)."""
        keys = self.work.keys.draw_many(self.rng, self.work.mget_keys)
        started = time.perf_counter()
        try:
            found = self.client.get_many(keys)
        except Exception as exc:
            self._report("get_multi", started, 0, exc)
            return
        self._report("get_multi", started, sum(len(v) for v in found.values()), None)

    def delete(self) -> None:
        """`delete <key>` with a reply (NOT_FOUND is a success)."""
        key = self.work.keys.draw(self.rng)
        started = time.perf_counter()
        exc: BaseException | None = None
        try:
            self.client.delete(key, noreply=False)
        except Exception as e:
            exc = e
        self._report("delete", started, 0, exc)
