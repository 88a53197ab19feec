"""Load generation and benchmarks.

Will hold (DESIGN.md section 1) the locustfile, the web-frontend application
(AIFM's benchmark), the paging baseline, and benchmark and plotting scripts.
May import anything; nothing imports it.
"""

__all__: list[str] = []
