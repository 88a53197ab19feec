# C types of runtime/cuckoo.py (Cython's pure-Python mode: the .py holds the code).

from cpython cimport array

cdef unsigned long long _hash(object key) except? 0xFFFFFFFFFFFFFFFF
cdef bint _has(unsigned long long word, unsigned long long fp)
cdef int _lane_of(unsigned long long word, unsigned long long fp) except -1


cdef class _Table:
    cdef public long long buckets
    cdef public array.array words
    cdef public long long count

    cpdef long long alt(self, long long i, long long fp)
    cdef unsigned long long _w(self, long long i)
    cpdef long long find(self, long long i1, unsigned long long fp) except? -2
    cdef bint _put(self, long long i, unsigned long long fp) except -1


cdef class CuckooFilter:
    cdef public list tables
    cdef public object _rnd
    cdef public long long dropped
