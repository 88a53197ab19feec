# C types of runtime/farclient.py (Cython's pure-Python mode: the .py holds the code).

from protocol.far.frames cimport FrameReader, encode_frame


cdef double _monotonic()


cdef class FarReply:
    cpdef done(self, object status, object body)


cdef class FarClient:
    cdef public object host
    cdef public object port
    cdef public object secret
    cdef public object ssl_context
    cdef public double timeout
    cdef public object hub
    cdef public bint available
    cdef public object node_name
    cdef public list structures
    cdef public object _proto
    cdef public dict _outstanding
    cdef public Py_ssize_t _next_id
    cdef public list _wbuf
    cdef public bint _flush_pending
    cdef object _call_soon
    cdef object _flush_cb
    cdef public bint closed
    cdef public bint closing
    cdef public double _backoff
    cdef public list _ready_waiters
    cdef public object _connecting
    cdef public object _kick
    cdef public object _timer
    cdef public object _probe
    cdef public bint stalled
    cdef public Py_ssize_t _timeouts_in_row
    cdef public Py_ssize_t _replies
    cdef public object _down_since
    cdef public double _warned_at
    cdef public Py_ssize_t _attempts
    cdef public bint connected_once
    cdef public bint clear_on_return
    cdef public Py_ssize_t requests
    cdef public Py_ssize_t timeouts
    cdef public Py_ssize_t failures
    cdef public Py_ssize_t reconnects
    cdef public Py_ssize_t resets
    cdef public Py_ssize_t clears
    cdef public Py_ssize_t stalls
    cdef public double downtime
    cdef public Py_ssize_t bytes_sent
    cdef public Py_ssize_t bytes_received

    cpdef submit(self, object op, object ds, object body, object callback)
    cpdef submit_named(self, object op, object ds, object name, object body, object callback)
    cpdef _send(self, object op, object ds, object body, object callback)
    cpdef _flush(self)
    cpdef _deliver(self, object req_id, object status, object body)


cdef class _Protocol:
    cdef public FarClient client
    cdef public FrameReader reader
    cdef public object transport
