# C types of runtime/scope.py (Cython's pure-Python mode: the .py holds the code).

from runtime.heap cimport Segment


cdef class DerefScope:
    cdef public list _pins
