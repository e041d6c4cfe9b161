"""Which extension a code dir brings (custom_flask.py, custom_fastapi.py), which stack applies it, and how: loaded as
DRUM loads custom_flask.py; on the FastAPI stack a custom_flask.py is served through a2wsgi, never dropped."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from drum_compat.shared.model.python_model import find_code_file, import_code_file
from drum_compat.shared.server_types import Stack

FLASK_EXTENSION_FILE = "custom_flask.py"
FASTAPI_EXTENSION_FILE = "custom_fastapi.py"
logger = logging.getLogger("drum_compat")


class ExtensionError(RuntimeError):
    """An extension that cannot be applied: the worker refuses to start rather than serve without it."""


def extension_refusal(code_dir: str, stack: Stack) -> str | None:
    """Why this stack must not start for this code dir, if it must not: a custom_fastapi.py has no Flask equivalent."""
    path = find_code_file(code_dir, FASTAPI_EXTENSION_FILE) if stack == Stack.FLASK else None
    if path is None:
        return None
    return (f"{path} extends the FastAPI app, which the Flask stack does not run. Refusing to start rather than "
            "serve without it; use DRUM_SERVER_TYPE=fastapi (or uvicorn) for this model.")


def apply_extension(path: Path, app: Any, framework: str) -> None:
    """Import the file with its folder first on sys.path and call its `init_app(app)`, as DRUM does for custom_flask.py."""
    try:
        module = import_code_file(path)
    except ImportError as exc:
        raise ExtensionError(f"Failed to extend {framework} app from [{path}] : {exc}") from exc
    init_app = getattr(module, "init_app", None)
    if not callable(init_app):
        raise ExtensionError(f"Failed to extend {framework} app from [{path}] : it defines no init_app(app)")
    init_app(app)
    logger.info("%s app extended from %s", framework, path)

