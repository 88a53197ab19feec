"""Load-test tests reuse the kvcache process helper (tests/kvcache/kvproc.py)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "kvcache"))
