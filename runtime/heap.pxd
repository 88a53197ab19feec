# C types of runtime/heap.py (Cython's pure-Python mode: the .py holds the code).

cdef class Segment:
    cdef public object heap
    cdef public Py_ssize_t id
    cdef public object buf  # an arena block (memoryview) or a bytearray, never resized
    cdef unsigned char* data  # buf's bytes
    cdef public object view
    cdef public object rview
    cdef public Py_ssize_t top
    cdef public Py_ssize_t live
    cdef public Py_ssize_t pins
    cdef public Py_ssize_t units
    cdef public int owner
    cdef public bint sealed
    cdef public bint doomed
    cdef public bint busy

    cpdef Py_ssize_t size_at(self, Py_ssize_t offset)
    cpdef Py_ssize_t slot_at(self, Py_ssize_t offset)


cdef class Heap:
    cdef public Py_ssize_t segment_size
    cdef public tuple _marks
    cdef public Py_ssize_t free_units
    cdef public Py_ssize_t units
    cdef public Py_ssize_t budget_bytes
    cdef public Py_ssize_t park_at
    cdef public Py_ssize_t start_at
    cdef public Py_ssize_t stop_at
    cdef public dict segments
    cdef public list table
    cdef public list _spare
    cdef public object _arena
    cdef public Py_ssize_t _next_id
    cdef public list _free_ids
    cdef public object fifo
    cdef public list current
    cdef public list survivor
    cdef public list owners
    cdef public object on_low_memory
    cdef public object on_space
    cdef public Py_ssize_t allocs
    cdef public Py_ssize_t segments_freed
    cdef public Py_ssize_t peak_used_bytes

    cpdef Py_ssize_t alloc_at(self, Py_ssize_t size, int owner, Py_ssize_t slot, bint evacuator=*)
    cdef void _write_header(self, Segment seg, Py_ssize_t off, Py_ssize_t size, Py_ssize_t slot)
    cdef Segment _new_segment(self, Py_ssize_t units, int owner, bint evacuator)
    cdef void _seal_bumps(self)
    cdef void _seal(self, Segment seg)
    cpdef void free(self, Py_ssize_t seg_id, Py_ssize_t offset)
    cpdef void unpin(self, Segment seg)
    cdef void _release(self, Segment seg)
