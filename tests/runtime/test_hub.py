"""runtime/hub.py: greenlets on uvloop, Waiter (gevent's pattern), spawn, sleep.

Spec: DESIGN §2 — only the hub resumes a parked greenlet; the hub never parks
(WouldPark before any side effect); greenlets are pooled, not created per
request; a Waiter is good for one wait.
"""

from __future__ import annotations

import time

import pytest

from runtime import hub as H
from runtime.errors import NotInHub, WaiterReused, WouldPark


def test_run_returns_main_result():
    assert H.run(lambda: 42) == 42


def test_run_propagates_main_error():
    def boom():
        raise ValueError("x")

    with pytest.raises(ValueError):
        H.run(boom)


def test_spawn_join_in_order_of_sleep():
    order = []

    def worker(i):
        H.sleep(0.01 * (5 - i))
        order.append(i)
        return i * i

    def main():
        threads = [H.spawn(worker, i) for i in range(5)]
        return [t.join() for t in threads]

    assert H.run(main) == [0, 1, 4, 9, 16]
    assert order == [4, 3, 2, 1, 0]


def test_join_reraises_thread_error():
    def bad():
        raise KeyError("k")

    def main():
        t = H.spawn(bad)
        with pytest.raises(KeyError):
            t.join()
        return True

    assert H.run(main)


def test_waiter_value_before_get_is_kept():
    def main():
        hub = H.get_hub()
        w = H.Waiter(hub)
        hub.loop.call_soon(w.switch, "early")
        H.sleep(0.01)  # the switch happens while nobody waits
        return w.get()

    assert H.run(main) == "early"


def test_waiter_throw_and_timeout():
    def main():
        hub = H.get_hub()
        w = H.Waiter(hub)
        hub.loop.call_soon(w.throw, RuntimeError("thrown"))
        with pytest.raises(RuntimeError):
            w.get()
        w2 = H.Waiter(hub)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            w2.get(timeout=0.05)
        assert 0.04 < time.monotonic() - t0 < 1.0
        return True

    assert H.run(main)


def test_waiter_used_twice_is_an_error():
    def main():
        hub = H.get_hub()
        w = H.Waiter(hub)
        hub.loop.call_soon(w.switch, 1)
        w.get()
        with pytest.raises(WaiterReused):
            w.get()
        return True

    assert H.run(main)


def test_parking_the_hub_raises_wouldpark():
    seen = []

    def main():
        hub = H.get_hub()

        def in_hub_callback():
            try:
                H.Waiter(hub).get()
            except WouldPark:
                seen.append("wouldpark")
            try:
                H.check_can_park()
            except WouldPark:
                seen.append("check")

        hub.loop.call_soon(in_hub_callback)
        H.sleep(0.02)
        return seen

    assert H.run(main) == ["wouldpark", "check"]


def test_resuming_outside_the_hub_raises():
    def main():
        w = H.Waiter()
        parked = H.spawn(w.get)  # parks on w
        H.sleep(0.01)
        with pytest.raises(NotInHub):
            w.switch(1)  # a green thread may not resume another
        with pytest.raises(NotInHub):
            H.get_hub().run_in_pool(print)
        H.get_hub().loop.call_soon(w.switch, 2)  # the hub may
        return parked.join()

    assert H.run(main) == 2


def test_a_value_before_anyone_waits_is_kept_from_anywhere():
    def main():
        w = H.Waiter()
        w.switch("kept")  # nobody parked: nothing is resumed, the value is kept
        return w.get()

    assert H.run(main) == "kept"


def test_greenlets_are_pooled_not_created_per_spawn():
    def main():
        hub = H.get_hub()
        for _ in range(50):
            H.spawn(lambda: None).join()
        return hub.created

    created = H.run(main)
    assert created <= 3  # main + a reused worker (+ one spare), not 50


def test_many_parked_threads_all_resume():
    def main():
        threads = [H.spawn(H.sleep, 0.02) for _ in range(500)]
        t0 = time.monotonic()
        for t in threads:
            t.join()
        return time.monotonic() - t0

    assert H.run(main) < 2.0  # they sleep concurrently, not one after another
