"""A program started for real on a free loopback port in a session of its own, waited for until it answers, ended
with its whole session; `drum-compat server` so run is what the tests, the benchmarks, parity and A/B start."""
from __future__ import annotations

import os
import signal
import ssl
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import httpx
import psutil

from drum_compat.compat.reaper import Reaper

DRUM_COMPAT = str(Path(sys.executable).with_name("drum-compat"))
ADDRESS_IN_USE = "Address already in use"
PORT_ATTEMPTS = 5


def end_session(leader: int) -> None:
    """Kill what is left of a session started with `start_new_session` once its leader has ended: workers a
    killed master left behind belong to nothing else."""
    try:
        os.killpg(leader, signal.SIGKILL)
    except ProcessLookupError:
        pass


def in_session(process: psutil.Process, leader: int) -> bool:
    try:
        return os.getsid(process.pid) == leader
    except ProcessLookupError:
        return False


def ended(process: psutil.Process) -> bool:
    """Gone, or a zombie: an orphan's exit status waits for whoever adopted it, which may be slow to collect it."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_environment(server_type: str, env: dict | None) -> dict[str, str]:
    """This process's environment without its own server settings (only `env`'s count) and without a metrics
    directory (two instances must never share one)."""
    environ = {name: value for name, value in os.environ.items()
               if not name.startswith(("MLOPS_RUNTIME_PARAM_", "DRUM_")) and name != "PROMETHEUS_MULTIPROC_DIR"}
    environ.update({"DRUM_SERVER_TYPE": server_type, **(env or {})})
    return environ


class PortTaken(RuntimeError):
    """The port picked for a program was bound by someone else before the program bound it."""


class Program:
    """`command(port)` in a session of its own, its output in a file (or `output`), until `ready(program)` holds (its
    value kept in `.ready`). Without `port`, one is picked by binding port 0, and picked again should the program
    exit saying it is in use. A context manager: `stop` ends the whole session, however the block ends."""

    def __init__(self, command: Callable[[int], Sequence[str] | str], ready: Callable[["Program"], object], *,
                 port: int | None = None, timeout: float = 60.0, output=None, signal_session: bool = False,
                 reaper: Reaper | None = None, **popen) -> None:
        """`signal_session`: `stop` sends SIGTERM to every process of the session (a shell does not pass it on), not
        to the program alone (a server's master stops its own workers: signalled too, uvicorn's would restart one).
        `reaper`: told of the session, so that it ends should this process die without stopping it."""
        self._owns_output, self.signal_session, self.reaper = output is None, signal_session, reaper
        for attempt in range(1, PORT_ATTEMPTS + 1):
            # a file, not a pipe: an unread pipe fills with access-log lines and blocks the server
            self.log = tempfile.TemporaryFile(mode="w+") if output is None else output
            self.port = port or free_port()
            self.process = subprocess.Popen(command(self.port), stdout=self.log, stderr=subprocess.STDOUT, text=True,
                                            start_new_session=True, **popen)
            if reaper is not None:
                reaper.keep_session(self.process.pid)
            try:
                self.ready = self._wait_ready(ready, timeout)
                return
            except PortTaken:
                if port or attempt == PORT_ATTEMPTS:
                    raise
            except BaseException:
                self.stop()
                raise

    def _wait_ready(self, ready: Callable[["Program"], object], timeout: float) -> object:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                output = self.stop()
                if ADDRESS_IN_USE.lower() in output.lower():
                    raise PortTaken(output)
                raise RuntimeError(f"{self.process.args} exited with {self.process.returncode}:\n{output}")
            answer = ready(self)
            if answer:
                return answer
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.process.args} not ready on port {self.port} after {timeout:g} s")
            time.sleep(0.1)

    def read_output(self) -> str:
        if not self._owns_output:
            return ""
        self.log.seek(0)
        return self.log.read()

    def stop(self, grace: float = 30.0) -> str:
        """SIGTERM, then SIGKILL to whatever of the session is left after `grace` s (a program that stops its own
        children gracefully gets that long for it); the program's output."""
        if self.process.poll() is None:
            members = [member for member in psutil.Process().children(recursive=True)
                       if member.pid != self.process.pid and in_session(member, self.process.pid)]
            try:
                if self.signal_session:
                    os.killpg(self.process.pid, signal.SIGTERM)
                else:
                    self.process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            ends = time.monotonic() + grace
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
            while not all(map(ended, members)) and time.monotonic() < ends:
                time.sleep(0.05)
        end_session(self.process.pid)
        self.process.wait()
        if self.reaper is not None:
            self.reaper.forget_session(self.process.pid)
        return self.read_output()

    def __enter__(self) -> "Program":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


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


class RunningServer(Program):
    """`drum-compat server` until `ready_path` answers 200 (or the error server's 513)."""

    def __init__(self, code_dir, server_type: str, *args: str, env: dict | None = None, timeout: float = 60.0,
                 ready_path: str = "/", tls: ssl.SSLContext | None = None, cwd=None, port: int | None = None,
                 output=None, reaper: Reaper | None = None):
        """`output`: where the server's log goes (an open file); by default a temp file `read_output` reads."""
        self.scheme, self.verify = ("https" if tls else "http"), tls or True

        def command(port: int) -> list[str]:
            return [DRUM_COMPAT, "server", "--code-dir", str(code_dir), "--address", f"127.0.0.1:{port}", *args]

        super().__init__(command, answers(ready_path, (200, 513), self.scheme, verify=self.verify), port=port,
                         timeout=timeout, output=output, env=server_environment(server_type, env), cwd=cwd, reaper=reaper)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"


def run_to_exit(code_dir, server_type: str, *args: str, env: dict | None = None, timeout: float = 60.0,
                port: int | None = None) -> subprocess.CompletedProcess:
    """For startups that must fail: run until the process exits by itself."""
    environ = server_environment(server_type, env)
    return subprocess.run(
        [DRUM_COMPAT, "server", "--code-dir", str(code_dir), "--address", f"127.0.0.1:{port or free_port()}", *args],
        env=environ, capture_output=True, text=True, timeout=timeout,
    )
