"""Which extra of setup.cfg each tool needs beyond what a served model needs, checked before the tool starts anything,
with the one line that says what to install when it is missing."""
from __future__ import annotations

from importlib.util import find_spec

# the command's extra, and the modules it installs (setup.cfg's [options.extras_require] lists their versions)
TOOL_EXTRAS = {"parity": "parity", "replay": "parity", "ab": "ab", "ab-status": "ab"}
EXTRA_MODULES = {"parity": ("rich", "h11", "hypothesis"), "ab": ("rich",)}


class MissingExtra(RuntimeError):
    pass


def require_extra(command: str) -> None:
    """Raise MissingExtra when a module of the command's extra is not installed (a server image has none of them)."""
    extra = TOOL_EXTRAS.get(command)
    if extra is None:
        return
    missing = [module for module in EXTRA_MODULES[extra] if find_spec(module) is None]
    if missing:
        raise MissingExtra(f"drum-compat {command} needs the {extra!r} extra, not installed here (no module "
                           f"{', '.join(map(repr, missing))}): pip install 'drum-compat[{extra}]' "
                           f"(from a checkout: pip install -e '.[{extra}]')")
