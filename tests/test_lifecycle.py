"""Workers over their lifetime on real servers (gunicorn gevent and sync, uvicorn): each worker
loads the model after fork and the master never does, SIGTERM drains in-flight requests and runs
worker cleanup before exit 0, and recycling after N requests never fails one; a loaded worker's heap is frozen out of
the cyclic collector's sight."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import psutil
import pytest

from tests.models import write_model
from tests.processes import READY_TIMEOUT, serve, wait_until

pytestmark = pytest.mark.servers
CONFIGURATIONS = {
    "gunicorn-gevent": ("gunicorn", {}),
    "gunicorn-sync": ("gunicorn", {"DRUM_GUNICORN_WORKER_CLASS": "sync"}),
    "fastapi": ("fastapi", {}),
}


def loaded_pids(code_dir: Path) -> set[int]:
    return {int(path.name.split("-")[1]) for path in code_dir.glob("loaded-*")}


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_two_workers_each_load_the_model_and_the_master_never_does(tmp_path, configuration):
    server_type, env = CONFIGURATIONS[configuration]
    code_dir, _ = write_model(tmp_path, "traced")
    with serve(code_dir, server_type, "--target-type", "unstructured", env={**env, "CUSTOM_MODEL_WORKERS": "2"}) as server:
        wait_until(lambda: len(loaded_pids(code_dir)) == 2, "both workers loaded")
        master = psutil.Process(server.process.pid)
        workers = {child.pid for child in master.children(recursive=True)}
        assert loaded_pids(code_dir) <= workers and master.pid not in loaded_pids(code_dir)
        assert httpx.post(f"{server.base_url}/predictUnstructured/", content=b"hi").text in {str(pid) for pid in workers}


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_sigterm_lets_the_running_prediction_finish_then_exits_0(tmp_path, configuration):
    server_type, env = CONFIGURATIONS[configuration]
    code_dir, _ = write_model(tmp_path, "traced")
    server = serve(code_dir, server_type, "--target-type", "unstructured", "--logging-level", "info", env=env)
    answers = {}

    def predict():
        answers["slow"] = httpx.post(f"{server.base_url}/predictUnstructured/", content=b"sleep=2", timeout=30)

    caller = threading.Thread(target=predict)
    caller.start()
    wait_until(lambda: any(code_dir.glob("busy-*")), "the prediction running")
    server.process.send_signal(signal.SIGTERM)
    # new connections are refused (not left queued) while the prediction still runs
    wait_until(lambda: _refused(server.port), "new connections refused")
    assert caller.is_alive()
    caller.join(READY_TIMEOUT)
    assert server.process.wait(timeout=READY_TIMEOUT) == 0
    output = server.stop()
    assert answers["slow"].status_code == 200
    worker_pid = int(answers["slow"].text)
    assert f"Worker {worker_pid} finished: cleanup done" in output


def _refused(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/ping", timeout=0.5)
    except httpx.ConnectError:
        return True
    except httpx.TransportError:
        pass
    return False


PAIRS = 30  # a probe and a prediction each: about ten recycles of every stack


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_recycling_every_5_requests_fails_none_of_60(tmp_path, configuration):
    server_type, env = CONFIGURATIONS[configuration]
    code_dir, _ = write_model(tmp_path, "traced")
    recycle = {"DRUM_GUNICORN_MAX_REQUESTS": "5", "DRUM_GUNICORN_MAX_REQUESTS_JITTER": "2"} if server_type == "gunicorn" else \
        {"DRUM_UVICORN_MAX_REQUESTS": "5", "DRUM_UVICORN_MAX_REQUESTS_JITTER": "2"}
    with serve(code_dir, server_type, "--target-type", "unstructured", env={**env, **recycle}) as server:
        served_by = []
        with httpx.Client(base_url=server.base_url, timeout=30) as client:  # keep-alive, as a proxy would
            for number in range(PAIRS):
                # a probe counts too (uvicorn's protocol answers it past the app: fastapi_backend.at_once)
                assert client.get("/ping").status_code == 200, number
                # gevent checks its limit once a second: spread the requests (3 s or more) so it gets to recycle
                response = client.post("/predictUnstructured/", content=b"sleep=0.1" if configuration == "gunicorn-gevent" else b"go")
                assert response.status_code == 200, (number, response.text)
                served_by.append(int(response.text))
        output = server.stop()
    assert "Traceback" not in output
    # uvicorn retires exactly after 5..7 requests; gthread too, but a request already sent on its
    # keep-alive connection when the limit is reached is still answered (gunicorn's own linger), so up
    # to 8. Every other request is a probe, so a worker answers at most 4 of the posts. gevent notices its
    # limit once a second, so a fast stream overshoots it: it must still recycle.
    workers = set(served_by)
    assert len(workers) >= 2, (len(workers), output[-2000:])
    if configuration != "gunicorn-gevent":
        most = 4
        assert max(served_by.count(pid) for pid in workers) <= most and len(workers) >= PAIRS // most


def test_operator_story_gunicorn_tuned_parameters_bring_up_uvicorn(tmp_path):
    """DRUM_SERVER_TYPE=fastapi with a gunicorn-tuned deployment's runtime parameters: two uvicorn
    workers, and the startup log names each old parameter once."""
    from tests.test_settings import GUNICORN_TUNED

    code_dir, _ = write_model(tmp_path, "traced")
    with serve(code_dir, "fastapi", "--target-type", "unstructured", env=GUNICORN_TUNED) as server:
        wait_until(lambda: len(loaded_pids(code_dir)) == 2, "both workers loaded")
        assert httpx.post(f"{server.base_url}/predictUnstructured/", content=b"hi").status_code == 200
        output = server.stop()
    for old in ("MAX_REQUESTS", "MAX_REQUESTS_JITTER", "GRACEFUL_TIMEOUT", "KEEP_ALIVE", "LOG_LEVEL"):
        assert output.count(f"DRUM_GUNICORN_{old} is deprecated with the fastapi stack; use DRUM_UVICORN_{old} instead") == 1
    assert output.count("DRUM_GUNICORN_WORKER_CLASS has no effect with the fastapi stack.") == 1


def test_a_loaded_worker_freezes_its_heap_out_of_the_collectors_sight():
    # in a process of its own: frozen objects are never collected, which this test process must not suffer
    script = ("import gc; from drum_compat.runtime.startup import build_or_exit; "
              "loaded = build_or_exit(lambda: [[] for _ in range(1000)], '.'); "
              "print(gc.get_freeze_count(), len(gc.get_objects()))")
    frozen, tracked = map(int, subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                              check=True).stdout.split())
    assert frozen > 1000 and tracked < 100  # the app's lists among the frozen, next to nothing left to scan



MALLOC_STATE = """
import ctypes, os, threading, time
from drum_compat.runtime.startup import build_or_exit
build_or_exit(lambda: None, ".")
libc = ctypes.CDLL(None)

