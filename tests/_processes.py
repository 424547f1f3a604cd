"""Process helpers shared by the tests that kill and watch child processes."""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie (Linux ``/proc``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())
