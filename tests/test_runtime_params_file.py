"""DRUM's runtime-parameter values file (--runtime-params-file, RUNTIME_PARAMS_FILE) against DRUM 1.18's own loader, run
in its venv on the same files: the same variables, byte for byte, or the same message; then through `drum-compat server`
on both stacks, where model code reads them as DRUM's would and a bad file stops the start with DRUM's message and status."""
from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import httpx
import pytest
import yaml

from drum_compat.runtime.params_file import RuntimeParametersFileError, runtime_parameter_values
from tests.test_against_drum import DRUM, REFERENCE_MISSING

DRUM_PYTHON = DRUM.parent / "python"
DEFINITIONS = [
    {"fieldName": "NUM", "type": "numeric", "defaultValue": 3, "minValue": 0, "maxValue": 10},
    {"fieldName": "RATIO", "type": "numeric"},
    {"fieldName": "S", "type": "string", "defaultValue": "default text"},
    {"fieldName": "B", "type": "boolean", "defaultValue": True},
    {"fieldName": "C", "type": "credential", "description": "ignored, as every key DRUM does not know"},
    {"fieldName": "D", "type": "deployment"},
]
# (definitions or None for no model-metadata.yaml, the values file's text or None for no file)
CASES = {
    "every type, defaults and unknown keys": (DEFINITIONS, "NUM: 4\nRATIO: 0.25\nS: hi\nC:\n  credentialType: basic\n  user: u\nEXTRA: 1\n"),
    "nothing given: defaults and nulls": (DEFINITIONS, "UNRELATED: 1\n"),
    "a number as text": (DEFINITIONS, "NUM: '7'\n"),
    "a number above its maximum": (DEFINITIONS, "NUM: 12\n"),
    "a number below its minimum": (DEFINITIONS, "NUM: -1\n"),
    "not a number": (DEFINITIONS, "RATIO: many\n"),
    "a blank string": (DEFINITIONS, "S: ''\n"),
    "a string that is a number": (DEFINITIONS, "S: 5\n"),
    "a boolean as text": (DEFINITIONS, "B: 'yes'\n"),
    "a credential without its type": (DEFINITIONS, "C:\n  user: u\n"),
    "a credential that is text": (DEFINITIONS, "C: secret\n"),
    "an empty values file": (DEFINITIONS, ""),
    "values that are not YAML": (DEFINITIONS, "NUM: [1\n"),
    "no values file": (DEFINITIONS, None),
    "no model-metadata.yaml": (None, "NUM: 4\n"),
    "no definitions": ([], "NUM: 4\n"),
    "an unknown type": ([{"fieldName": "X", "type": "date"}], "X: 1\n"),
    "a definition without its name": ([{"type": "string"}], "X: 1\n"),
    "a duplicated definition": ([{"fieldName": "X", "type": "string"}, {"fieldName": "X", "type": "string"}], "X: a\n"),
}

DRUM_LOADER = textwrap.dedent("""
    import json, os, sys
    from datarobot_drum.runtime_parameters.runtime_parameters import RuntimeParametersLoader
    before = set(os.environ)
    try:
        RuntimeParametersLoader(sys.argv[1], sys.argv[2]).setup_environment_variables()
    except Exception as exc:
        print(json.dumps({"error": str(exc)}))
    else:
        print(json.dumps({"variables": {key: os.environ[key] for key in set(os.environ) - before}}))
""")


def write_case(folder: Path, definitions, values) -> tuple[str, str]:
    code_dir = folder / "model"
    code_dir.mkdir()
    if definitions is not None:
        metadata = {"name": "params", "type": "inference", "targetType": "regression"}
        if definitions:
            metadata["runtimeParameterDefinitions"] = definitions
        (code_dir / "model-metadata.yaml").write_text(yaml.safe_dump(metadata))
    values_path = folder / "values.yaml"
    if values is not None:
        values_path.write_text(values)
    return str(values_path), str(code_dir)


def ours(values_path: str, code_dir: str) -> dict:
    try:
        return {"variables": runtime_parameter_values(values_path, code_dir)}
    except RuntimeParametersFileError as exc:
        return {"error": str(exc)}


@pytest.mark.skipif(not DRUM.exists() and not os.environ.get("CI"), reason=REFERENCE_MISSING)
@pytest.mark.parametrize("case", CASES)
def test_the_same_variables_or_the_same_message_as_drums_loader(tmp_path, case):
    values_path, code_dir = write_case(tmp_path, *CASES[case])
    environ = {name: value for name, value in os.environ.items() if not name.startswith("MLOPS_RUNTIME_PARAM_")}
    drum = subprocess.run([str(DRUM_PYTHON), "-c", DRUM_LOADER, values_path, code_dir], capture_output=True, text=True,
                          env=environ, check=True, timeout=120)
    assert ours(values_path, code_dir) == json.loads(drum.stdout)


