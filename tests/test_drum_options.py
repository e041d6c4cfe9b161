"""DRUM 1.18's whole `drum server` command line and its variables (ArgumentOptionsEnvVars), read from DRUM's own parser
in its venv: each is accepted with DRUM's effect, or refused at start with one line naming it and why; none is ignored
without a word, and none meets argparse's generic "unrecognized arguments"."""
from __future__ import annotations

import json
import os
import subprocess
import textwrap

import pytest

from drum_compat.compat import checks, cli, launch
from drum_compat.runtime.options import ACCEPTED_OPTIONS, SERVER_OPTIONS
from drum_compat.runtime.refusals import UNSERVED_OPTIONS
from tests.test_against_drum import DRUM, REFERENCE_MISSING, ROOT

DRUM_PYTHON = DRUM.parent / "python"
MODEL = ROOT / "examples" / "models" / "regression"
needs_drum = pytest.mark.skipif(not DRUM.exists() and not os.environ.get("CI"), reason=REFERENCE_MISSING)

DRUMS_SERVER_OPTIONS = textwrap.dedent("""
    import json
    from datarobot_drum.drum.args_parser import CMRunnerArgsRegistry
    from datarobot_drum.drum.enum import ArgumentOptionsEnvVars
    CMRunnerArgsRegistry.get_arg_parser()
    server = CMRunnerArgsRegistry._parsers["server"]
    options = [{"strings": action.option_strings, "takes_value": action.nargs != 0, "choices": action.choices}
               for action in server._actions if action.option_strings and action.dest not in ("help", "version")]
    variables = {"value": ArgumentOptionsEnvVars.VALUE_VARS, "bool": ArgumentOptionsEnvVars.BOOL_VARS,
                 "server": [name for name in ArgumentOptionsEnvVars.VALUE_VARS + ArgumentOptionsEnvVars.BOOL_VARS
                            if any(ArgumentOptionsEnvVars.to_arg_option(name) in action.option_strings for action in server._actions)]}
    print(json.dumps({"options": options, "variables": variables}))
""")
REFUSED = {option.flag for option in UNSERVED_OPTIONS}
# a value each option takes here; files must exist
VALUES = {"--address": "127.0.0.1:1", "--target-type": "regression", "--class-labels": "a", "--logging-level": "info",
          "--max-workers": "2", "--language": "python", "--deployment-config": str(MODEL / "custom.py"),
          "--runtime-params-file": str(MODEL / "custom.py"), "--lazy-loading-file": str(MODEL / "custom.py"),
          "--class-labels-file": str(MODEL / "custom.py"), "--gpu-predictor": "triton"}


@pytest.fixture(scope="module")
def drums():
    if not DRUM.exists():
        pytest.fail(REFERENCE_MISSING)
    finished = subprocess.run([str(DRUM_PYTHON), "-c", DRUMS_SERVER_OPTIONS], capture_output=True, text=True, check=True,
                              timeout=120, env={name: value for name, value in os.environ.items() if not name.startswith("DRUM_")})
    return json.loads(finished.stdout.strip().splitlines()[-1])


def parse(argv: list[str], environ: dict):
    return cli.build_parser(environ).parse_args(["server", "--code-dir", str(MODEL), *argv])


@needs_drum
def test_every_option_of_drum_server_is_accepted_or_refused_by_name(drums):
    ours = {flag for option in (*SERVER_OPTIONS, *ACCEPTED_OPTIONS) for flag in (option.flag, *option.aliases)}
    found = []
    for option in drums["options"]:
        flag = max(option["strings"], key=len)
        value = VALUES.get(flag, (option["choices"] or ["x"])[0]) if option["takes_value"] else None
        environ = {}
        args = parse([flag, *([value] if value is not None else [])], environ)
        refusals = cli.unserved(args, environ)
        if flag in REFUSED:
            if not any(line.startswith(f"{flag}: DRUM's {flag} ") for line in refusals):
                found.append((flag, "not refused", refusals))
        elif not set(option["strings"]) <= ours or refusals:
            found.append((flag, "neither served nor refused", refusals))
    assert found == []
    assert len(drums["options"]) > 35


@needs_drum
def test_every_drum_variable_is_applied_or_refused_by_name(drums, monkeypatch):
    found = []
    env_of = {option.env: option for option in (*SERVER_OPTIONS, *ACCEPTED_OPTIONS) if option.env}
    refused_env = {name: option.flag for option in UNSERVED_OPTIONS for name in option.env}
    for name in drums["variables"]["value"] + drums["variables"]["bool"]:
        value = "true" if name in drums["variables"]["bool"] else VALUES.get(f"--{name.lower().replace('_', '-')}", "x")
        if name in ("CODE_DIR",):
            continue  # given on the command line here
        if name not in drums["variables"]["server"]:
            # DRUM's server ignores it too (SKIP_PREDICT is `drum fit`'s): not an option of `drum server`
            assert name not in env_of and name not in refused_env, name
            continue
        if name in refused_env:
            environ = {name: value}
            refusals = cli.unserved(parse([], environ), environ)
            if not any(line.startswith(f"{name}={value}: DRUM's {refused_env[name]} ") for line in refusals):
                found.append((name, "not refused", refusals))
        elif name not in env_of:
            found.append((name, "neither applied nor refused"))
        else:
            args = parse([], {name: value})
            if getattr(args, env_of[name].dest) in (None, False, env_of[name].default):
                found.append((name, "not applied"))
    assert found == []


