"""What the tests start and how long they wait: one readiness deadline from one setting for every program they start
(each in a session of its own that ends with the test, on a port picked again if taken: compat/running.py), and
ports that must refuse connections."""
from __future__ import annotations

import contextlib
import os
import socket
import time
from typing import Callable, Iterator, Sequence

from drum_compat.compat.running import Program, RunningServer

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


def program(command: Callable[[int], Sequence[str] | str], ready: Callable[[Program], object], **kwargs) -> Program:
    """`command(port)` in a session of its own until `ready(program)` holds, within READY_TIMEOUT; a context manager
    that ends the whole session."""
    kwargs.setdefault("timeout", READY_TIMEOUT)
    return Program(command, ready, **kwargs)


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port where connections are refused for as long as the block runs: bound here (without
    SO_REUSEADDR, so nobody else can bind it meanwhile) and never listened on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
