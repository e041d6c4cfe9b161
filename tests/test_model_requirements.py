"""What a model needs (issue 28, items 2 and 12): its requirements.txt read against this Python, a missing package
pointed at the line that lists it or the extra that has it, `drum-compat doctor`, and the tools' extras: a served model
needs none of them, and a tool whose extra is missing says which to install, through the real console script."""
from __future__ import annotations

import configparser
import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement

from drum_compat.compat.extras import EXTRA_MODULES, TOOL_EXTRAS
from drum_compat.compat.running import DRUM_COMPAT, run_to_exit
from drum_compat.runtime.requirements import BROUGHT_BY_DRUM, listed, missing_module_hint, unmet
from tests.processes import serve
from tests.test_docs import README, blocks_after

ROOT = Path(__file__).resolve().parent.parent
SETUP = configparser.ConfigParser()
SETUP.read(ROOT / "setup.cfg")
INSTALL_REQUIRES = [Requirement(line) for line in SETUP["options"]["install_requires"].splitlines()
                    if line.strip() and not line.strip().startswith("#")]
EXTRAS = {name: [Requirement(line) for line in value.splitlines() if line.strip() and not line.strip().startswith("#")]
          for name, value in SETUP["options.extras_require"].items()}
IMPORTS_A_MISSING_PACKAGE = "import not_installed_anywhere\n\ndef load_model(code_dir):\n    return 1\n"


def doctor(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([DRUM_COMPAT, "doctor", *args], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**{k: v for k, v in os.environ.items() if not k.startswith("DRUM_")}, **env})


def model(tmp_path: Path, code: str, requirements: str | None = None) -> Path:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "custom.py").write_text(code)
    if requirements is not None:
        (tmp_path / "m" / "requirements.txt").write_text(requirements)
    return tmp_path / "m"


def test_requirements_are_read_as_pip_reads_their_lines(tmp_path):
    code_dir = model(tmp_path, "", "# the model's\n\n--index-url https://example.invalid/simple\n-r other.txt\n"
                                   "pandas>=1.0  # met\nnot-installed-anywhere==1.0\npandas<1.0\n"
                                   "datarobot-drum==1.18.*  # drum-compat stands in for it\n"
                                   "other-os-only>=1; sys_platform == 'nonesuch'\nhttps://example.invalid/x.whl\n")
    assert [(line, str(requirement)) for line, requirement in listed(code_dir / "requirements.txt")] == [
        (5, "pandas>=1.0"), (6, "not-installed-anywhere==1.0"), (7, "pandas<1.0"), (8, "datarobot-drum==1.18.*")]
    import pandas

    assert [need.said() for need in unmet(code_dir)] == [
        "line 6: not-installed-anywhere==1.0: not installed", f"line 7: pandas<1.0: {pandas.__version__} installed"]


@pytest.mark.servers
@pytest.mark.parametrize("stack", ["gunicorn", "fastapi"])
def test_a_missing_package_stops_the_start_pointed_at_the_line_that_lists_it(tmp_path, stack):
    code_dir = model(tmp_path, IMPORTS_A_MISSING_PACKAGE, "pandas>=1.0\nnot_installed_anywhere>=2.1\npandas<1.0\n")
    refused = run_to_exit(code_dir, stack, "--target-type", "regression", timeout=120)
    assert refused.returncode == 3, refused.stderr
    path = code_dir / "requirements.txt"
    # warned at the start, served anyway as DRUM would; then the load fails and its cause is the last word
    assert f"{path} is not met here: line 2: not_installed_anywhere>=2.1: not installed; line 3: pandas<1.0: " in refused.stderr
    assert refused.stderr.rstrip().endswith(
        f"No module named 'not_installed_anywhere'\n{path} lists it (line 2: not_installed_anywhere>=2.1: not installed). "
        "drum-compat server does not install a model's requirements (neither does drum server): install them where it "
        f"runs, with pip install -r {path}")


