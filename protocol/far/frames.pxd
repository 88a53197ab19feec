# C types of protocol/far/frames.py (Cython's pure-Python mode: the .py holds the code).

cdef unsigned int _u32(unsigned char* p)
cpdef bytes encode_frame(object req_id, object op, object ds, object body=*, object status=*)


cdef class FrameReader:
    cdef public Py_ssize_t max_frame
    cdef public bint replies
    cdef bytes _buf
    cdef Py_ssize_t _pos
    cdef list _parts
    cdef Py_ssize_t _parts_len
    cdef Py_ssize_t _need
    cdef object _error
    cdef public unsigned int req_id
    cdef public int op
    cdef public int status
    cdef public unsigned int ds
    cdef public bytes body

    cpdef bint _advance(self) except -1
    cdef _stash(self, bytes buf, Py_ssize_t pos, Py_ssize_t need)
