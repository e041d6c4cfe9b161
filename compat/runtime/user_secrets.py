"""A CustomTask's user secrets as DRUM hands them over (--user-secrets-mount-path, --user-secrets-prefix): read from
the mounted files and the prefixed variables, and kept out of all the worker prints and logs from then on."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Mapping, TextIO

from drum_compat.shared.model.user_secrets import AbstractSecret, scrubbed, secret_of, sensitive_values


def read_secrets(mount_path: str | None, prefix: str | None, environ: Mapping[str, str]) -> dict[str, AbstractSecret]:
    """Each credential's JSON: a variable `<prefix>_<KEY>` each, then a file `<mount path>/<KEY>` each (a file wins)."""
    found: dict[str, Any] = {}
    if prefix:
        start = f"{prefix}_"
        found.update({name[len(start):]: json.loads(value) for name, value in environ.items() if name.startswith(start)})
    if mount_path:
        found.update({path.name: json.loads(path.read_text()) for path in Path(mount_path).glob("*") if path.is_file()})
    return {key: secret_of(values) for key, values in found.items()}


class ScrubbedStream:
    """A text stream that writes every secret value as *****."""

    def __init__(self, stream: TextIO, values: list[str]) -> None:
        self.stream, self.values = stream, values

    def write(self, text: str) -> int:
        return self.stream.write(scrubbed(self.values, text))

    def writelines(self, lines) -> None:
        self.stream.writelines(scrubbed(self.values, line) for line in lines)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class ScrubSecrets(logging.Filter):
    """A log record's message and string arguments with every secret value as *****."""

    def __init__(self, values: list[str]) -> None:
        super().__init__()
        self.values = values

    def _scrubbed(self, value: Any) -> Any:
        return scrubbed(self.values, value) if isinstance(value, str) else value

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._scrubbed(record.msg)
        if isinstance(record.args, dict):
            record.args = {key: self._scrubbed(value) for key, value in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(self._scrubbed(value) for value in record.args)
        return True


def hide_from_outputs(secrets: dict[str, AbstractSecret]) -> None:
    """As DRUM: standard output and error, and every logger there is; and, beyond DRUM, the root logger's handlers,
    so that records of loggers made later are scrubbed too."""
    values = sensitive_values(secrets.values())
    if not values:
        return
    sys.stdout, sys.stderr = ScrubbedStream(sys.stdout, values), ScrubbedStream(sys.stderr, values)
    scrub = ScrubSecrets(values)
    root = logging.getLogger()
    for logger in (root, *(logger for logger in root.manager.loggerDict.values() if isinstance(logger, logging.Logger))):
        logger.addFilter(scrub)
    for handler in root.handlers:
        handler.addFilter(scrub)
