"""Load generation and benchmarks (DESIGN.md section 1).

    locustfile.py, memcache_workload.py   locust against any memcached server
    loadgen.py, bench_memcached.py        kvcache vs memcached, pinned cores
    bench_dispatch.py, bench_protocol.py  the request path and the parser, no sockets
    bench_runtime.py                      the far-memory runtime alone
    webfrontend/                          AIFM's web frontend: local, far, paging
    rss_fill.py                           process memory after a fill (compose limits)

May import anything; nothing imports it.
"""

__all__: list[str] = []
