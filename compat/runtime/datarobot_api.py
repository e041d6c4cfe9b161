"""DRUM's --allow-dr-api-access: the start's check of what goes with it (DRUM's words and status), and in each worker
the DataRobot client that model code reads (`datarobot.client.get_client()`), set up as DRUM's configure sets it up."""
from __future__ import annotations

import argparse
import importlib
import logging
from dataclasses import asdict, dataclass

from drum_compat.runtime.monitoring import DrumStartError

logger = logging.getLogger("drum_compat")
CLIENT_PACKAGE = "the `datarobot` package (pip install 'drum-compat[datarobot]'), which DRUM installs"


@dataclass(frozen=True)
class ApiAccess:
    webserver: str
    api_token: str

    @property
    def endpoint(self) -> str:
        """DRUM's _dr_api_url: the webserver's API, /api/v2 added unless it ends so."""
        return self.webserver if self.webserver.endswith("api/v2") else f"{self.webserver}/api/v2"

    def to_dict(self) -> dict:
        return asdict(self)


def api_access_of(args: argparse.Namespace) -> ApiAccess | None:
    """DRUM's verify_dr_api_access_options (DrumStartError), then what the workers connect with; None when off.
    ValueError where the client package is missing."""
    if not args.allow_dr_api_access:
        return None
    missing = [flag for flag, value in (("--webserver", args.webserver), ("--api-token", args.api_token)) if value is None]
    if missing:
        raise DrumStartError("\n", "Error: DataRobot APIs access requires certain option(s) that are missing.",
                             "Missing options:", *(f"  {flag}" for flag in missing), "\n",
                             "These options can also be obtained via environment variables.", "\n")
    try:
        importlib.import_module("datarobot")
    except ImportError as exc:
        raise ValueError(f"--allow-dr-api-access needs {CLIENT_PACKAGE}: {exc}") from None
    return ApiAccess(args.webserver, args.api_token)


def connect(access: ApiAccess) -> None:
    """The process's DataRobot client, as DRUM makes it (the client asks the server's version: an unreachable
    DataRobot stops the worker, as under DRUM)."""
    import datarobot

    logger.info("Initializing DataRobot Python client.")
    datarobot.Client(token=access.api_token, endpoint=access.endpoint)
