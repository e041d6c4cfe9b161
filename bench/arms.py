"""The servers the benchmark compares, each started pinned to its own core (taskset) on a free loopback port, waited
for, measured (the resident memory of its process tree) and stopped by its own process group."""
from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from drum_compat.compat.running import DRUM_COMPAT, free_port

ROOT = Path(__file__).resolve().parent.parent
MODEL = Path(__file__).resolve().parent / "models" / "constant"
DRUM = Path(os.environ.get("DRUM_REFERENCE", ROOT / ".venv-drum" / "bin" / "drum"))
SERVER_CORE, LOAD_CORE = "0", "1"
QUEUE_FOR_ALL = {"DRUM_EXECUTOR_QUEUE_DEPTH": "128"}  # deeper than any cell's connections: nothing is refused
# every guard at work, none refusing: the rate limit's largest bucket, a deadline, CORS
GUARDS_ON = {"DRUM_RATE_LIMIT_ENABLED": "true", "DRUM_RATE_LIMIT_RPM": "1000000", "DRUM_RATE_LIMIT_BURST": "100000",
             "DRUM_CLIENT_REQUEST_TIMEOUT": "60", "DRUM_CORS_ORIGINS": "https://app.example.com"}
GUARDS_OFF = {"DRUM_CLIENT_REQUEST_TIMEOUT": "0"}


def monitored() -> dict:
    """--monitor through datarobot-mlops's filesystem spooler, into a directory of this run's own."""
    spool = tempfile.mkdtemp(prefix="drum-compat-bench-spool-")
    atexit.register(shutil.rmtree, spool, ignore_errors=True)
    return {"MONITOR": "true", "DEPLOYMENT_ID": "bench", "MODEL_ID": "bench",
            "MONITOR_SETTINGS": f"spooler_type=filesystem;directory={spool}"}


def pinned_to_server_core() -> tuple[str, ...]:
    """The prefix that runs a command on the servers' core (nothing where taskset is missing)."""
    return ("taskset", "-c", SERVER_CORE) if shutil.which("taskset") else ()


def work_alone_seconds(path: Path) -> float:
    """The pandas work of a /predictions/ request on the CSV at `path`, timed in a fresh process on the servers' core."""
    done = subprocess.run([*pinned_to_server_core(), sys.executable, "-m", "bench.bare", str(path)], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return float(done.stdout)


@dataclass(frozen=True)
class Arm:
    name: str
    kind: str  # "drum-compat", "drum", "bare"
    command: tuple[str, ...]  # {port} is replaced by the port
    env: dict = field(default_factory=dict)
    stack: str = ""  # drum-compat's stack, for its bare twin: "flask" or "fastapi"
    ping_path: str = "/ping"


def drum_compat(name: str, server_type: str, stack: str, **env: str) -> Arm:
    return Arm(name, "drum-compat", (DRUM_COMPAT, "server", "--code-dir", str(MODEL), "--address", "127.0.0.1:{port}"),
               {"DRUM_SERVER_TYPE": server_type, **QUEUE_FOR_ALL, **env}, stack)


BASELINED = ("drum-compat gunicorn (gevent)", "drum-compat gunicorn (sync)", "drum-compat fastapi")
BASELINE = "baseline "  # the name of an arm run by `--baseline`'s drum-compat: this prefix and its twin's name


def baseline_arms(executable: str) -> list[Arm]:
    """The default stacks served by another drum-compat (`--baseline`: an earlier checkout's, installed elsewhere),
    beside this one's in the same run, so a change is measured against the code before it."""
    return [Arm(BASELINE + arm.name, "baseline", (executable, *arm.command[1:]), arm.env, arm.stack)
            for arm in all_arms() if arm.name in BASELINED]


def all_arms() -> list[Arm]:
    python = sys.executable
    arms = [
        drum_compat("drum-compat gunicorn (gevent)", "gunicorn", "flask"),
        drum_compat("drum-compat gunicorn (sync)", "gunicorn", "flask", DRUM_GUNICORN_WORKER_CLASS="sync"),
        drum_compat("drum-compat fastapi", "fastapi", "fastapi"),
        drum_compat("drum-compat gunicorn, guards on", "gunicorn", "flask", **GUARDS_ON),
        drum_compat("drum-compat gunicorn, guards off", "gunicorn", "flask", **GUARDS_OFF),
        drum_compat("drum-compat fastapi, guards on", "fastapi", "fastapi", **GUARDS_ON),
        drum_compat("drum-compat fastapi, guards off", "fastapi", "fastapi", **GUARDS_OFF),
        drum_compat("drum-compat gunicorn, monitored", "gunicorn", "flask", **monitored()),
        drum_compat("drum-compat fastapi, monitored", "fastapi", "fastapi", **monitored()),
        Arm("bare Flask + gunicorn (gevent)", "bare", (python, "-m", "gunicorn", "-w", "1", "-k", "gevent", "-b",
                                                      "127.0.0.1:{port}", "bench.bare:flask_app"), stack="flask"),
        Arm("bare FastAPI + uvicorn", "bare", (python, "-m", "uvicorn", "bench.bare:fastapi_app", "--http", "httptools",
                                               "--no-access-log", "--port", "{port}"), stack="fastapi"),
        Arm("raw ASGI + uvicorn (httptools)", "raw", (python, "-m", "uvicorn", "bench.bare:raw_asgi_app", "--http",
                                                      "httptools", "--no-access-log", "--port", "{port}")),
    ]
    if DRUM.exists():
        command = (str(DRUM), "server", "--code-dir", str(MODEL), "--address", "127.0.0.1:{port}", "--target-type", "regression")
        arms.insert(0, Arm("DRUM 1.18 (gunicorn sync)", "drum", command))
        arms.insert(1, Arm("DRUM 1.18 (gunicorn sync), monitored", "drum-monitored", command, monitored()))
    return arms


class Running:
    def __init__(self, arm: Arm, timeout: float = 120.0) -> None:
        self.arm = arm
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {name: value for name, value in os.environ.items()
                   if not name.startswith(("DRUM_", "MLOPS_RUNTIME_PARAM_")) and name != "PROMETHEUS_MULTIPROC_DIR"}
        command = [part.replace("{port}", str(self.port)) for part in arm.command]
        self.process = subprocess.Popen([*pinned_to_server_core(), *command], env={**environ, **arm.env}, cwd=ROOT,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{arm.name} exited with {self.process.returncode}")
            try:
                if httpx.get(self.url + arm.ping_path, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{arm.name} did not start")
            time.sleep(0.1)

    def workers(self) -> list[psutil.Process]:
        """The processes that serve requests: the leaves of the process tree (multiprocessing's helper aside)."""
        try:
            processes = [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children(recursive=True)]
            return [process for process in processes
                    if not process.children() and "resource_tracker" not in " ".join(process.cmdline())]
        except psutil.NoSuchProcess:
            return []

    def worker_cpu(self) -> dict[int, float]:
        """Each worker's CPU seconds so far (user and system, all its threads), by process id."""
        seconds = {}
        for process in self.workers():
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                seconds[process.pid] = times.user + times.system
        return seconds

    def worker_rss(self) -> int:
        try:
            return sum(process.memory_info().rss for process in self.workers())
        except psutil.NoSuchProcess:
            return 0

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)  # its own session: the server and its workers, nothing else
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass

    def __enter__(self) -> "Running":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
