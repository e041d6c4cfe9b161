"""DataRobot's PPS answer format (shared.pps, `--deployment-config`) against DRUM 1.18's own builder, run in its venv on
the same frames: every target type DRUM maps, thresholds and ties, NaN, extra model output and DRUM's own failures, byte
for byte; then through `drum-compat server` on both stacks against DRUM's server with the same config."""
from __future__ import annotations

import json
import os
import subprocess
import textwrap

import numpy as np
import pandas as pd
import pytest

from drum_compat.shared.model.target_types import TargetType
from drum_compat.shared.pps import pps_json
from drum_compat.compat.running import DRUM_COMPAT
from tests.test_against_drum import DRUM, REFERENCE_MISSING, ROOT

DRUM_PYTHON = DRUM.parent / "python"
needs_drum = pytest.mark.skipif(not DRUM.exists() and not os.environ.get("CI"), reason=REFERENCE_MISSING)

RANDOM = "rng = np.random.default_rng(7)\n"
CASES = {
    "regression": ("regression", {"name": "price", "class_mapping": None},
                   RANDOM + "predictions = pd.DataFrame({'Predictions': rng.normal(1e5, 3e4, 20)})"),
    "regression with NaN and big numbers": ("regression", {"name": "y", "class_mapping": None},
                                            "predictions = pd.DataFrame({'Predictions': [float('nan'), 1e300, -0.0, 1/3]})"),
    "anomaly is labelled Anomaly Score": ("anomaly", {"name": "ignored", "class_mapping": None},
                                          RANDOM + "predictions = pd.DataFrame({'Predictions': rng.random(5)})"),
    "binary around its threshold": ("binary", {"name": "churn", "class_mapping": [["yes", 1], ["no", 0]], "prediction_threshold": 0.5},
                                    "predictions = pd.DataFrame({'no': [0.5, 0.49, 0.9, 0.0], 'yes': [0.5, 0.51, 0.1, 1.0]})"),
    "binary with another threshold": ("binary", {"name": "c", "class_mapping": [["b", 0], ["a", 1]], "prediction_threshold": 0.8},
                                      RANDOM + "p = rng.random(10)\npredictions = pd.DataFrame({'b': 1 - p, 'a': p})"),
    "multiclass with ties": ("multiclass", {"name": "k", "class_mapping": [["GALAXY", 0], ["QSO", 1], ["STAR", 2]]},
                             "predictions = pd.DataFrame({'GALAXY': [0.4, 0.2, 1/3], 'QSO': [0.4, 0.5, 1/3], 'STAR': [0.2, 0.3, 1/3]})"),
    "multilabel": ("multilabel", {"name": "tags", "class_mapping": [["x", 0], ["y", 1], ["z", 2]], "prediction_threshold": 0.5},
                   RANDOM + "predictions = pd.DataFrame(rng.random((6, 3)), columns=['x', 'y', 'z'])"),
    "text generation": ("textgeneration", {"name": "answer", "class_mapping": None},
                        "predictions = pd.DataFrame({'answer': ['hello', 'ünïcode \"quoted\"', '']})"),
    "geo point": ("geopoint", {"name": "where", "class_mapping": None}, "predictions = pd.DataFrame({'where': ['POINT (1 2)']})"),
    "vector database": ("vectordatabase", {"name": "docs", "class_mapping": None},
                        "predictions = pd.DataFrame({'docs': ['[{\"id\": 1}]']})"),
    "agentic workflow": ("agenticworkflow", {"name": "out", "class_mapping": None}, "predictions = pd.DataFrame({'out': ['done']})"),
    "extra model output": ("regression", {"name": "y", "class_mapping": None},
                           "predictions = pd.DataFrame({'Predictions': [1.5, 2.5]})\n"
                           "extra = pd.DataFrame({'note': ['a', 'b'], 'score': [0.25, float('nan')]})"),
    "no class_mapping in the config": ("regression", {"name": "y"}, "predictions = pd.DataFrame({'Predictions': [1.0]})"),
    "a binary config without labels": ("binary", {"name": "c", "class_mapping": None, "prediction_threshold": 0.5},
                                       "predictions = pd.DataFrame({'a': [0.5], 'b': [0.5]})"),
    "integers json cannot encode": ("regression", {"name": "y", "class_mapping": None},
                                    "predictions = pd.DataFrame({'Predictions': [1.0]})\nextra = pd.DataFrame({'n': [np.int64(3)]})"),
}