# an unstructured model that answers what model code reads of its runtime parameters
READER = """
    import json
    import os

    from datarobot_drum import RuntimeParameters

    def load_model(code_dir):
        return "reader"

    def score_unstructured(model, data, **kwargs):
        names = ["NUM", "RATIO", "S", "B", "C", "D", "UNDECLARED"]
        read = {name: RuntimeParameters.get(name) if RuntimeParameters.has(name) else "(not set)" for name in names}
        raw = {name: os.environ.get("MLOPS_RUNTIME_PARAM_" + name) for name in names}
        return json.dumps({"read": read, "types": {name: type(value).__name__ for name, value in read.items()}, "raw": raw})
"""
VALUES = "NUM: 4\nRATIO: 0.25\nC:\n  credentialType: basic\n  user: u\nUNDECLARED: 1\n"


def reader_model(folder: Path, values: str = VALUES) -> tuple[Path, Path]:
    code_dir = folder / "reader"
    code_dir.mkdir()
    (code_dir / "custom.py").write_text(textwrap.dedent(READER))
    (code_dir / "model-metadata.yaml").write_text(yaml.safe_dump(
        {"name": "reader", "type": "inference", "targetType": "unstructured", "runtimeParameterDefinitions": DEFINITIONS}))
    values_path = folder / "values.yaml"
    values_path.write_text(values)
    return code_dir, values_path


@pytest.mark.servers
@pytest.mark.skipif(not DRUM.exists() and not os.environ.get("CI"), reason=REFERENCE_MISSING)
def test_model_code_reads_what_it_reads_under_drum_on_both_stacks(tmp_path):
    from tests.processes import serve
    from tests.test_against_drum import running_drum

    code_dir, values_path = reader_model(tmp_path)
    with running_drum(code_dir, "unstructured", RUNTIME_PARAMS_FILE=str(values_path)) as url:
        drum = httpx.post(f"{url}/predictUnstructured/", content=b"x", timeout=30)
    assert drum.status_code == 200 and drum.json()["read"]["NUM"] == 4, drum.text
    for server_type, how in (("gunicorn", "flag"), ("fastapi", "env")):
        args, env = (("--runtime-params-file", str(values_path)), {}) if how == "flag" else ((), {"RUNTIME_PARAMS_FILE": str(values_path)})
        with serve(code_dir, server_type, "--target-type", "unstructured", *args, env=env) as server:
            ours = httpx.post(f"{server.base_url}/predictUnstructured/", content=b"x", timeout=30)
        assert (ours.status_code, ours.json()) == (200, drum.json()), server_type


@pytest.mark.servers
@pytest.mark.skipif(not DRUM.exists() and not os.environ.get("CI"), reason=REFERENCE_MISSING)
@pytest.mark.parametrize("values, status", [("NUM: 12\n", 1), (None, 2)])
def test_a_bad_values_file_stops_the_start_with_drums_message_and_status(tmp_path, values, status):
    from drum_compat.compat.running import free_port, run_to_exit

    code_dir, values_path = reader_model(tmp_path, values or "")
    if values is None:
        values_path.unlink()
    environ = {name: value for name, value in os.environ.items() if not name.startswith(("DRUM_", "MLOPS_RUNTIME_PARAM_"))}
    drum = subprocess.run([str(DRUM), "server", "--code-dir", str(code_dir), "--address", f"127.0.0.1:{free_port()}",
                           "--target-type", "unstructured", "--runtime-params-file", str(values_path)],
                          capture_output=True, text=True, env=environ, timeout=120)
    drums_line = drum.stderr.strip().splitlines()[-1]
    message = drums_line.split(": ", 1)[1] if values else drums_line.split("error: ", 1)[1]
    assert drum.returncode == status and message
    for server_type in ("gunicorn", "fastapi"):
        ours = run_to_exit(code_dir, server_type, "--target-type", "unstructured", "--runtime-params-file", str(values_path))
        assert ours.returncode == status, (server_type, ours.stderr)
        assert message in ours.stderr, (server_type, ours.stderr, message)


def test_the_files_parameters_reach_the_settings_the_workers_and_model_code(tmp_path, monkeypatch):
    """As under DRUM, whose server type, worker count and gunicorn settings are read once the file is loaded."""
    from drum_compat.compat import cli, launch

    code_dir, values_path = reader_model(tmp_path, "CUSTOM_MODEL_WORKERS: 3\nDRUM_CLIENT_REQUEST_TIMEOUT: 45\nNUM: 5\n")
    metadata = yaml.safe_load((code_dir / "model-metadata.yaml").read_text())
    metadata["runtimeParameterDefinitions"] += [{"fieldName": "CUSTOM_MODEL_WORKERS", "type": "numeric"},
                                                {"fieldName": "DRUM_CLIENT_REQUEST_TIMEOUT", "type": "numeric"}]
    (code_dir / "model-metadata.yaml").write_text(yaml.safe_dump(metadata))
    launched, environ = [], {"PATH": os.environ.get("PATH", "")}
    monkeypatch.setattr(launch, "launch", launched.append)
    monkeypatch.setattr(os, "environ", dict(environ))
    assert cli.main(["server", "--code-dir", str(code_dir), "--address", "127.0.0.1:1", "--target-type", "unstructured",
                     "--runtime-params-file", str(values_path)], environ) == 0
    (options,) = launched
    assert options.workers == 3 and options.server_settings["workers"] == 3
    assert options.core_settings["request_timeout"] == 45
    assert json.loads(os.environ["MLOPS_RUNTIME_PARAM_NUM"]) == {"payload": 5, "type": "numeric"}
