# C types of runtime/hashtable.py (Cython's pure-Python mode: the .py holds the code).

from protocol.far.bodies cimport decode_item, encode_name
from runtime.farclient cimport FarClient, FarReply
from runtime.heap cimport Heap, Segment
from runtime.pointer cimport local_word, offset_of, segment_of
from runtime.slotindex cimport SlotIndex, home_of
from runtime.structures cimport Remoteable


cpdef unsigned long long tag_of(long long h)
cdef _Fetch _new_fetch(RemHashTable table, object key)

cdef extern from "Python.h":
    Py_hash_t _Py_HashBytes(const void* src, Py_ssize_t n)

cdef extern from *:
    void __builtin_prefetch(const void* addr)


cdef class Item:
    cdef public object key
    cdef public object flags
    cdef public object exptime
    cdef public object cas
    cdef public object value
    cdef public object atime
    cdef public object state
    cdef public object slot
    cdef public object seg
    cdef public object off


cdef class RemHashTable(Remoteable):
    cdef public SlotIndex index
    cdef public Py_ssize_t _free_head
    cdef public Py_ssize_t free_count
    cdef public Py_ssize_t resident_far
    cdef public object filter
    cdef public object nt_threshold
    cdef public object clock
    cdef public dict _fetches
    cdef public dict stats
    cdef public Py_ssize_t _generation
    cdef public set _unsure
    cdef public bint _clear_pending

    cdef Segment _seg(self, unsigned long long w)
    cpdef _fetched(self, object key, _Fetch fetch, object status, object body)
    cpdef bint fetch_many(self, list keys, object on_done, object arg=*) except -1
    cpdef admit_landed(self, dict fetched)
    cdef bint _admit_landed_one(self, object key, object found, unsigned int now) except -1
    cdef long long _hash_slot(self, Py_ssize_t slot) except? -1
    cpdef Py_ssize_t _new_slot(self) except -1
    cpdef void _free_slot(self, Py_ssize_t slot)
    cpdef void _drop_slot(self, Py_ssize_t slot)
    cpdef Py_ssize_t _find(self, object key, long long h) except -2
    cpdef Py_ssize_t find_live(self, object key, unsigned int now) except -2
    cpdef warm_keys(self, list keys, Py_ssize_t start, Py_ssize_t stop)
    cpdef list values_of(self, list keys, unsigned int now)
    cpdef unsigned int flags_of(self, Py_ssize_t slot)
    cpdef unsigned long long cas_of(self, Py_ssize_t slot)
    cpdef Py_ssize_t value_len(self, Py_ssize_t slot) except -1
    cpdef void copy_value(self, Py_ssize_t slot, bytearray out)
    cdef char* copy_value_to(self, Py_ssize_t slot, char* p)
    cdef char* item_fields(
        self, Py_ssize_t slot, unsigned int* flags, unsigned long long* cas, long* nvalue
    )
    cdef unsigned int _now(self) except? 0
    cpdef Py_ssize_t _store(
        self,
        object key,
        object value,
        unsigned int flags,
        unsigned int exptime,
        unsigned long long cas,
        unsigned long long wflags,
        bint forget_far=*,
        bint nowait=*,
    ) except -2
    cpdef set(
        self,
        object key,
        object value,
        unsigned int flags=*,
        unsigned int exptime=*,
        unsigned long long cas=*,
    )
    cpdef void _remove_local(self, Py_ssize_t slot)
    cpdef unsigned int _exptime_of(self, Py_ssize_t slot)
    cpdef bint evac_dead(self, Py_ssize_t slot) except -1
    cpdef evac_far(self, Py_ssize_t slot)
    cpdef evac_forget(self, Py_ssize_t slot)
    cpdef evac_reclaim(self, Py_ssize_t slot)


cdef class _Index(SlotIndex):
    cdef RemHashTable table

    cdef long long hash_of(self, Py_ssize_t slot) except? -1


cdef class _Landing:
    cpdef landed(self, object key, object result, object exc)


cdef class _Fetch(FarReply):
    cdef public RemHashTable table
    cdef public object key
    cdef public list waiters
    cdef public bint stale
    cdef public object on_done
    cdef public object arg
    cdef public bint sending

    cpdef join(self, _Landing waiter)


cdef class _Batch(_Landing):
    cdef public dict results
    cdef public Py_ssize_t left
    cdef public object error
    cdef public object on_done
    cdef public object arg
    cdef public bint sending
    cdef public object hub


cdef class _Prefetched(_Landing):
    cdef public RemHashTable table
