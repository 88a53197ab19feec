# C types of protocol/memcache/parser.py (Cython's pure-Python mode: the .py holds the code).

from protocol.memcache.requests cimport Get, Request, Store

cdef bint _is_get(bytes buf, Py_ssize_t pos) except -1
cdef list _get_keys(bytes buf, Py_ssize_t i, Py_ssize_t end)
cdef Get _get(list keys)
cdef bint _is_set(bytes buf, Py_ssize_t pos) except -1
cdef bint _is_noreply(bytes buf, Py_ssize_t i) except -1

cdef class Parser:
    cdef public Py_ssize_t item_size_max
    cdef public Py_ssize_t max_line
    cdef public Py_ssize_t max_read
    cdef public Py_ssize_t max_get_line
    cdef public object _buf
    cdef public Py_ssize_t _pos
    cdef public Py_ssize_t _scan
    cdef public object _pending
    cdef public Py_ssize_t _need
    cdef public Py_ssize_t _swallow
    cdef public bint _started
    cdef public bint _closed
    cdef public bint _slow
    cdef public object _parts
    cdef public Py_ssize_t _parts_len
    cdef public bint _nul

    cpdef feed(self, object data)
    cpdef object next_event(self)
    cdef object _fast_set(self, bytes buf, Py_ssize_t pos, Py_ssize_t end)
