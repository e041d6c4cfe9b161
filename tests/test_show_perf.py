"""DRUM's --show-perf (shared.timings): /stats/'s time_info null before any prediction, each prediction's time after
(rounded to the millisecond: min, max, avg, total), NaN once a read has taken them, on both stacks as on DRUM 1.18."""
from __future__ import annotations

import json
import math
import os
import subprocess

import httpx
import pytest

from drum_compat.shared.timings import PredictorTimings
from tests.test_against_drum import DRUM, REFERENCE_MISSING, ROOT

MODEL = ROOT / "examples" / "models" / "regression"
CSV = (ROOT / "examples" / "data" / "houses.csv").read_bytes()


def kind(value) -> str:
    return "null" if value is None else "NaN" if isinstance(value, float) and math.isnan(value) else "number"


def readings(url: str) -> list[dict]:
    """/stats/'s time_info before any prediction, after three, and after none since."""
    def time_info() -> dict:
        answer = httpx.get(f"{url}/stats/", timeout=30)
        assert answer.status_code == 200
        return json.loads(answer.text)["time_info"]["run_predictor_total"]

    first = time_info()
    for _ in range(3):
        assert httpx.post(f"{url}/predict/", content=CSV, headers={"Content-Type": "text/csv"}, timeout=30).status_code == 200
    return [first, time_info(), time_info()]


def shape(read: list[dict]) -> list[dict]:
    return [{key: kind(value) for key, value in sorted(reading.items())} for reading in read]


def test_the_numbers_are_drums_rounding_and_pandas_statistics():
    timings = PredictorTimings()
    assert timings.report()["run_predictor_total"] == {"avg": None, "max": None, "min": None, "total": None}
    for seconds in (0.0014, 0.0026, 0.0107):
        timings.record(seconds)
    assert timings.report()["run_predictor_total"] == pytest.approx({"avg": 0.005, "max": 0.011, "min": 0.001, "total": 0.015})
    after = timings.report()["run_predictor_total"]
    assert [kind(after[key]) for key in ("avg", "max", "min")] == ["NaN"] * 3 and after["total"] == 0


@pytest.mark.servers
@pytest.mark.skipif(not DRUM.exists() and not os.environ.get("CI"), reason=REFERENCE_MISSING)
def test_stats_time_info_reads_as_drums_on_both_stacks(tmp_path):
    from drum_compat.compat.running import answers
    from tests.processes import program, serve

    drum_command = [str(DRUM), "server", "--code-dir", str(MODEL), "--target-type", "regression", "--show-perf"]
    environ = {name: value for name, value in os.environ.items() if not name.startswith(("DRUM_", "MLOPS_RUNTIME_PARAM_"))}
    # DRUM's werkzeug server: on its gunicorn one, --show-perf fails every worker at boot (the guide's differences)
    environ["MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE"] = json.dumps({"type": "string", "payload": "werkzeug"})
    with program(lambda port: [*drum_command, "--address", f"127.0.0.1:{port}"], answers("/"), env=environ) as drum:
        drums = readings(f"http://127.0.0.1:{drum.port}")
    on_gunicorn = subprocess.run([*drum_command, "--address", "127.0.0.1:1"], capture_output=True, text=True, timeout=120,
                                 env={name: value for name, value in environ.items() if name != "MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE"})
    assert on_gunicorn.returncode != 0 and "Worker failed to boot" in on_gunicorn.stderr  # the difference drum-compat fixes
    assert shape(drums)[0] == {"avg": "null", "max": "null", "min": "null", "total": "null"}
    assert shape(drums)[1] == {"avg": "number", "max": "number", "min": "number", "total": "number"}
    for server_type in ("gunicorn", "fastapi"):
        with serve(MODEL, server_type, "--target-type", "regression", "--show-perf") as server:
            ours = readings(server.base_url)
        assert shape(ours) == shape(drums), server_type
        assert ours[2]["total"] == drums[2]["total"]
        measured = ours[1]
        rounding = 1e-9 * measured["max"]  # avg is total / 3: three equal times may give an avg a rounding below them
        assert measured["min"] - rounding <= measured["avg"] <= measured["max"] + rounding
        assert measured["total"] == pytest.approx(3 * measured["avg"])
        # each time rounded to the millisecond, as DRUM's; their float sum may carry a representation error
        # (0.002 + 0.003 + 0.004 is 0.009000000000000001, in DRUM's collector too)
        assert all(round(measured[key], 3) == measured[key] for key in ("min", "max"))
        assert measured["total"] == pytest.approx(round(measured["total"], 3), rel=0, abs=1e-12)
