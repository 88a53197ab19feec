# C types of runtime/hugepages.py (Cython's pure-Python mode: the .py holds the code).

cdef bint _advise_range(size_t address, size_t size)
cpdef bint advise_array(object a)
cpdef object zeroed_array(str typecode, Py_ssize_t n)
