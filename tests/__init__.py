"""The test suite (and ``python -m tests.golden.regenerate``, which imports this package first).

OpenMP threads that wait for work sleep instead of spinning: on a shared, loaded CPU, torch's spinning
threads made the tiny models ~30x slower (a tiny SD U-Net score: 20-25 s instead of 0.7 s at load ~10 on
2 cores), with bit-identical numbers. Set before torch is first imported; an explicit value is kept.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
