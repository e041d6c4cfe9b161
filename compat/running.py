"""`drum-compat server` started for real on a free loopback port, waited for until it answers, stopped by its
own pid and then its session's stragglers: what the tests, the benchmarks, parity and A/B run."""
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

import httpx

from drum_compat.compat.listener import ADDRESS_UNAVAILABLE

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
    """The port picked for the server was bound by someone else before the server bound it."""


class RunningServer:
    """A server in a session of its own, so that stopping it ends every process it started."""

    def __init__(self, code_dir, server_type: str, *args: str, env: dict | None = None, timeout: float = 60.0,
                 ready_path: str = "/", tls: ssl.SSLContext | None = None, cwd=None, port: int | None = None,
                 output=None):
        """`output`: where the server's log goes (an open file); by default a temp file `read_output` reads.
        Without `port`, a free one is picked, and picked again should another process bind it first."""
        self.verify = tls or True
        self._owns_output = output is None
        for attempt in range(1, PORT_ATTEMPTS + 1):
            # a file, not a pipe: an unread pipe fills with access-log lines and blocks the server
            self.output = tempfile.TemporaryFile(mode="w+") if output is None else output
            self.port = port or free_port()
            self.base_url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
            self.process = subprocess.Popen(
                [DRUM_COMPAT, "server", "--code-dir", str(code_dir), "--address", f"127.0.0.1:{self.port}", *args],
                env=server_environment(server_type, env), stdout=self.output, stderr=subprocess.STDOUT, text=True,
                cwd=cwd, start_new_session=True,
            )
            try:
                self._wait_ready(timeout, ready_path)
                return
            except PortTaken:
                if port or attempt == PORT_ATTEMPTS:
                    raise

    def _wait_ready(self, timeout: float, ready_path: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.read_output()
                if self.process.returncode == ADDRESS_UNAVAILABLE and ADDRESS_IN_USE in output:
                    raise PortTaken(output)
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{output}")
            try:
                if httpx.get(f"{self.base_url}{ready_path}", timeout=1.0, verify=self.verify).status_code in (200, 513):
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"server on port {self.port} not ready after {timeout}s")

    def read_output(self) -> str:
        if not self._owns_output:
            return ""
        self.output.seek(0)
        return self.output.read()

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        end_session(self.process.pid)
        return self.read_output()

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def run_to_exit(code_dir, server_type: str, *args: str, env: dict | None = None, timeout: float = 60.0,
                port: int | None = None) -> subprocess.CompletedProcess:
    """For startups that must fail: run until the process exits by itself."""
    environ = server_environment(server_type, env)
    return subprocess.run(
        [DRUM_COMPAT, "server", "--code-dir", str(code_dir), "--address", f"127.0.0.1:{port or free_port()}", *args],
        env=environ, capture_output=True, text=True, timeout=timeout,
    )
