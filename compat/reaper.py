"""What a tool (`ab`, `parity`) leaves behind if it is killed: a helper process, told over a pipe of each session it
starts and each folder it makes, ends those sessions and removes those folders once the pipe closes, however the tool
ended (SIGKILL included). A tool that stops cleanly has already done so, and tells it to forget them."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

GRACE = 10.0  # seconds a session's leader gets to stop its own children after SIGTERM, before SIGKILL to the session


class Reaper:
    def __init__(self) -> None:
        read, write = os.pipe()
        # a session of its own: the terminal's Ctrl-C, which the tool handles itself, must not end the helper first
        self.process = subprocess.Popen([sys.executable, "-m", "drum_compat.compat.reaper"], stdin=read,
                                        start_new_session=True)
        os.close(read)
        self._pipe = os.fdopen(write, "w", buffering=1)  # never inherited: Popen closes it in every child

    def _say(self, *words: object) -> None:
        self._pipe.write(" ".join(map(str, words)) + "\n")

    def keep_session(self, leader: int) -> None:
        self._say("session", leader)

    def forget_session(self, leader: int) -> None:
        self._say("forget-session", leader)

    def keep_folder(self, path: str) -> None:
        self._say("folder", path)

    def forget_folder(self, path: str) -> None:
        self._say("forget-folder", path)

    def close(self) -> None:
        """The tool's own clean end: what is still kept is ended now, and the helper exits."""
        self._pipe.close()
        self.process.wait()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_sessions(leaders: set[int]) -> None:
    """SIGTERM to each leader (a server's master stops its workers itself), then SIGKILL to what is left of each
    session after the grace."""
    for leader in leaders:
        try:
            os.kill(leader, signal.SIGTERM)
        except ProcessLookupError:
            pass
    ends = time.monotonic() + GRACE
    while any(map(alive, leaders)) and time.monotonic() < ends:
        time.sleep(0.1)
    for leader in leaders:
        try:
            os.killpg(leader, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main() -> None:
    sessions: set[int] = set()
    folders: set[str] = set()
    for line in sys.stdin:  # until the tool's end closes the pipe
        kind, _, value = line.rstrip("\n").partition(" ")
        if kind == "session":
            sessions.add(int(value))
        elif kind == "forget-session":
            sessions.discard(int(value))
        elif kind == "folder":
            folders.add(value)
        elif kind == "forget-folder":
            folders.discard(value)
    end_sessions(sessions)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    main()
