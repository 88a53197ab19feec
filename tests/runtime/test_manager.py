"""runtime/manager.py: allocation that parks until the evacuator frees room.

Spec (DESIGN §3, §5): at the 3% park mark an allocation parks until space
returns; every parked allocation that fits once segments are freed resumes
(one freed segment holds many small objects, so one wake-up per freed
segment is not enough: a woken allocation passes the wake-up on).
"""

from __future__ import annotations

import time
from array import array

from runtime import hub as H
from runtime.errors import OutOfMemory
from runtime.manager import Manager
from runtime.pointer import DIRTY, local_word

SEG = 4096


class Forgetful:
    """A minimal evacuation handler whose cold objects may simply be dropped."""

    may_forget = True

    def __init__(self, mgr: Manager, slots: int):
        self.words = array("Q", bytes(8 * slots))
        self.owner = mgr.register(self)

    def evac_dead(self, slot: int) -> bool:
        return False

    def evac_writeback(self, slot, data):
        return None

    def evac_written(self, slot, marked):
        pass

    def evac_far(self, slot):
        self.words[slot] = 0

    def evac_forget(self, slot):
        self.words[slot] = 0

    def evac_reclaim(self, slot):
        self.words[slot] = 0


def test_every_parked_allocation_resumes_when_room_returns():
    def main():
        mgr = Manager(32 * SEG, None, segment_size=SEG, alloc_timeout=3)
        owner = Forgetful(mgr, 10_000)
        slot = 0
        while (loc := mgr.try_alloc(100, owner.owner, slot)) is not None:
            owner.words[slot] = local_word(loc[0], loc[1], DIRTY, 0)  # cold: droppable
            slot += 1
        errors = []

        def one(s):
            try:
                seg, off = mgr.alloc(100, owner.owner, s)
                owner.words[s] = local_word(seg, off, DIRTY, 0)
            except OutOfMemory as exc:
                errors.append(exc)

        t0 = time.perf_counter()
        threads = [H.spawn(one, slot + k) for k in range(40)]  # 40 x 112 B: about one segment
        H.sleep(0.01)  # every one of them is parked now, the evacuator not started yet
        assert mgr.counters["alloc_waits"] == 40
        mgr.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        mgr.close()
        return errors, elapsed

    errors, elapsed = H.run(main)
    assert errors == []
    assert elapsed < 1.0
