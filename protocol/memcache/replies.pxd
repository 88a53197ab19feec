# C types of protocol/memcache/replies.py (Cython's pure-Python mode: the .py holds the code).

cdef Py_ssize_t HEADER_ROOM

cpdef void append_value_header(
    bytearray buf,
    bytes key,
    unsigned long long flags,
    unsigned long long nbytes,
    unsigned long long cas,
    bint with_cas,
)
cdef char* write_value_header(
    char* p,
    bytes key,
    unsigned long long flags,
    unsigned long long nbytes,
    unsigned long long cas,
    bint with_cas,
)
cdef char* _put_uint(char* p, unsigned long long v)
