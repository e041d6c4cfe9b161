"""`drum-compat ab`: the two arms (gunicorn and fastapi, each on its own loopback port with its own instance
directory and metrics) behind an nginx front on --address, until SIGTERM or Ctrl-C stops all three."""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Mapping

import httpx

from drum_compat.compat.ab.front import ARMS, FrontPlan, nginx_conf
from drum_compat.compat.ab.status import READINESS_PATH
from drum_compat.runtime.listener import AddressUnavailable, bind_listener
from drum_compat.runtime.options import MODEL_OPTIONS, as_arguments
from drum_compat.compat.parity.runner import shared_environment, url_prefix_of
from drum_compat.compat.reaper import Reaper
from drum_compat.compat.running import RunningServer, end_session
from drum_compat.runtime.settings import SettingError
from drum_compat.shared.routes import prefixed

CANNOT_START = 2
NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")
INSTALL_NGINX = "apt-get update && apt-get install -y nginx"
LOOPBACK_PROXIES = "127.0.0.1/32 ::1/128"  # the front: arms believe its X-Forwarded-For (the rate limit's client)


class FrontError(RuntimeError):
    pass


def find_nginx(given: str | None) -> str:
    for candidate in ([given] if given else NGINX_CANDIDATES):
        found = shutil.which(candidate)
        if found:
            return found
    raise FrontError(f"nginx not found ({given or 'on PATH or in /usr/sbin'}): the A/B front is an nginx server; "
                     f"install it with `{INSTALL_NGINX}` (Debian/Ubuntu) or pass --nginx PATH")


def arm_environment(environ: Mapping[str, str]) -> dict[str, str]:
    env = shared_environment(environ)
    env.setdefault("DRUM_TRUSTED_PROXIES", LOOPBACK_PROXIES)
    return env


def wait_for_front(process: subprocess.Popen, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise FrontError(f"nginx exited with {process.returncode} (its messages are above)")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise FrontError(f"nginx did not answer on {url} within {timeout:g} s")


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    if not 0 <= args.fastapi_weight <= 100:
        print(f"drum-compat: error: --fastapi-weight {args.fastapi_weight:g} is not a percentage (0 to 100)", file=sys.stderr)
        return CANNOT_START
    try:
        nginx = find_nginx(args.nginx)
        host, _, port = args.address.rpartition(":")
        if not port.isdigit():
            raise FrontError(f"--address {args.address}: expected HOST:PORT")
        bind_listener(host, int(port), 1).close()  # now, not after the arms took a minute to start and nginx failed
    except (FrontError, AddressUnavailable) as exc:
        print(f"drum-compat: error: {exc}", file=sys.stderr)
        return CANNOT_START
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    reaper = Reaper()  # should this process be killed, the arms, the front and the folder still end
    directory = tempfile.mkdtemp(prefix="drum-compat-ab-")
    reaper.keep_folder(directory)
    arms: dict[str, RunningServer] = {}
    front: subprocess.Popen | None = None
    try:
        ready = prefixed(READINESS_PATH, url_prefix_of(ARMS[0], environ))  # a probe: ab-status leaves it out
        for arm in ARMS:
            arms[arm] = RunningServer(args.code_dir, arm, *as_arguments(args, MODEL_OPTIONS), env=arm_environment(environ),
                                      timeout=args.startup_timeout, output=sys.stdout, ready_path=ready, reaper=reaper)
        plan = FrontPlan(args.address, {arm: server.port for arm, server in arms.items()}, args.fastapi_weight,
                         args.sticky, args.mirror, directory)
        Path(directory, "nginx.conf").write_text(nginx_conf(plan))
        front = subprocess.Popen([nginx, "-p", directory, "-c", f"{directory}/nginx.conf", "-g", "daemon off;"],
                                 start_new_session=True)
        reaper.keep_session(front.pid)
        wait_for_front(front, f"http://{local_address(args.address)}{ready}", args.startup_timeout)
        split = "per client" if args.sticky else "per request"
        print(f"drum-compat ab: {args.address} -> fastapi {args.fastapi_weight:g}% / gunicorn {100 - args.fastapi_weight:g}% "
              f"({split}{', mirrored to the other arm' if args.mirror else ''}); arms on ports "
              f"{', '.join(f'{arm} {server.port}' for arm, server in arms.items())}", flush=True)
        while not stop.wait(0.5):
            if front.poll() is not None:
                raise FrontError(f"nginx exited with {front.returncode}")
            for arm, server in arms.items():
                if server.process.poll() is not None:
                    raise FrontError(f"the {arm} arm exited with {server.process.returncode}")
        return 0
    except (RuntimeError, TimeoutError, SettingError) as exc:  # an arm that cannot start, the front, a bad setting
        print(f"drum-compat: error: {exc}", file=sys.stderr)
        return CANNOT_START
    finally:
        if front is not None and front.poll() is None:
            front.send_signal(signal.SIGQUIT)  # nginx's graceful stop: in-flight requests finish
            try:
                front.wait(timeout=30)
            except subprocess.TimeoutExpired:
                front.kill()
                front.wait()
        if front is not None:
            end_session(front.pid)  # nginx's workers, should its master have died first
            reaper.forget_session(front.pid)
        for server in arms.values():
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)
        reaper.forget_folder(directory)
        reaper.close()


def local_address(address: str) -> str:
    """Where this host reaches the front (a wildcard listen address is reached on loopback)."""
    host, _, port = address.rpartition(":")
    return f"127.0.0.1:{port}" if host in ("", "0.0.0.0", "[::]") else address
