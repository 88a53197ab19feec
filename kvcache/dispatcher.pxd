# C types of kvcache/dispatcher.py (Cython's pure-Python mode: the .py holds the code).

from protocol.memcache.requests cimport Get, Store
from runtime.hashtable cimport RemHashTable
from runtime.scope cimport DerefScope


cpdef long long absolute_exptime(long long raw, long long now) except? -1


cdef class Dispatcher:
    cdef public object table
    cdef public object item_size_max
    cdef public object clock
    cdef public object stats_source
    cdef public object on_shutdown
    cdef public object on_memlimit
    cdef public object on_refresh_certs
    cdef public object verbosity
    cdef public object version_string
    cdef public object settings_source
    cdef public object far_stats
    cdef public object supervision_source
    cdef public unsigned long long _cas
    cdef public object _flush_timer
    cdef public bint detail_on
    cdef public bint lru_crawler
    cdef public dict detail
    cdef public dict counters
    cdef public dict handlers
    cdef public Py_ssize_t fast_hits
    cdef public Py_ssize_t fast_sets

    cpdef get(self, object req, DerefScope scope, list out)
    cpdef bint start_far_get(self, object req, object on_landed) except -1
    cpdef get_landed(self, object req, DerefScope scope, list out, dict fetched, object error)
    cpdef bint _get_resident(self, Get req, list out) except -1
    cdef unsigned int _now(self) except? 0
    cpdef bint _set_fast(self, Store req, list out) except -1
