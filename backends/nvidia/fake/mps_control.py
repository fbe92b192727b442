"""Stand-in for ``nvidia-cuda-mps-control -f`` on machines without a GPU (``executor: record``).

A real process with the daemon's environment (``CUDA_MPS_PIPE_DIRECTORY``,
``CUDA_MPS_LOG_DIRECTORY``, ``CUDA_VISIBLE_DEVICES``): it writes ``control.log`` in the log
directory and runs until its ``quit`` command (the recording executor creates
``<pipe>/quit``), SIGTERM or SIGKILL. Tests kill it to play a crashed daemon.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def main() -> int:
    pipe = Path(os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps"))
    log = Path(os.environ.get("CUDA_MPS_LOG_DIRECTORY", "/var/log/nvidia-mps"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        log.mkdir(parents=True, exist_ok=True)
        with open(log / "control.log", "a") as f:
            f.write(f"fake MPS control daemon {os.getpid()} started for {os.environ.get('CUDA_VISIBLE_DEVICES', '')}\n")
    except OSError:
        pass
    while not (pipe / "quit").exists():
        time.sleep(0.1)
    try:
        (pipe / "quit").unlink()
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
