"""`drum-compat parity` as users run it: real gunicorn and uvicorn servers on loopback for every example model
(the project's own parity gate), its reports, its exit statuses, `--against` a running server, `--fuzz`."""
from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from drum_compat.compat.running import DRUM_COMPAT
from tests.processes import serve
from tests.models import write_model

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE_MODELS = sorted(path.name for path in (EXAMPLES / "models").iterdir() if path.is_dir())
EXAMPLE_DATA = {"regression": ["houses.csv"], "binary": ["customers.csv"], "unstructured": ["houses.csv"], "cpu_bound": [],
                "chat": [], "parameters": ["houses.csv"]}
EXAMPLE_ENV = {"chat": {"TARGET_NAME": "resultText"}}  # a text-generation model names its target
# DRUM's options parity hands both servers
EXAMPLE_ARGS = {"parameters": ["--runtime-params-file", str(EXAMPLES / "models" / "parameters" / "values.yaml")]}
# answers that tell the two stacks apart: the server process's DRUM_SERVER_TYPE reaches the model
TELLS_STACKS_APART = '''
import os
import pandas as pd

def load_model(code_dir):
    return 1.0 if os.environ["DRUM_SERVER_TYPE"] == "gunicorn" else 2.0

def score(data, model, **kwargs):
    return pd.DataFrame({"Predictions": [model] * len(data)})
'''

pytestmark = pytest.mark.servers


