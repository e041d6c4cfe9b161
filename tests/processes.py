"""What the tests start and how long they wait: one readiness deadline from one setting, every program in a session of
its own that ends with the test however the test ends, and ports picked again when another process took them first."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from typing import Callable, Iterator, Sequence

import httpx
import psutil

from drum_compat.compat.running import ADDRESS_IN_USE, PORT_ATTEMPTS, RunningServer, end_session, free_port

# how long anything the tests start may take to be ready: generous, for a machine whose every core is busy
READY_TIMEOUT = float(os.environ.get("DRUM_COMPAT_TEST_READY_TIMEOUT", "180"))


def wait_until(condition: Callable[[], object], what: str, timeout: float = READY_TIMEOUT, every: float = 0.05):
    """`condition()`'s first true value, asked every `every` s until `timeout` s have passed (monotonic clock)."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(every)
    return result


def serve(code_dir, server_type: str, *args: str, **kwargs) -> RunningServer:
    """`drum-compat server`, ready within READY_TIMEOUT; a context manager that stops it and all it started."""
    kwargs.setdefault("timeout", READY_TIMEOUT)
    return RunningServer(code_dir, server_type, *args, **kwargs)


class PortTaken(Exception):
    pass


def in_session(process: psutil.Process, leader: int) -> bool:
    try:
        return os.getsid(process.pid) == leader
    except ProcessLookupError:
        return False


class Program:
    """`command(port)` in a session of its own, its output in a file, until `ready(program)` holds (its value kept
    in `.ready`); used as a context manager, it ends with the whole session. A program that exits saying its port is in use is started
    again on another port, unless the port was the caller's."""

    def __init__(self, command: Callable[[int], Sequence[str] | str], ready: Callable[["Program"], object], *,
                 port: int | None = None, timeout: float = READY_TIMEOUT, **popen) -> None:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.port = port or free_port()
            self.log = tempfile.TemporaryFile(mode="w+")  # not a pipe: an unread pipe blocks a chatty server
            self.process = subprocess.Popen(command(self.port), stdout=self.log, stderr=subprocess.STDOUT, text=True,
                                            start_new_session=True, **popen)
            try:
                self.ready = wait_until(lambda: self._ready(ready), f"{self.process.args} ready", timeout, every=0.1)
                return
            except PortTaken:
                if port or attempt == PORT_ATTEMPTS:
                    raise AssertionError(f"port {self.port} stayed taken:\n{self.output}") from None
            except BaseException:
                self.stop()
                raise

    def _ready(self, ready: Callable[["Program"], object]) -> object:
        if self.process.poll() is not None:
            output = self.output
            self.stop()
            if ADDRESS_IN_USE.lower() in output.lower():
                raise PortTaken()
            raise AssertionError(f"{self.process.args} exited with {self.process.returncode}:\n{output}")
        return ready(self)

    @property
    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self, grace: float = 30) -> int:
        """SIGTERM to the whole session, SIGKILL to whatever of it is left after `grace` s (a program that stops
        its own children gracefully gets that long for it); the program's exit status."""
        if self.process.poll() is None:
            members = [member for member in psutil.Process().children(recursive=True) if in_session(member, self.process.pid)]
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            began = time.monotonic()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
            psutil.wait_procs([member for member in members if member.pid != self.process.pid],
                              timeout=max(0.0, began + grace - time.monotonic()))
        end_session(self.process.pid)
        return self.process.wait()

    def __enter__(self) -> "Program":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port where connections are refused for as long as the block runs: bound here (without
    SO_REUSEADDR, so nobody else can bind it meanwhile) and never listened on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def answers(path: str, statuses: Sequence[int] = (200,), scheme: str = "http",
            **request) -> Callable[[Program], httpx.Response | None]:
    """A readiness check: the program's response to GET `path` once its status is one of `statuses`."""
    def ready(program: Program) -> httpx.Response | None:
        try:
            response = httpx.get(f"{scheme}://127.0.0.1:{program.port}{path}", timeout=2, **request)
        except httpx.TransportError:
            return None
        return response if response.status_code in statuses else None

    return ready
