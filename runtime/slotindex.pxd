# C types of runtime/slotindex.py (Cython's pure-Python mode: the .py holds the code).

from cpython cimport array

cpdef Py_ssize_t home_of(long long h, Py_ssize_t mask) except -1


cdef class SlotIndex:
    cdef public object key_at
    cdef public object hash_at
    cdef public array.array entries
    cdef unsigned int[::1] view
    cdef public Py_ssize_t mask
    cdef public Py_ssize_t count

    cpdef add(self, long long h, Py_ssize_t slot)
    cdef void _place(self, Py_ssize_t i, Py_ssize_t slot)
    cpdef bint remove_slot(self, Py_ssize_t slot, long long h) except -1
    cdef void _resize(self, Py_ssize_t size)
    cdef long long hash_of(self, Py_ssize_t slot) except? -1
