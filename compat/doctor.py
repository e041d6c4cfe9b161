"""`drum-compat doctor`: what a model directory needs before it is served, found as `server` would find it: the start's
checks, requirements.txt against this Python, the target type and labels, the stacks and extensions, and the load."""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, Mapping

from drum_compat.compat.checks import START_ERRORS, refused, start_checks
from drum_compat.runtime.bootstrap import model_config
from drum_compat.runtime.extensions import FASTAPI_EXTENSION_FILE, FLASK_EXTENSION_FILE, extension_refusal
from drum_compat.runtime.requirements import listed, missing_module_hint, requirements_file, unmet
from drum_compat.shared.model.python_model import find_code_file, import_code_file
from drum_compat.shared.server_types import SERVER_TYPES

READY, PROBLEMS, USAGE = 0, 1, 2
# doctor listens nowhere; the server's own checks still want an address to judge
NO_ADDRESS = "127.0.0.1:8080"
EXTENSION_USE = {
    FLASK_EXTENSION_FILE: "gunicorn and flask call its init_app(app); fastapi and uvicorn serve its routes through a2wsgi",
    FASTAPI_EXTENSION_FILE: "fastapi and uvicorn call its init_app(app); gunicorn and flask refuse to start without it",
}


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Exit 0 when the model is ready to serve here, 1 with each problem said."""
    if not args.code_dir:
        print("drum-compat: error: --code-dir (or env CODE_DIR) is required: the model directory to examine", file=sys.stderr)
        return USAGE
    problems: list[str] = []

    def show(topic: str, text: str) -> None:
        print(f"  {topic + ':':<14}{text}")

    args.address = args.address or NO_ADDRESS
    args.verbose = False
    try:
        options, parameters = start_checks(args, environ)
    except START_ERRORS as exc:
        lines, _, _ = refused(exc)
        print(f"drum-compat doctor: {args.code_dir}")
        show("start", "the server would refuse to start:")
        for line in lines:
            print(f"      {line}")
        print("verdict: 1 problem")
        return PROBLEMS
    code_dir = options.code_dir
    print(f"drum-compat doctor: {args.code_dir}")

    path = requirements_file(code_dir)
    if path is None:
        show("requirements", "no requirements.txt (what the model imports must be installed where it is served)")
    else:
        missing = unmet(code_dir)
        show("requirements", f"{path}: {len(listed(path))} listed, " + (f"{len(missing)} not met here:" if missing else "all met"))
        for need in missing:
            print(f"      {need.said()}")
        problems += [f"{path} {need.said()}" for need in missing]

    config = model_config(options)
    source = "--target-type or TARGET_TYPE" if options.target_type else "model-metadata.yaml"
    show("target type", f"{config.target_type.value} (from {source})")
    if config.class_ordering:
        show("class labels", ", ".join(config.class_ordering))
    if config.target_name:
        show("target name", f"{config.target_name} (TARGET_NAME)")

    stacks = [name for name, kind in SERVER_TYPES.items() if extension_refusal(code_dir, kind.stack) is None]
    chosen = options.server_type
    show("stacks", ", ".join(stacks) + f"; DRUM_SERVER_TYPE={chosen} here"
         + ("" if chosen in stacks else f": {extension_refusal(code_dir, SERVER_TYPES[chosen].stack)}"))
    if chosen not in stacks:
        problems.append(f"DRUM_SERVER_TYPE={chosen} cannot serve it")
    for name, use in EXTENSION_USE.items():
        extension = find_code_file(code_dir, name)
        if extension is None:
            continue
        try:
            import_code_file(extension)
        except Exception as exc:
            hint = missing_module_hint(exc, code_dir)
            show("extension", f"{name}: does not import: {exc}" + (f"\n      {hint}" if hint else ""))
            problems.append(f"{name} does not import")
        else:
            show("extension", f"{name}: {use}")

    os.environ.update(parameters)  # the model reads its runtime parameters as it would served
    problems += loaded(options, config, show)
    print("verdict: ready to serve" if not problems else f"verdict: {len(problems)} problem{'s' * (len(problems) > 1)}")
    return PROBLEMS if problems else READY


def loaded(options, config, show: Callable[[str, str], None]) -> list[str]:
    """Load the model as a worker does (the DataRobot client connected first, if asked); the problem, if it fails."""
    from drum_compat.runtime.datarobot_api import ApiAccess, connect
    from drum_compat.shared.model.python_model import PythonModel

    started = time.monotonic()
    try:
        if options.api_access:
            connect(ApiAccess(**options.api_access))
        model = PythonModel.load(config)
    except Exception as exc:
        cause = " ".join(str(exc).split())
        hint = missing_module_hint(exc, options.code_dir)
        show("load", f"fails: {cause}" + (f"\n      {hint}" if hint else ""))
        return ["the model does not load"]
    if model.task is not None:
        how = f"CustomTask {type(model.task).__name__}"
    elif model.hooks:
        how = "hooks " + ", ".join(sorted(model.hooks))
    else:
        how = "no hooks"
    if model.predictor_name:
        how += f", artifact scored by {model.predictor_name}"
    show("load", f"loaded in {time.monotonic() - started:.2f} s ({how})")
    return []
