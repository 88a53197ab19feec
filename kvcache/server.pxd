# C types of kvcache/server.py (Cython's pure-Python mode: the .py holds the code).

from kvcache.dispatcher cimport Dispatcher
from protocol.memcache.parser cimport Parser
from runtime.scope cimport DerefScope


cdef class Listener:
    cdef public object dispatcher
    cdef public object hub
    cdef public Py_ssize_t max_connections
    cdef public Py_ssize_t item_size_max
    cdef public set connections
    cdef public Py_ssize_t total_connections
    cdef public Py_ssize_t rejected_connections
    cdef public Py_ssize_t bytes_read
    cdef public Py_ssize_t bytes_written
    cdef public Py_ssize_t takeovers
    cdef public Py_ssize_t far_gets
    cdef public Py_ssize_t binary_rejected
    cdef public object server


cdef class Connection:
    cdef public Listener listener
    cdef public Dispatcher dispatcher
    cdef public dict handlers
    cdef public Parser parser
    cdef public object transport
    cdef public object _write
    cdef public object _is_closing
    cdef public bint owned
    cdef public bint closing
    cdef public object ahead
    cdef public bint read_paused
    cdef public bint write_paused
    cdef public Py_ssize_t read_limit
    cdef public list _out
    cdef public DerefScope _scope
    cdef object _on_far

    cpdef _serve(self, bint in_hub, object first=*)
    cpdef _finish(self, list out, DerefScope scope)
    cpdef _went_far(self, list out, DerefScope scope)
    cpdef _prefetch_ahead(self)
