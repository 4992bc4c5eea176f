"""Whether a process of this host still runs (for pid-tagged temporaries and claims)."""

from __future__ import annotations

import os

__all__ = ["pid_running"]


def pid_running(pid: int) -> bool:
    """Return True when process ``pid`` exists on this host (this one included).

    A process owned by another user counts as running (``EPERM``): only a
    process that is certainly gone is reported as not running.
    """
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
