"""A model directory's requirements.txt, read as pip reads its lines, against what this Python has installed: what is
missing or of another version, each with its line, so that a model that cannot import a package is pointed at the file."""
from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

REQUIREMENTS_FILE = "requirements.txt"  # DRUM's: its images install it, its `drum server` does not
# what DRUM 1.18 installs with itself and drum-compat does not, by the module model code imports: setup.cfg's `drum` and
# `scikit-learn` extras
BROUGHT_BY_DRUM = {"PIL": "Pillow", "datarobot": "datarobot", "datarobot_storage": "datarobot-storage",
                   "strictyaml": "strictyaml", "termcolor": "termcolor", "texttable": "texttable", "progress": "progress",
                   "requests": "requests", "pydantic": "pydantic", "pytz": "pytz"}
DRUM_EXTRAS = {"sklearn": ("scikit-learn", "scikit-learn")}  # DRUM's extra of the same name
NOT_INSTALLED = ("drum-compat server does not install a model's requirements (neither does drum server): "
                 "install them where it runs, with pip install -r {path}")


# what drum-compat stands in for: a model directory that lists DRUM itself (its `datarobot_drum` module model code
# imports is drum-compat's own) has that line met
STOOD_IN_FOR = frozenset({"datarobot-drum"})


def installed_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


@dataclass(frozen=True)
class Unmet:
    """A requirement this Python does not meet: `installed` is the version it has, None when it has none."""
    line: int
    requirement: Requirement
    installed: str | None

    def said(self) -> str:
        found = "not installed" if self.installed is None else f"{self.installed} installed"
        return f"line {self.line}: {self.requirement}: {found}"


def requirements_file(code_dir: str | Path) -> Path | None:
    path = Path(code_dir) / REQUIREMENTS_FILE
    return path if path.is_file() else None


def listed(path: Path) -> list[tuple[int, Requirement]]:
    """Each requirement with its line number; pip's options (-r, -e, --index-url), URLs and paths are not checked."""
    found = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        text = line.split(" #", 1)[0].strip()
        if not text or text.startswith(("#", "-")):
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if requirement.url is None and (requirement.marker is None or requirement.marker.evaluate()):
            found.append((number, requirement))
    return found


def unmet(code_dir: str | Path) -> list[Unmet]:
    path = requirements_file(code_dir)
    if path is None:
        return []
    wanted = [Unmet(number, requirement, installed_version(requirement.name)) for number, requirement in listed(path)
              if canonicalize_name(requirement.name) not in STOOD_IN_FOR]
    return [need for need in wanted
            if need.installed is None or not need.requirement.specifier.contains(need.installed, prereleases=True)]


def unmet_warning(code_dir: str | Path) -> str | None:
    """What the server says at its start when requirements.txt is not met here (it serves anyway, as DRUM does)."""
    missing = unmet(code_dir)
    if not missing:
        return None
    path = requirements_file(code_dir)
    return f"{path} is not met here: {'; '.join(need.said() for need in missing)}. " + NOT_INSTALLED.format(path=path)


def missing_module(exc: BaseException | None) -> str | None:
    """The top-level name of the module a failed load could not import, if that is why it failed."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            return exc.name.split(".")[0]
        exc = exc.__cause__ or exc.__context__
    return None


def missing_module_hint(exc: BaseException, code_dir: str | Path) -> str | None:
    """What to do when the model could not import a package: the line of requirements.txt that lists it; else the
    extra that brings it, when DRUM brought it; else that no requirements.txt lists it."""
    module = missing_module(exc)
    if module is None:
        return None
    path = requirements_file(code_dir)
    missing = unmet(code_dir)
    named = [need for need in missing if canonicalize_name(need.requirement.name) == canonicalize_name(module)]
    if named:
        return f"{path} lists it ({named[0].said()}). " + NOT_INSTALLED.format(path=path)
    if module in BROUGHT_BY_DRUM or module in DRUM_EXTRAS:
        package, extra = DRUM_EXTRAS.get(module) or (BROUGHT_BY_DRUM[module], "drum")
        brings = "datarobot-drum itself" if extra == "drum" else f"datarobot-drum[{extra}]"
        return (f"{package} comes with {brings}; with drum-compat, install its {extra!r} extra (pip install "
                f"'drum-compat[{extra}]') or list {package} in {Path(code_dir) / REQUIREMENTS_FILE}")
    if path is None:
        return (f"{module!r} is not installed, and {Path(code_dir)} has no {REQUIREMENTS_FILE}: install it where the "
                f"server runs, and list it in {Path(code_dir) / REQUIREMENTS_FILE} for the model's image")
    if missing:
        return (f"{path} lists what is not met here: {'; '.join(need.said() for need in missing)}. "
                + NOT_INSTALLED.format(path=path))
    return f"{module!r} is not installed, and {path} does not list the package that provides it"