@pytest.mark.parametrize("environ, refused", [
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),  # served (tests/test_telemetry.py)
    ({"ALLOW_DR_API_ACCESS_FOR_ALL_CUSTOM_MODELS": "yes"}, False),  # served (tests/test_datarobot_api.py)
    ({"LAZY_LOADING_FILE": "/x.json"}, True),
])
def test_what_is_served_is_never_refused(environ, refused):
    assert bool(cli.unserved(parse([], environ), environ)) is refused


def started(argv: list[str], environ: dict, monkeypatch, capsys) -> tuple[int, list, str, str]:
    launched = []
    monkeypatch.setattr(launch, "launch", launched.append)
    status = cli.main(["server", "--code-dir", str(MODEL), "--address", "127.0.0.1:1", *argv], environ)
    out, err = capsys.readouterr()
    return status, launched, out, err


@needs_drum
@pytest.mark.parametrize("argv, environ", [
    (["--production"], {}), (["--production", "--max-workers", "2"], {}), ([], {"PRODUCTION": "true"}),
    (["--production"], {"MAX_WORKERS": "3"}),
    (["--production"], {"MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": '{"type": "numeric", "payload": 2}'}),
])
def test_production_without_workers_exits_1_as_drum_does(argv, environ, monkeypatch, capsys):
    drum = subprocess.run([str(DRUM), "server", "--code-dir", str(MODEL), "--address", "127.0.0.1:1", "--target-type",
                           "regression", "--logging-level", "critical", *argv, "--docker", "not-run"],
                          capture_output=True, text=True, timeout=120,
                          env={**{k: v for k, v in os.environ.items() if not k.startswith(("DRUM_", "MLOPS_"))}, **environ})
    drum_refused = drum.returncode == 1 and checks.PRODUCTION_NEEDS_WORKERS in drum.stdout
    status, launched, out, _ = started(["--target-type", "regression", *argv], environ, monkeypatch, capsys)
    assert (status == 1 and out.strip() == checks.PRODUCTION_NEEDS_WORKERS) is drum_refused
    assert bool(launched) is not drum_refused


def test_verbose_prints_drums_header_and_the_short_code_dir_flag_works(monkeypatch, capsys):
    launched = []
    monkeypatch.setattr(launch, "launch", launched.append)
    status = cli.main(["server", "-cd", str(MODEL), "--address", "127.0.0.1:1", "--verbose", "--language", "python",
                       "--show-stacktrace", "--deployment-id", "d", "--model-id", "m"], {})
    assert status == 0 and launched[0].code_dir == str(MODEL)
    assert capsys.readouterr().out.strip() == checks.SERVER_MODE_HEADER


@pytest.mark.parametrize("argv, line", [
    (["--language", "r"], "--language r: drum-compat serves Python models only"),
    (["--gpu-predictor", "nim"], "--gpu-predictor: DRUM's --gpu-predictor serves a GPU predictor"),
])
def test_what_drum_compat_cannot_run_is_refused_with_one_line(argv, line, monkeypatch, capsys):
    status, launched, _, err = started(argv, {}, monkeypatch, capsys)
    assert (status, launched) == (2, []) and err.startswith(f"drum-compat: error: {line}")


def test_config_lists_every_drum_option_with_its_source_a_hidden_token_and_what_would_be_refused():
    from drum_compat.compat.running import DRUM_COMPAT

    environ = {**{k: v for k, v in os.environ.items() if not k.startswith(("DRUM_", "MLOPS_"))},
               "API_TOKEN": "the-token", "MONITOR": "true", "DEPLOYMENT_ID": "d1", "TARGET_TYPE": "binary"}
    shown = subprocess.run([DRUM_COMPAT, "config", "--json"], env=environ, capture_output=True, text=True, check=True).stdout
    report = json.loads(shown)
    rows = {row["option"]: row for row in report["drum_options"]}
    assert set(rows) == {option.flag for option in (*SERVER_OPTIONS, *ACCEPTED_OPTIONS, *UNSERVED_OPTIONS)}
    assert (rows["--target-type"]["value"], rows["--target-type"]["source"]) == ("binary", "TARGET_TYPE")
    assert rows["--api-token"]["value"] != "the-token" and "the-token" not in shown
    assert [flag for flag, row in rows.items() if row["refused"]] == []
    assert (rows["--monitor"]["value"], rows["--monitor"]["source"]) == (True, "MONITOR")
    assert ("the server would stop at start: Error: MLOps Monitoring requires all monitoring options to be present. Note: "
            "The following MLOps monitoring option(s) is/are missing: --model-id --monitor-settings These options can also "
            "be obtained via environment variables") in report["warnings"]
