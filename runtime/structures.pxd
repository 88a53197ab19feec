# C types of runtime/structures.py (Cython's pure-Python mode: the .py holds the code).

from cpython cimport array

from runtime.farclient cimport FarReply
from runtime.heap cimport Heap, Segment
from runtime.scope cimport DerefScope


cdef class Remoteable:
    cdef public object manager
    cdef public Heap heap
    cdef public array.array words
    cdef public int owner_id
    cdef public object far_ds
    cdef public dict _inflight
    cdef public dict _copying

    cpdef unsigned long long _w(self, Py_ssize_t slot)
    cpdef void _set_w(self, Py_ssize_t slot, unsigned long long w)
    cpdef bint evac_dead(self, Py_ssize_t slot) except -1
    cpdef evac_far(self, Py_ssize_t slot)
    cpdef evac_forget(self, Py_ssize_t slot)
    cpdef evac_reclaim(self, Py_ssize_t slot)
    cpdef _slot_fetched(self, Py_ssize_t slot, object status, object body)


cdef class _SlotFetch(FarReply):
    cdef Remoteable structure
    cdef Py_ssize_t slot


cdef class RemArray(Remoteable):
    cdef public Py_ssize_t elem_size
    cdef public Py_ssize_t length
    cdef public bytes _zero
    cdef public object prefetcher
    cdef public dict _segments


cdef class _BoxSpace(Remoteable):
    cdef public list free_slots
