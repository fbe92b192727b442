"""Test-only kill switch for the kill -9 loop (tests/e2e/kill_loop.py): loaded into the daemon
through PYTHONPATH. With ``DRA_KILL_ARM=<file>`` set, :func:`dra_framework.killpoints.killpoint`
reads ``<generation> <n>`` from that file at every kill point and SIGKILLs the process at the
n-th point reached since the generation changed (n = 0: only count). Every point reached is
appended to ``<file>.log`` as ``<generation>\\t<count>\\t<name>`` before the kill, so the loop
knows where the process died. One daemon process can so be armed again and again without a
restart (its start-up is the expensive part of a kill cycle)."""
import os

ARM = os.environ.get("DRA_KILL_ARM")
if ARM:
    import signal

    import dra_framework.killpoints as _kp

    _state = {"gen": None, "count": 0}

    def killpoint(name: str) -> None:
        try:
            with open(ARM) as f:
                gen, n = f.read().split()
        except (OSError, ValueError):
            return
        if gen != _state["gen"]:
            _state.update(gen=gen, count=0)
        _state["count"] += 1
        fd = os.open(ARM + ".log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{gen}\t{_state['count']}\t{' '.join(name.split())}\n".encode())
        finally:
            os.close(fd)
        if int(n) == _state["count"]:
            os.kill(os.getpid(), signal.SIGKILL)

    _kp.killpoint = killpoint  # before the engine imports it (``from ..killpoints import killpoint``)
