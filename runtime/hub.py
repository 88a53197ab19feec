# cython: annotation_typing=False
"""Green threads on a uvloop event loop: the hub, Waiter, spawn, sleep.

The loop runs in the main greenlet, the *hub*. Loop callbacks run in the hub;
green threads are pooled greenlets whose parent is the hub. A green thread
*parks* by switching to the hub through a Waiter; only the hub resumes it, by
calling `Waiter.switch`/`throw` from a loop callback (gevent's pattern):

    hub (loop callback) ---g.switch()---> green thread runs ...
         ^                                 |  waiter.get(): parks
         +---------- returns -------------+
    later, a loop callback: waiter.switch(v) -> green thread resumes with v

Rules (DESIGN §2):
- The hub can never park: `Waiter.get()` from the hub raises WouldPark
  before anything happens; callers that would park check first
  (`check_can_park()`) so the request can be re-run in a pooled greenlet.
- Greenlets are long-lived and pooled: creating one costs ~10 us here, a
  switch pair ~2 us, so `spawn` reuses idle greenlets and never creates one
  per request unless the pool is empty.
- A Waiter is used for one wait only (WaiterReused otherwise); every wait
  sits in try/finally so cancelled timers never fire into a finished wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import greenlet

from runtime.errors import NotInHub, WaiterReused, WouldPark

__all__ = [
    "GreenThread",
    "Hub",
    "Waiter",
    "check_can_park",
    "get_hub",
    "in_hub",
    "run",
    "sleep",
    "spawn",
    "yield_now",
]

log = logging.getLogger("runtime.hub")

_hub: Hub | None = None


class Hub:
    """The event loop and the greenlet it runs in; one per process."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, pool_max: int = 1024):
        if loop is None:
            import uvloop

            loop = uvloop.new_event_loop()
        self.loop = loop
        self.greenlet = greenlet.getcurrent()  # the hub: where the loop runs
        self.pool: list[greenlet.greenlet] = []  # idle worker greenlets
        self.pool_max = pool_max  # idle greenlets kept; extra ones exit
        self.created = 0  # worker greenlets ever created (stats)

    def in_hub(self) -> bool:
        """True when the caller runs in the hub greenlet."""
        return greenlet.getcurrent() is self.greenlet

    def run_in_pool(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn(*args) now in a pooled greenlet until it parks or ends. Hub only."""
        if greenlet.getcurrent() is not self.greenlet:
            raise NotInHub("run_in_pool() resumes a greenlet: hub only")
        g = self.pool.pop() if self.pool else self._new_worker()
        g.switch(fn, args)

    def schedule(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn(*args) in the hub soon (a loop callback); callable from anywhere."""
        self.loop.call_soon(fn, *args)

    def _new_worker(self) -> greenlet.greenlet:
        self.created += 1
        return greenlet.greenlet(self._worker, parent=self.greenlet)

    def _worker(self, fn: Callable[..., Any], args: tuple) -> None:
        hub = self.greenlet
        me = greenlet.getcurrent()
        while True:
            try:
                fn(*args)
            except BaseException:  # a green thread's error must not kill the hub
                log.exception("uncaught exception in green thread %r", fn)
            fn = args = None
            if len(self.pool) >= self.pool_max:
                return
            self.pool.append(me)
            fn, args = hub.switch()


def get_hub() -> Hub:
    """The process's hub (created on first use, in the calling greenlet)."""
    global _hub
    if _hub is None:
        _hub = Hub()
    return _hub


def set_hub(hub: Hub | None) -> None:
    """Install `hub` as the process's hub (tests and run() use this)."""
    global _hub
    _hub = hub


def in_hub() -> bool:
    """True when the caller runs in the hub (loop callbacks do)."""
    return get_hub().in_hub()


def check_can_park() -> None:
    """Raise WouldPark if the caller is the hub; call before any side effect."""
    if _hub is None or greenlet.getcurrent() is _hub.greenlet:
        raise WouldPark("this call may park; run it in a pooled greenlet")


_UNSET = object()


class Waiter:
    """One park/resume rendezvous between a green thread and the hub.

    The green thread calls get() (parks); a loop callback calls switch(value)
    or throw(exc). A value that arrives before get() is kept and returned at
    once. One use only.
    """

    __slots__ = ("_hub", "_greenlet", "_value", "_exc", "_used")

    def __init__(self, hub: Hub | None = None):
        self._hub = hub or get_hub()
        self._greenlet: greenlet.greenlet | None = None  # the parked green thread
        self._value: Any = _UNSET  # a result that came before get()
        self._exc: BaseException | None = None  # an error that came before get()
        self._used = False

    @property
    def ready(self) -> bool:
        """True once switch() or throw() has been called."""
        return self._value is not _UNSET or self._exc is not None

    def switch(self, value: Any = None) -> None:
        """Resume the waiting green thread with `value`. Hub only.

        Before anyone waits, the value is just kept (from anywhere): nothing
        is resumed then.
        """
        g = self._greenlet
        if g is None:
            if not self.ready:
                self._value = value
            return
        if greenlet.getcurrent() is not self._hub.greenlet:
            raise NotInHub("Waiter.switch() must be called from the hub")
        self._greenlet = None
        g.switch(value)

    def throw(self, exc: BaseException) -> None:
        """Resume the waiting green thread by raising `exc` in it. Hub only.

        Before anyone waits, the error is just kept (from anywhere).
        """
        g = self._greenlet
        if g is None:
            if not self.ready:
                self._exc = exc
            return
        if greenlet.getcurrent() is not self._hub.greenlet:
            raise NotInHub("Waiter.throw() must be called from the hub")
        self._greenlet = None
        g.throw(exc)

    def get(self, timeout: float | None = None, timeout_exc: BaseException | None = None) -> Any:
        """Park until switch()/throw(); return the value or raise. May park."""
        if self._used:
            raise WaiterReused("a Waiter is good for one wait")
        hub = self._hub
        cur = greenlet.getcurrent()
        if cur is hub.greenlet:
            raise WouldPark("Waiter.get() from the hub")
        self._used = True
        if self._exc is not None:
            raise self._exc
        if self._value is not _UNSET:
            return self._value
        timer = None
        if timeout is not None:
            exc = timeout_exc if timeout_exc is not None else TimeoutError("timed out")
            timer = hub.loop.call_later(timeout, self.throw, exc)
        self._greenlet = cur
        try:
            return hub.greenlet.switch()
        finally:
            self._greenlet = None
            if timer is not None:
                timer.cancel()


def sleep(seconds: float = 0) -> None:
    """Park the calling green thread for `seconds`. May park."""
    hub = get_hub()
    w = Waiter(hub)
    handle = hub.loop.call_later(seconds, w.switch, None) if seconds > 0 else None
    if handle is None:
        hub.loop.call_soon(w.switch, None)
    try:
        w.get()
    finally:
        if handle is not None:
            handle.cancel()


def yield_now() -> None:
    """Let the hub run pending callbacks, then continue. May park."""
    sleep(0)


class GreenThread:
    """A spawned green thread's handle: join() for its result or error."""

    __slots__ = ("_done", "_result", "_exc", "_waiters", "name")

    def __init__(self, name: str = ""):
        self.name = name
        self._done = False
        self._result: Any = None
        self._exc: BaseException | None = None
        self._waiters: list[Waiter] = []

    @property
    def done(self) -> bool:
        """True once the green thread has returned or raised."""
        return self._done

    def _finish(self, result: Any, exc: BaseException | None) -> None:
        self._done = True
        self._result = result
        self._exc = exc
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            get_hub().schedule(w.switch, None)

    def join(self, timeout: float | None = None) -> Any:
        """Park until the green thread ends; return its result or raise its error."""
        if not self._done:
            w = Waiter()
            self._waiters.append(w)
            try:
                w.get(timeout)
            finally:
                if w in self._waiters:
                    self._waiters.remove(w)
        if self._exc is not None:
            raise self._exc
        return self._result


def _run_thread(gt: GreenThread, fn: Callable[..., Any], args: tuple) -> None:
    try:
        result = fn(*args)
    except BaseException as exc:  # delivered to join()
        gt._finish(None, exc)
        return
    gt._finish(result, None)


def spawn(fn: Callable[..., Any], *args: Any) -> GreenThread:
    """Start fn(*args) in a pooled green thread; from the hub it runs at once."""
    hub = get_hub()
    gt = GreenThread(getattr(fn, "__name__", ""))
    if hub.in_hub():
        hub.run_in_pool(_run_thread, gt, fn, args)
    else:
        hub.schedule(hub.run_in_pool, _run_thread, gt, fn, args)
    return gt


def run(main: Callable[..., Any], *args: Any, loop: asyncio.AbstractEventLoop | None = None) -> Any:
    """Run main(*args) as a green thread on a fresh hub until it returns; its result."""
    hub = Hub(loop)
    previous = _hub
    set_hub(hub)
    asyncio.set_event_loop(hub.loop)
    try:
        box: dict[str, Any] = {}

        def start() -> None:
            gt = box["thread"] = spawn(main, *args)
            if gt.done:
                hub.loop.stop()
            else:
                gt._waiters.append(_StopLoop(hub))

        hub.loop.call_soon(start)
        hub.loop.run_forever()
        gt: GreenThread = box["thread"]
        if gt._exc is not None:
            raise gt._exc
        return gt._result
    finally:
        set_hub(previous)
        asyncio.set_event_loop(None)
        hub.loop.close()


class _StopLoop:
    """A pseudo-waiter that stops the loop when the main green thread ends."""

    def __init__(self, hub: Hub):
        self._hub = hub

    def switch(self, value: Any = None) -> None:
        self._hub.loop.stop()
