# C types of runtime/pointer.py (Cython's pure-Python mode: the .py holds the code).

cpdef unsigned long long local_word(
    unsigned long long segment,
    unsigned long long offset,
    unsigned long long flags=*,
    unsigned long long hot=*,
)
cpdef unsigned long long far_word(unsigned long long far_id, unsigned long long hot=*)
cpdef unsigned long long segment_of(unsigned long long word)
cpdef unsigned long long offset_of(unsigned long long word)
cpdef unsigned long long hotness(unsigned long long word)
