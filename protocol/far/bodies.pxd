# C types of protocol/far/bodies.py (Cython's pure-Python mode: the .py holds the code).
# The far read path's codecs are cpdef: runtime/hashtable.py reaches them by C calls.

cpdef tuple decode_item(object body)
cpdef bytes encode_name(object name)
