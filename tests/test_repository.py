"""The repository itself: nothing tracked belongs to the machine it was made on (a symlink leading out of the tree, a
home or temporary directory's path), so a fresh clone builds and passes anywhere."""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SYMLINK = "120000"  # git's mode for a symbolic link
# a temporary directory as mktemp or pytest names one (ending in a number), a home directory, this checkout's own path
MACHINE_PATH = re.compile("|".join([
    re.escape(tempfile.gettempdir()) + r"/[A-Za-z0-9_.-]+[0-9]\b", r"/(?:root)/", r"/(?:home)/[a-z]", re.escape(str(ROOT)) + "/",
]))


def tracked() -> list[tuple[str, str]]:
    """(mode, path) of every tracked file."""
    try:
        listed = subprocess.run(["git", "ls-files", "-s", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout (an unpacked sdist): nothing is tracked")
    return [(entry.split(" ", 1)[0], entry.split("\t", 1)[1]) for entry in listed.split("\0") if entry]


def leads_out(path: Path) -> bool:
    target = os.path.normpath(path.parent / os.readlink(path))
    return not target.startswith(str(ROOT) + os.sep)


def test_no_tracked_symlink_leads_out_of_the_repository():
    symlinks = [path for mode, path in tracked() if mode == SYMLINK]
    assert not [path for path in symlinks if leads_out(ROOT / path)]


def test_no_tracked_file_names_a_path_of_this_machine():
    named = {}
    for mode, path in tracked():
        file = ROOT / path
        if mode == SYMLINK or not file.is_file():
            continue
        found = MACHINE_PATH.findall(file.read_text(errors="replace"))
        if found:
            named[path] = sorted(set(found))
    assert not named


def test_the_checks_see_what_they_look_for(tmp_path):
    """The two checks above fail on what they are for."""
    (tmp_path / "venv").symlink_to(tempfile.gettempdir())
    assert leads_out(tmp_path / "venv")
    assert MACHINE_PATH.search(f"a venv in {tempfile.gettempdir()}/drumref2 and {ROOT}/.venv")
    assert not MACHINE_PATH.search("DRUM_RECORD_REQUESTS=/var/tmp/requests.jsonl, --code-dir /tmp/auth-model")
