# C types of protocol/memcache/requests.py (Cython's pure-Python mode: the .py holds the code).

cdef class Request:
    cdef public object cmd


cdef class Get(Request):
    cdef public list keys
    cdef public bint cas
    cdef public object exptime


cdef class Store(Request):
    cdef public object key
    cdef public object flags
    cdef public object exptime
    cdef public object value
    cdef public object cas_unique
    cdef public bint noreply
