"""A CPU-bound unstructured model for overload checks: a body `cpu=S` spins for S seconds. A call that starts
while another runs in the same process leaves an `overlap` file (O_EXCL, no lock: under gevent a patched
lock cannot serve native threads), so a test can prove the model never ran twice at once."""
import os
import time
from pathlib import Path

def load_model(code_dir):
    return Path(code_dir)

def score_unstructured(model, data, **kwargs):
    seconds = float(data.split("=", 1)[1]) if data.startswith("cpu=") else 0.0
    running = Path(model, f"running-{os.getpid()}")
    try:
        os.close(os.open(running, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        Path(model, "overlap").touch()
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
    finally:
        running.unlink(missing_ok=True)
    return "done"