def test_a_missing_package_that_no_file_lists_or_that_drum_brought(tmp_path):
    try:
        import not_installed_anywhere  # noqa: F401 (its failure is the point)
    except ModuleNotFoundError as exc:
        missing = exc
    code_dir = model(tmp_path, "")
    assert missing_module_hint(missing, code_dir) == (
        f"'not_installed_anywhere' is not installed, and {code_dir} has no requirements.txt: install it where the server "
        f"runs, and list it in {code_dir / 'requirements.txt'} for the model's image")
    (code_dir / "requirements.txt").write_text("pandas\n")
    assert missing_module_hint(missing, code_dir) == (
        f"'not_installed_anywhere' is not installed, and {code_dir / 'requirements.txt'} does not list the package that "
        "provides it")
    brought = ModuleNotFoundError("No module named 'PIL'", name="PIL")
    assert missing_module_hint(brought, code_dir) == (
        "Pillow comes with datarobot-drum itself; with drum-compat, install its 'drum' extra (pip install "
        f"'drum-compat[drum]') or list Pillow in {code_dir / 'requirements.txt'}")
    assert "pip install 'drum-compat[scikit-learn]'" in missing_module_hint(
        ModuleNotFoundError("No module named 'sklearn.base'", name="sklearn.base"), code_dir)


def test_what_drum_brought_is_in_the_drum_extra():
    assert {BROUGHT_BY_DRUM[module] for module in BROUGHT_BY_DRUM} <= {requirement.name for requirement in EXTRAS["drum"]}


def test_the_readme_doctor_example(tmp_path):
    command, expected = blocks_after(README, "readme-example: doctor")[:2]
    finished = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PATH": f"{Path(DRUM_COMPAT).parent}:{os.environ['PATH']}"})
    assert finished.returncode == 0, finished.stderr
    assert re.sub(r"loaded in \d+\.\d\d s", "loaded in 0.01 s", finished.stdout) == expected


def test_doctor_names_each_problem_and_exits_1(tmp_path):
    code_dir = model(tmp_path, IMPORTS_A_MISSING_PACKAGE, "not-installed-anywhere>=2\npandas>=1\n")
    (code_dir / "custom_fastapi.py").write_text("def init_app(app):\n    pass\n")
    finished = doctor("--code-dir", str(code_dir), "--target-type", "multiclass", "--class-labels", "a", "b", "c")
    assert finished.returncode == 1, finished.stdout + finished.stderr
    path = code_dir / "requirements.txt"
    assert finished.stdout.splitlines() == [
        f"drum-compat doctor: {code_dir}",
        f"  requirements: {path}: 2 listed, 1 not met here:",
        "      line 1: not-installed-anywhere>=2: not installed",
        "  target type:  multiclass (from --target-type or TARGET_TYPE)",
        "  class labels: a, b, c",
        "  stacks:       fastapi, uvicorn; DRUM_SERVER_TYPE=gunicorn here: "
        f"{code_dir / 'custom_fastapi.py'} extends the FastAPI app, which the Flask stack does not run. Refusing to start "
        "rather than serve without it; use DRUM_SERVER_TYPE=fastapi (or uvicorn) for this model.",
        "  extension:    custom_fastapi.py: fastapi and uvicorn call its init_app(app); gunicorn and flask refuse to start without it",
        "  load:         fails: Running environment language: Python. Failed loading hooks from "
        f"[{code_dir / 'custom.py'}] : No module named 'not_installed_anywhere'",
        f"      {path} lists it (line 1: not-installed-anywhere>=2: not installed). drum-compat server does not install a "
        f"model's requirements (neither does drum server): install them where it runs, with pip install -r {path}",
        "verdict: 3 problems",
    ]


def test_doctor_without_a_model_directory_is_a_usage_error():
    finished = doctor(CODE_DIR="")
    assert (finished.returncode, finished.stdout) == (2, "")
    assert finished.stderr == "drum-compat: error: --code-dir (or env CODE_DIR) is required: the model directory to examine\n"