DRUMS_BUILDER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import pandas as pd
    from datarobot_drum.drum.enum import TargetType
    from datarobot_drum.drum.language_predictors.base_language_predictor import PredictResponse
    from datarobot_drum.drum.root_predictors.deployment_config_helpers import build_pps_response_json_str
    answers = []
    for target_type, target, frames in json.loads(sys.stdin.read()):
        made = {"np": np, "pd": pd}
        exec(frames, made)
        try:
            answers.append(build_pps_response_json_str(PredictResponse(made["predictions"], made.get("extra")),
                                                       {"target": target}, TargetType(target_type)))
        except Exception as exc:
            answers.append(f"{type(exc).__name__}: {exc}")
    print(json.dumps(answers))
""")


def ours(target_type: str, target: dict, frames: str) -> str:
    made = {"np": np, "pd": pd}
    exec(frames, made)
    try:
        return pps_json(made["predictions"], made.get("extra"), target, TargetType(target_type)).decode()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


@needs_drum
def test_every_target_type_is_drums_pps_answer_byte_for_byte():
    cases = list(CASES.values())
    drum = subprocess.run([str(DRUM_PYTHON), "-c", DRUMS_BUILDER], input=json.dumps(cases), capture_output=True, text=True,
                          check=True, timeout=120)
    expected = dict(zip(CASES, json.loads(drum.stdout)))
    assert expected["anomaly is labelled Anomaly Score"].count('"label": "Anomaly Score"') == 5  # DRUM's builder ran
    assert {name: ours(*case) for name, case in CASES.items()} == expected


EXAMPLES = ROOT / "examples"
CONFIGS = {
    "binary": ({"target": {"name": "churned", "class_mapping": [["no", 0], ["yes", 1]], "prediction_threshold": 0.3}},
               "customers.csv"),
    "regression": ({"target": {"name": "price", "class_mapping": None}}, "houses.csv"),
}


@pytest.mark.servers
@needs_drum
@pytest.mark.parametrize("model", CONFIGS)
def test_predictions_in_pps_format_are_drums_on_both_stacks(tmp_path, model):
    import httpx

    from tests.processes import serve
    from tests.test_against_drum import running_drum

    config, data = CONFIGS[model]
    (tmp_path / "deployment.json").write_text(json.dumps(config))
    code_dir, csv = EXAMPLES / "models" / model, (EXAMPLES / "data" / data).read_bytes()

    def predictions(url: str) -> list[httpx.Response]:
        return [httpx.post(f"{url}{path}", content=csv, headers={"Content-Type": "text/csv"}, timeout=30)
                for path in ("/predict/", "/predictions/")]

    with running_drum(code_dir, model, DEPLOYMENT_CONFIG=str(tmp_path / "deployment.json")) as url:
        drums = predictions(url)
    assert [answer.status_code for answer in drums] == [200, 200] and drums[0].json()["data"][0]["rowId"] == 0
    for server_type, how in (("gunicorn", "flag"), ("fastapi", "env")):
        args, env = ((("--deployment-config", str(tmp_path / "deployment.json")), {}) if how == "flag" else
                     ((), {"DEPLOYMENT_CONFIG": str(tmp_path / "deployment.json")}))
        with serve(code_dir, server_type, "--target-type", model, *args, env=env) as server:
            answers = predictions(server.base_url)
        assert [(answer.status_code, answer.content) for answer in answers] == [(200, drum.content) for drum in drums]


@pytest.mark.parametrize("content, message", [
    ("{not json", "Failed to parse deployment config json file '{path}'"),
    ('{"targets": {}}', "'target' section not found in deployment config json file {path}"),
])
def test_a_config_drum_cannot_use_stops_the_start_with_its_message(tmp_path, content, message):
    """DRUM's workers fail on it and its gunicorn boots them again forever, never ready; drum-compat says why and exits 1."""
    path = tmp_path / "deployment.json"
    path.write_text(content)
    finished = subprocess.run([DRUM_COMPAT, "server", "--code-dir",
                               str(EXAMPLES / "models" / "regression"), "--address", "127.0.0.1:1", "--deployment-config", str(path)],
                              capture_output=True, text=True, timeout=60)
    assert finished.returncode == 1 and finished.stderr.strip() == f"drum-compat: error: {message.format(path=path)}"
