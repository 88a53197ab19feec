# C types of runtime/evacuator.py (Cython's pure-Python mode: the .py holds the code).

from runtime.heap cimport Heap, Segment
from runtime.pointer cimport local_word
from runtime.structures cimport Remoteable

cdef bint _dead(object owner, Py_ssize_t slot) except -1
cdef _reclaim(object owner, Py_ssize_t slot)
cdef _far(object owner, Py_ssize_t slot)
cdef _forget(object owner, Py_ssize_t slot)
cdef unsigned long long _word(object owner, Py_ssize_t slot) except? 0xFFFFFFFFFFFFFFFF
cdef void _set_word(object owner, Py_ssize_t slot, unsigned long long w) except *


cdef class Evacuator:
    cdef public object manager
    cdef public Heap heap
    cdef public double slice_seconds
    cdef public bint running
    cdef public object _idle
    cdef public object _thread
    cdef public Py_ssize_t rounds
    cdef public Py_ssize_t survivors
    cdef public Py_ssize_t clean_drops
    cdef public Py_ssize_t writebacks
    cdef public Py_ssize_t writeback_bytes
    cdef public Py_ssize_t forgotten
    cdef public Py_ssize_t reclaimed
    cdef public Py_ssize_t write_failures
    cdef public double busy_seconds

    cpdef bint _evacuate_objects(self, Segment seg) except -1
    cpdef bint _survive(
        self,
        Segment seg,
        Py_ssize_t off,
        Py_ssize_t size,
        Py_ssize_t slot,
        int owner_id,
        object owner,
        unsigned long long w,
        unsigned long long hot,
    ) except -1
    cpdef bint _has_live(self, Segment seg) except -1