def parity(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([DRUM_COMPAT, "parity", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env})


@pytest.mark.parametrize("model", EXAMPLE_MODELS)
def test_every_example_model_answers_alike_on_both_stacks(model, tmp_path):
    data = [str(EXAMPLES / "data" / name) for name in EXAMPLE_DATA[model]]
    finished = parity("--code-dir", str(EXAMPLES / "models" / model), *(["--data", *data] if data else []), *EXAMPLE_ARGS.get(model, []),
                      "--junit", str(tmp_path / "parity.xml"), "--json", str(tmp_path / "parity.json"), **EXAMPLE_ENV.get(model, {}))
    report = json.loads((tmp_path / "parity.json").read_text())
    assert finished.returncode == 0, [case for case in report["cases"] if not case["alike"]][:5]
    assert report["summary"] == {"cases": len(report["cases"]), "different": 0} and report["summary"]["cases"] > 250
    groups = {case["group"] for case in report["cases"]}
    assert groups == ({"routes", "payloads", "protocol", "data"} if data else {"routes", "payloads", "protocol"})
    suite = ElementTree.parse(tmp_path / "parity.xml").getroot().find("testsuite")
    assert (int(suite.get("tests")), int(suite.get("failures"))) == (len(report["cases"]), 0)
    assert "│ all" in finished.stdout  # the table


# the stacks part on the last of many rows only: what differs is past any cut of the body
APART_IN_THE_LAST_ROW = '''
import os
import pandas as pd

def load_model(code_dir):
    return "no artifact"

def score(data, model, **kwargs):
    last = 1.0 if os.environ["DRUM_SERVER_TYPE"] == "gunicorn" else 2.0
    return pd.DataFrame({"Predictions": [0.5] * (len(data) - 1) + [last]})
'''


def test_a_difference_exits_1_and_is_named_in_every_report_whole_with_each_side_named(tmp_path):
    """Issue 28, item 3: both bodies whole in the files, each difference as its two values, and on the terminal each
    side named by its stack, from where the two bodies part, on lines never folded at the console's width."""
    code_dir = tmp_path / "apart"
    code_dir.mkdir()
    (code_dir / "custom.py").write_text(APART_IN_THE_LAST_ROW)
    rows = "x\\n" + "1\\n" * 200
    (tmp_path / "cases.yaml").write_text(f"- name: many rows\n  path: /predict/\n  headers: {{Content-Type: text/csv}}\n  body: \"{rows}\"\n")
    finished = parity("--code-dir", str(code_dir), "--target-type", "regression", "--cases", str(tmp_path / "cases.yaml"),
                      "--junit", str(tmp_path / "parity.xml"), "--json", str(tmp_path / "parity.json"))
    assert finished.returncode == 1, finished.stdout + finished.stderr
    report = json.loads((tmp_path / "parity.json").read_text())
    assert (report["a"], report["b"]) == ("gunicorn", "fastapi")
    mine = next(case for case in report["cases"] if case["group"] == "user")
    assert mine["name"] == "many rows" and not mine["alike"] and mine["status"] == [200, 200]
    assert [difference["part"] for difference in mine["differences"]] == ["body"]
    bodies = mine["differences"][0]
    assert json.loads(bodies["a"]) == {"predictions": [0.5] * 199 + [1.0]}
    assert json.loads(bodies["b"]) == {"predictions": [0.5] * 199 + [2.0]}

    lines = finished.stdout.splitlines()
    assert f"(regression model in {code_dir})" in lines[0]  # not folded at 80 columns either
    at = lines.index("different user: many rows (POST /predict/)")
    assert lines[at + 1].startswith(f"    body: differs from character {len(bodies['a']) - 5} ")
    sides = {line.split(":")[0].strip(): line.split(":", 1)[1] for line in lines[at + 2:at + 4]}
    assert sides["gunicorn"].endswith("0.5,0.5,1.0]}") and sides["fastapi"].endswith("0.5,0.5,2.0]}")
    assert sides["gunicorn"].strip().startswith("…") and len(lines[at + 2]) > 120  # one line, wider than the console's 80

    suite = ElementTree.parse(tmp_path / "parity.xml").getroot()
    assert len(suite.findall(".//failure")) == report["summary"]["different"] > 1
    mine_failed = suite.find(".//testcase[@name='many rows']/failure")
    assert f"body: gunicorn {bodies['a']} | fastapi {bodies['b']}" in mine_failed.text
    assert mine_failed.get("message") == lines[at + 1].strip().split(", shown from")[0]


def test_fuzzing_finds_the_difference_and_shrinks_it(tmp_path):
    code_dir = tmp_path / "apart"
    code_dir.mkdir()
    (code_dir / "custom.py").write_text(TELLS_STACKS_APART)
    finished = parity("--code-dir", str(code_dir), "--target-type", "regression", "--fuzz", "300", "--fuzz-seed", "1",
                      "--json", str(tmp_path / "r.json"))
    assert finished.returncode == 1
    fuzzed = [case for case in json.loads((tmp_path / "r.json").read_text())["cases"] if case["group"] == "fuzz"]
    failed = [case for case in fuzzed if not case["alike"]]
    assert len(failed) == 1 and failed[0]["status"] == [200, 200]  # shrunk to a request both stacks score
    assert failed[0]["method"] == "POST"


def test_a_model_that_cannot_start_exits_2(tmp_path):
    code_dir, options = write_model(tmp_path, "broken")
    finished = parity("--code-dir", str(code_dir), "--target-type", "regression", "--startup-timeout", "60")
    assert finished.returncode == 2
    assert "the model did not start on gunicorn" in finished.stderr and "Traceback" in finished.stderr


@pytest.mark.parametrize("files, said", [
    ({"cases.yaml": "- method: GET\n"}, "cases.yaml: case 1 needs at least a path"),
    ({"cases.yaml": "- path: /predict/\n  body_file: nope.csv\n"}, "case 1's body_file"),
    ({}, "--data"),  # a --data file that is not there (the issue: both servers started, then a traceback and exit 1)
], ids=["a case without a path", "a body_file not there", "a --data file not there"])
def test_an_unusable_input_file_exits_2_in_one_line_before_any_server_starts(tmp_path, files, said):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    inputs = ["--cases", str(tmp_path / "cases.yaml")] if files else ["--data", str(tmp_path / "nope.csv")]
    # tmp_path holds no model: a server started would fail to load it, with another message
    finished = parity("--code-dir", str(tmp_path), *inputs, timeout=30)
    assert finished.returncode == 2 and said in finished.stderr, finished.stderr
    assert len(finished.stderr.strip().splitlines()) == 1 and "Traceback" not in finished.stderr


def test_against_a_running_deployment(tmp_path):
    model = EXAMPLES / "models" / "regression"
    with serve(model, "gunicorn", env={"DRUM_GUNICORN_WORKER_CLASS": "sync"}) as deployment:
        finished = parity("--code-dir", str(model), "--against", deployment.base_url, "--stack", "fastapi",
                          "--data", str(EXAMPLES / "data" / "houses.csv"), "--json", str(tmp_path / "r.json"))
    report = json.loads((tmp_path / "r.json").read_text())
    assert finished.returncode == 0, [case for case in report["cases"] if not case["alike"]][:5]
    assert (report["a"], report["b"]) == (deployment.base_url, "fastapi")


def test_the_users_url_prefix_is_where_every_case_goes(tmp_path):
    finished = parity("--code-dir", str(EXAMPLES / "models" / "unstructured"), "--json", str(tmp_path / "r.json"), URL_PREFIX="/pfx")
    report = json.loads((tmp_path / "r.json").read_text())
    assert finished.returncode == 0, [case for case in report["cases"] if not case["alike"]][:5]
    payloads = [case for case in report["cases"] if case["group"] == "payloads"]
    unstructured = ("/pfx/predictUnstructured/", "/pfx/predictionsUnstructured/")
    assert payloads and all(case["path"].startswith((*unstructured, "/pfx/chat/", "/pfx/v1/chat/")) for case in payloads)
    assert any(case["path"].startswith(unstructured) for case in payloads)  # the target type was read under the prefix
    assert any(case["status"] == [200, 200] for case in payloads)


def test_a_monitored_deployment_is_compared_monitored_on_both_stacks(tmp_path):
    from tests.test_monitoring import monitored, spooled

    settings = monitored(tmp_path / "spool")
    finished = parity("--code-dir", str(EXAMPLES / "models" / "regression"), "--data", str(EXAMPLES / "data" / "houses.csv"),
                      "--monitor", "--deployment-id", settings["DEPLOYMENT_ID"], "--model-id", settings["MODEL_ID"],
                      "--monitor-settings", settings["MONITOR_SETTINGS"], "--json", str(tmp_path / "r.json"))
    report = json.loads((tmp_path / "r.json").read_text())
    assert finished.returncode == 0, [case for case in report["cases"] if not case["alike"]][:5]
    kinds = [record["header"]["dataType"] for record in spooled(tmp_path / "spool")]
    # both servers reported every prediction case (one spool: the two stacks' records interleave)
    assert kinds.count("DEPLOYMENT_STATS") == kinds.count("PREDICTIONS_DATA") > 0
    assert kinds.count("DEPLOYMENT_STATS") % 2 == 0
