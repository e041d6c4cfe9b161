"""`python -m tests.busy COMMAND...` runs COMMAND with every core busy, as on a shared CI runner or a CPU-limited pod:
two CPU-bound processes per core beside it, ended by pid when it ends (and by the kernel should this helper die)."""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1
HOGS_PER_CORE = 2


def die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def main(command: list[str]) -> int:
    if not command:
        print("usage: python -m tests.busy COMMAND...", file=sys.stderr)
        return 2
    cores = len(os.sched_getaffinity(0))
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=die_with_parent)
            for _ in range(HOGS_PER_CORE * cores)]
    print(f"tests.busy: {len(hogs)} CPU-bound processes on {cores} core(s) beside: {' '.join(command)}", flush=True)
    try:
        return subprocess.run(command).returncode
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