def allocate():  # bytes of over 512 bytes come from malloc, not from Python's own allocator
    kept = [bytes(2048) for _ in range(2000)]

thread = threading.Thread(target=allocate)
thread.start()
thread.join()
while os.path.exists(f"/proc/self/task/{thread.native_id}"):  # join returns before the thread frees its malloc cache
    time.sleep(0.001)
libc.open_memstream.restype = libc.malloc.restype = ctypes.c_void_p
buffer, size = ctypes.c_char_p(), ctypes.c_size_t()
stream = libc.open_memstream(ctypes.byref(buffer), ctypes.byref(size))
libc.malloc_info(0, ctypes.c_void_p(stream))
libc.fclose(ctypes.c_void_p(stream))

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc.mallinfo2.restype = MallInfo2
libc.free(ctypes.c_void_p(libc.malloc(8 << 20)))  # a freed mapping of 8 MiB raises a dynamic threshold past 6
mapped = libc.mallinfo2().hblks
block = libc.malloc(6 << 20)
small = [0] * 3000  # sized first: its own buffer (from malloc too) must not land above the blocks
for index in range(len(small)):  # 6 MB at the heap's top, then freed: is the top given back?
    small[index] = libc.malloc(2048)
for pointer in small:  # in order: the first few stay in the thread cache, below the rest
    libc.free(ctypes.c_void_p(pointer))
print(buffer.value.decode().count("<heap nr="), libc.mallinfo2().hblks - mapped, int(libc.mallinfo2().keepcost >= 4 << 20))
"""


@pytest.mark.parametrize("environment, arenas, mapped, top_kept", [
    ({}, 1, 1, 1),  # one arena; 6 MiB still mapped; the freed top kept for the next request
    ({"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "16777216", "MALLOC_TRIM_THRESHOLD_": "131072"}, 2, 0, 0),  # the operator's
])
def test_malloc_is_tuned_for_large_requests_unless_the_operator_says(environment, arenas, mapped, top_kept):
    found = subprocess.run([sys.executable, "-c", MALLOC_STATE], capture_output=True, text=True, check=True,
                           env={**os.environ, **environment}).stdout.split()
    assert list(map(int, found)) == [arenas, mapped, top_kept]


READ_CSV_FAULTS = """
import io, resource
from drum_compat.runtime.startup import build_or_exit
build_or_exit(lambda: None, ".")
import pandas as pd
body = b"sqft,bedrooms,age\\n" + b"".join(b"%d,%d,%d\\n" % (1000 + i % 3000, i % 4 + 1, i % 90) for i in range(10_000))
for _ in range(3):  # the heap grown to what a read needs
    pd.read_csv(io.BytesIO(body))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    pd.read_csv(io.BytesIO(body))
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 10)
"""


@pytest.mark.parametrize("environment, mapped_afresh", [
    ({}, False),  # the tokenizer's buffers (~1.5 MiB each for this 98 kB body) come from the heap, already in memory
    ({"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}, True),  # each read maps them and faults them in again: ~100 pages
])
def test_a_warm_worker_reads_a_10000_row_csv_without_mapping_memory_afresh(environment, mapped_afresh):
    faults = int(subprocess.run([sys.executable, "-c", READ_CSV_FAULTS], capture_output=True, text=True, check=True,
                                env={**os.environ, **environment}).stdout)
    assert (faults > 50) == mapped_afresh, faults