def test_doctor_reports_what_the_server_would_refuse(tmp_path):
    finished = doctor("--code-dir", str(ROOT / "examples/models/regression"), "--target-type", "binary")
    assert finished.returncode == 1
    assert finished.stdout.splitlines()[1:] == [
        "  start:        the server would refuse to start:",
        "      drum-compat: error: Target type provided in --target-type argument doesn't match target type from "
        "model-metadata.yaml file. Expected: binary, actual: regression.",
        "verdict: 1 problem",
    ]
    served = doctor("--code-dir", str(ROOT / "examples/models/chat"), "--target-type", "textgeneration")
    assert served.returncode == 1 and "      drum-compat: error: " in served.stdout  # TARGET_NAME: the server's own check
    named = doctor("--code-dir", str(ROOT / "examples/models/chat"), "--target-type", "textgeneration", TARGET_NAME="resultText")
    assert named.returncode == 0, named.stdout
    assert "  target name:  resultText (TARGET_NAME)" in named.stdout.splitlines()


# --- extras ------------------------------------------------------------------------------------------------------

def blocking(tmp_path: Path, modules: set[str]) -> dict[str, str]:
    """An environment in which these modules are not installed, as in a server image: a sitecustomize that marks
    them absent (importing one raises ModuleNotFoundError, find_spec answers None) in every Python started."""
    (tmp_path / "blocked").mkdir(exist_ok=True)
    (tmp_path / "blocked" / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{module!r}] = None\n" for module in sorted(modules)))
    return {**os.environ, "PYTHONPATH": str(tmp_path / "blocked")}


def test_a_served_model_needs_no_extra():
    runtime = {requirement.name for requirement in INSTALL_REQUIRES}
    for extra in ("parity", "ab", "test", "bench", "scikit-learn"):
        assert runtime.isdisjoint(requirement.name for requirement in EXTRAS[extra]), extra
    for extra, modules in EXTRA_MODULES.items():  # compat/extras.py and setup.cfg name the same packages
        assert set(modules) == {requirement.name for requirement in EXTRAS[extra]}, extra
    assert set(TOOL_EXTRAS.values()) <= set(EXTRAS)


@pytest.mark.servers
@pytest.mark.parametrize("stack", ["gunicorn", "fastapi"])
def test_a_model_is_served_without_any_extra_installed(tmp_path, stack):
    modules = {"rich", "h11", "hypothesis", "sklearn", "matplotlib", "pytest", "openai", "datarobot"}
    with serve(ROOT / "examples/models/regression", stack, env={"PYTHONPATH": blocking(tmp_path, modules)["PYTHONPATH"]}) as server:
        answer = httpx.post(f"{server.base_url}/predictions/", content=(ROOT / "examples/data/houses.csv").read_bytes(),
                            headers={"Content-Type": "text/csv"}, timeout=30)
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 3
        assert httpx.get(f"{server.base_url}/docs", timeout=30).status_code == 200


@pytest.mark.parametrize("command, extra", [("parity", "parity"), ("replay", "parity"), ("ab", "ab"), ("ab-status", "ab")])
def test_a_tool_without_its_extra_says_which_to_install_before_it_starts_anything(tmp_path, command, extra):
    arguments = {"parity": ["--code-dir", "examples/models/regression"], "replay": ["--log", "x.jsonl", "--a", "http://127.0.0.1:1", "--b", "http://127.0.0.1:1"],
                 "ab": ["--code-dir", "examples/models/regression", "--address", "127.0.0.1:1"], "ab-status": ["127.0.0.1:1"]}
    finished = subprocess.run([DRUM_COMPAT, command, *arguments[command]], capture_output=True, text=True, timeout=60,
                              cwd=ROOT, env=blocking(tmp_path, {"rich"}))
    assert finished.returncode == 2, finished.stdout + finished.stderr
    assert finished.stderr == (f"drum-compat: error: drum-compat {command} needs the {extra!r} extra, not installed here "
                               f"(no module 'rich'): pip install 'drum-compat[{extra}]' (from a checkout: pip install -e "
                               f"'.[{extra}]')\n")
