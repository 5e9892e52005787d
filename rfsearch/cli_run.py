"""How a command of the ``rfsearch`` CLI ends: its exit status, and one line on stderr for
whatever stopped it (a bad input, an unwritable file, a closed pipe, Ctrl-C or SIGTERM),
never a traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable

from .errors import SpecError


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that work in progress is cleaned up as
    after Ctrl-C (a streamed output's partial file is removed; a search resumes)."""

    signum = signal.SIGTERM


@contextlib.contextmanager
def terminate_as_interrupt():
    """While a command runs in the main thread, SIGTERM raises :class:`Terminated`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Terminated()

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def run_command(func: Callable, args) -> int:
    """``func(args)``'s exit status; a failure is one line and status 1 (128 + the signal
    for a closed pipe, Ctrl-C and SIGTERM, as shells report them)."""
    try:
        with terminate_as_interrupt():
            return func(args)
    except KeyboardInterrupt as stop:
        print("rfsearch: interrupted", file=sys.stderr)
        return 128 + getattr(stop, "signum", signal.SIGINT)
    except SpecError as err:
        print(f"rfsearch: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader left (`| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        print(f"rfsearch: {where}{err.strerror or err}", file=sys.stderr)
        return 1
