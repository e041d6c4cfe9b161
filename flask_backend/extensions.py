"""`custom_flask.py` from the code dir, applied exactly as DRUM applies it: imported as
`custom_flask` with its folder on sys.path, then `init_app(app)` after our hooks are registered."""
from __future__ import annotations

import logging

from flask import Flask

from drum_compat.shared.model.python_model import find_code_file, import_code_file

FLASK_EXTENSION_FILE = "custom_flask.py"
logger = logging.getLogger("drum_compat")


class FlaskExtensionError(RuntimeError):
    pass


def load_flask_extensions(app: Flask, code_dir: str) -> bool:
    """Returns whether an extension was applied."""
    path = find_code_file(code_dir, FLASK_EXTENSION_FILE)
    if path is None:
        logger.info("No %s found in %s", FLASK_EXTENSION_FILE, code_dir)
        return False
    try:
        module = import_code_file(path)
    except ImportError as exc:
        raise FlaskExtensionError(f"Failed to extend Flask app from [{path}] : {exc}") from exc
    module.init_app(app)
    logger.info("Flask app extended from %s", path)
    return True
