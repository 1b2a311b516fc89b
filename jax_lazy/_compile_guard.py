"""Run a compiler so that it dies with the process that started it (Linux).

Usage: ``python -S _compile_guard.py PARENT_PID OUTPUT -- COMMAND...``

:mod:`jax_lazy.compilers` runs the C++ compiler through this small guard process. The
guard asks the kernel for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``),
starts COMMAND as the leader of a new process group, waits for it and exits with its
exit code (the compiler's output goes to the guard's stdout and stderr, i.e. to the
parent). When the parent dies (even by SIGKILL) or stops the compile (SIGTERM, SIGINT,
SIGHUP), the guard kills the whole group -- the compiler driver and what it started
(``cc1plus``, ``as``, ``ld``) -- with SIGTERM, then SIGKILL after GRACE_S seconds, deletes
OUTPUT (the partial library) and exits.

Why a separate process: ``PR_SET_PDEATHSIG`` set in the compiler itself would kill the
driver (``g++``) only; ``cc1plus``, which does the work, would run on to the end. It uses
the standard library only (``-S``: no site-packages) and starts in a few milliseconds.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
GRACE_S = 1.0  # between SIGTERM (g++ deletes its temporary files) and SIGKILL
_STOP = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

_child: subprocess.Popen | None = None
_output = ""


def _stop(signum, frame=None):
    """Kill the compiler's process group, delete the partial output, exit.

    A signal handler: it runs while the main thread waits for the compiler, inside
    ``Popen.wait`` (whose lock is held), so it waits with ``os.waitid`` / ``os.waitpid``.
    The leader is reaped last: until then its pid keeps naming the group.
    """
    if _child is not None:
        pid = _child.pid
        _killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline and not _exited(pid):
            time.sleep(0.01)
        _killpg(pid, signal.SIGKILL)  # what is left of the group (cc1plus, as, ld)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    try:
        os.unlink(_output)
    except OSError:
        pass
    os._exit(128 + signum)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _exited(pid: int) -> bool:
    """Whether child ``pid`` has exited (without reaping it)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def main(argv: list[str]) -> int:
    global _child, _output
    parent, _output, sep, *command = argv[1:]
    assert sep == "--" and command, "usage: _compile_guard.py PARENT_PID OUTPUT -- COMMAND..."
    for sig in _STOP:
        signal.signal(sig, _stop)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        print(f"jax_lazy compile guard: prctl failed (errno {ctypes.get_errno()})", file=sys.stderr)
    if os.getppid() != int(parent):  # the parent died before the prctl: nobody waits for us
        _stop(signal.SIGTERM)
    # Signals wait until _child is set (then _stop finds the group to kill); the compiler
    # must not inherit the blocked mask.
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP)
    try:
        _child = subprocess.Popen(command, start_new_session=True,
                                  preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP))
    except OSError as exc:
        print(f"cannot run {command[0]!r}: {exc}", file=sys.stderr)
        return 127
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP)
    return _child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
