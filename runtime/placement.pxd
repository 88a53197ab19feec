# C types of runtime/placement.py (Cython's pure-Python mode: the .py holds the code).

cdef unsigned long long _K1
cdef unsigned long long _K2

cdef unsigned long long _mix(unsigned long long x)
