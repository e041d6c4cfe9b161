"""`drum-compat ab` for real: both arms behind a real nginx front on loopback (nginx from Debian, installed by
.ci/run), the split by weight, sticky clients, mirroring, `ab-status`, a clear error without nginx, a clean stop."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import psutil
import pytest

from drum_compat.compat.ab.front import FrontPlan, nginx_conf
from drum_compat.compat.ab.status import figures, quantile
from drum_compat.compat.running import DRUM_COMPAT, Program, free_port
from tests.processes import READY_TIMEOUT, wait_until

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples" / "models" / "regression"
HOUSES = (ROOT / "examples" / "data" / "houses.csv").read_bytes()


class Front(Program):
    """`drum-compat ab` in its own session; `terminate` stops it by its pid, with SIGTERM, as an operator would."""

    def __init__(self, *args: str) -> None:
        environ = {name: value for name, value in os.environ.items() if not name.startswith(("DRUM_", "MLOPS_RUNTIME_PARAM_"))}
        super().__init__(lambda port: [DRUM_COMPAT, "ab", "--code-dir", str(MODEL), "--address", f"127.0.0.1:{port}", *args],
                         lambda front: "drum-compat ab: " in front.read_output(), env=environ, timeout=READY_TIMEOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def predict(self, client: httpx.Client) -> httpx.Response:
        return client.post(f"{self.url}/predictions/", content=HOUSES, headers={"Content-Type": "text/csv"})

    def status(self) -> dict:
        shown = subprocess.run([DRUM_COMPAT, "ab-status", self.url, "--json"], capture_output=True, text=True, timeout=60, check=True)
        return json.loads(shown.stdout)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=READY_TIMEOUT)


pytestmark = pytest.mark.servers


def test_the_front_splits_by_weight_and_says_which_arm_answered():
    with Front("--fastapi-weight", "30") as front:
        with httpx.Client(timeout=60) as client:
            answers = [front.predict(client) for _ in range(200)]
        status = front.status()
        # as typed, without a scheme; the refusals row shown though there were none
        shown = subprocess.run([DRUM_COMPAT, "ab-status", f"127.0.0.1:{front.port}"], capture_output=True, text=True,
                               timeout=60)
        assert front.terminate() == 0
    assert shown.returncode == 0 and "refused (413, 429, 503, 504...)" in shown.stdout, shown.stdout + shown.stderr
    arms = [answer.headers["X-Drum-Stack"] for answer in answers]
    assert set(arms) == {"gunicorn", "fastapi"} and 30 <= arms.count("fastapi") <= 95  # 60 expected; 4.5 sigma either side
    assert {(answer.status_code, answer.content) for answer in answers} == {(200, answers[0].content)}  # alike
    for arm in ("gunicorn", "fastapi"):
        # the clients' requests only: ab's readiness checks of the arms and of the front are probes, not counted
        assert status[arm]["requests"] == arms.count(arm) and status[arm]["error_ratio"] == 0
        assert 0 < status[arm]["p50"] <= status[arm]["p99"]
    # each arm's access lines name it
    output = front.read_output()
    assert ' 200 ' in output and "gunicorn\n" in output and "fastapi\n" in output


def test_sticky_clients_keep_their_arm_and_mirroring_shadows_every_request():
    with Front("--fastapi-weight", "0", "--sticky", "--mirror") as front:
        before = front.status()["fastapi"]["requests"]
        with httpx.Client(timeout=60) as client:
            arms = {front.predict(client).headers["X-Drum-Stack"] for _ in range(40)}
        # mirrored copies are sent alongside, their answers discarded: fastapi sees each request
        wait_until(lambda: front.status()["fastapi"]["requests"] - before >= 40, "every request mirrored to fastapi",
                   every=0.5)
        assert front.terminate() == 0
    assert arms == {"gunicorn"}  # weight 0: every answer from gunicorn


def test_stopping_the_command_stops_the_front_and_both_arms():
    with Front("--fastapi-weight", "50") as front:
        arms = front.read_output().split("arms on ports ", 1)[1].splitlines()[0]
        ports = [int(word) for word in arms.replace(",", " ").split() if word.isdigit()]
        assert len(ports) == 2
        assert front.terminate() == 0
    for port in [front.port, *ports]:
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2)


def refuses(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2)
    except httpx.TransportError:
        return True
    return False


def listening_ports(pids: list[int]) -> set[int]:
    return {connection.laddr.port for connection in psutil.net_connections("tcp")
            if connection.status == psutil.CONN_LISTEN and connection.pid in pids}


def test_a_killed_ab_leaves_nothing_running_or_behind():
    """SIGKILL of `drum-compat ab` (which can clean up nothing itself): its reaper ends nginx and both arms, whatever
    their sessions, and removes the front's folder (the issue: all three kept running, the folder stayed)."""
    with Front("--fastapi-weight", "50") as front:
        started = psutil.Process(front.process.pid).children(recursive=True)
        nginx = next(process for process in started if process.name() == "nginx")
        folder = Path(nginx.cmdline()[nginx.cmdline().index("-p") + 1])
        ports = listening_ports([process.pid for process in started])
        assert folder.is_dir() and front.port in ports and len(ports) >= 3  # the front and both arms
        front.process.send_signal(signal.SIGKILL)
        front.process.wait()
        wait_until(lambda: all(map(refuses, ports)) and not folder.exists(), "the front, the arms and the folder gone")
    assert not [process for process in started if process.is_running() and process.status() != psutil.STATUS_ZOMBIE]


