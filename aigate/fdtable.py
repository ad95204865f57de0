"""The process's table of open files, grown once at start-up.

Linux doubles a process's table of file descriptors when a new one does not fit (at 256,
512, 1,024, ...). In a process with several threads the old table is freed only after an
RCU grace period, and the call that opened the descriptor (an ``accept``, a ``socket``)
waits for it: 6-19 ms on an idle two-core machine, 30-75 ms under load. Meanwhile the
event loop, and every stream it serves, waits too. The table never shrinks, so growing it
once, before the server's threads start, removes those pauses.
"""

from __future__ import annotations

import os
import resource

# 65,536 descriptors: ~0.5 MB of kernel memory for the table; enough for tens of
# thousands of open streams (each holds a client and an upstream connection)
MAX_TABLE = 65_536


def raise_limit_and_grow() -> int:
    """Raise the soft limit of open files to the hard limit (at most ``MAX_TABLE``, never
    lowering it), and size the table for that many descriptors. Returns the size reached
    (0 when the system refuses: then the table grows on demand, as it would anyway)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = MAX_TABLE if hard == resource.RLIM_INFINITY else min(hard, MAX_TABLE)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
            soft = ceiling
        except (ValueError, OSError):  # e.g. a platform maximum below the hard limit
            pass
    size = ceiling if soft == resource.RLIM_INFINITY else min(soft, MAX_TABLE)
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
        try:
            os.dup2(fd, size - 1)  # the kernel sizes the table to hold the highest descriptor
            os.close(size - 1)
        finally:
            os.close(fd)
    except OSError:
        return 0
    return size
