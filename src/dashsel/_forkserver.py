"""Imported first in the process executor's forkserver (its preload list), nowhere else.

The forkserver imports what the workers need (scikit-learn, torch) and lives until the main
process exits; then it would tear its interpreter down module by module (about 0.3 s with
scikit-learn loaded), while it still holds the run's stdout and stderr: a caller reading the
output of ``dashsel run`` through a pipe (a script, ``| tee``, a test) waits for that too. The
handler registered here, first so that it runs after every other exit handler, flushes the
output and ends the server at once. The workers forked from it do not run it (they end with
``os._exit``, and it checks the process id).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys

_SERVER_PID = os.getpid()


def _exit_now() -> None:
    if os.getpid() != _SERVER_PID:
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


atexit.register(_exit_now)