def test_a_killed_parity_leaves_no_server_running():
    model = ROOT / "examples" / "models" / "regression"
    command = lambda port: [DRUM_COMPAT, "parity", "--code-dir", str(model), "--fuzz", "100000"]  # noqa: E731
    with Program(command, lambda run: "fuzzing:" in run.read_output(), timeout=READY_TIMEOUT) as parity:
        started = psutil.Process(parity.process.pid).children(recursive=True)
        ports = listening_ports([process.pid for process in started])
        assert len(ports) == 2  # gunicorn's and uvicorn's
        parity.process.send_signal(signal.SIGKILL)
        parity.process.wait()
        wait_until(lambda: all(map(refuses, ports)), "both servers gone")


def test_without_nginx_the_command_says_how_to_install_it():
    finished = subprocess.run([DRUM_COMPAT, "ab", "--code-dir", str(MODEL), "--address", f"127.0.0.1:{free_port()}",
                               "--nginx", "/nonexistent/nginx"], capture_output=True, text=True, timeout=30)
    assert finished.returncode == 2
    assert "nginx not found" in finished.stderr and "apt-get install -y nginx" in finished.stderr


def test_an_address_in_use_is_said_in_one_line_before_any_arm_starts():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        # the issue: both arms started (~70 s) before nginx failed with five `[emerg] bind()` lines
        finished = subprocess.run([DRUM_COMPAT, "ab", "--code-dir", str(MODEL), "--address", f"127.0.0.1:{port}"],
                                  capture_output=True, text=True, timeout=30)
    assert finished.returncode == 2
    assert finished.stderr.strip() == f"drum-compat: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert "Booting worker" not in finished.stdout + finished.stderr


def test_the_front_configuration():
    plan = FrontPlan("0.0.0.0:8080", {"gunicorn": 9001, "fastapi": 9002}, 12.5, sticky=True, mirror=True, directory="/tmp/x")
    conf = nginx_conf(plan)
    assert 'split_clients "${remote_addr}" $drum_arm { 12.5% fastapi; * gunicorn; }' in conf
    assert "upstream gunicorn { server 127.0.0.1:9001;" in conf and "upstream fastapi { server 127.0.0.1:9002;" in conf
    assert "mirror /_drum_compat/mirror;" in conf and "listen 0.0.0.0:8080;" in conf and "client_max_body_size 0;" in conf
    assert '{ * fastapi; }' in nginx_conf(FrontPlan("127.0.0.1:1", {"gunicorn": 1, "fastapi": 2}, 100))
    assert "mirror " not in nginx_conf(FrontPlan("127.0.0.1:1", {"gunicorn": 1, "fastapi": 2}, 10))


def test_status_figures_from_an_exposition():
    exposition = "\n".join([
        'drum_requests_total{route="/predictions/",method="POST",status="200",server_type="fastapi"} 90',
        'drum_requests_total{route="/predictions/",method="POST",status="503",server_type="fastapi"} 10',
        'drum_requests_total{route="/metrics",method="GET",status="200",server_type="fastapi"} 7',
        'drum_requests_total{route="/startupz",method="GET",status="200",server_type="fastapi"} 23',
        'drum_request_duration_seconds_bucket{route="/predictions/",method="POST",server_type="fastapi",le="0.01"} 50',
        'drum_request_duration_seconds_bucket{route="/predictions/",method="POST",server_type="fastapi",le="0.1"} 100',
        'drum_request_duration_seconds_bucket{route="/predictions/",method="POST",server_type="fastapi",le="+Inf"} 100',
        'drum_rejections_total{reason="queue_full",server_type="fastapi"} 10',
        'drum_rejections_total{reason="deadline",server_type="fastapi"} 0',
    ]) + "\n"
    arm = figures(exposition)
    assert (arm.requests, arm.errors, arm.error_ratio, arm.rejections) == (100, 10, 0.1, {"queue_full": 10})
    assert arm.p50 == pytest.approx(0.01) and arm.p99 == pytest.approx(0.01 + 0.09 * 49 / 50)
    assert quantile([], 0.5) is None
