"""The garbage collector's settings for a long-running server process (the gateway, the
provider simulator)."""

from __future__ import annotations

import gc

# A full collection walks every object the open streams hold (~200 each): 30-55 ms with 250
# relay streams open, long enough to show in their time to first byte. Python's default
# runs one after every 10 middle collections; 100 makes them ten times rarer. Cyclic
# garbage rarely lives long enough to wait for one: the young collections find it first.
THRESHOLDS = (700, 10, 100)


def settle() -> None:
    """Keep everything loaded so far (modules, configuration) out of the collector's
    sweeps for good, and space out full collections. Call once, when start-up is done."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
