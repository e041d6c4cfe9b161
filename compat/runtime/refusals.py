"""The rest of `drum server`'s command line beside the options drum-compat serves (runtime.options): those it does not
serve, taken by the parser so that the start can refuse them by name and say why, never dropping one silently."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Mapping

from drum_compat.runtime.options import ACCEPTED_OPTIONS, SERVER_OPTIONS, add_server_arguments, parse_bool

SERVED_LANGUAGE = "python"


@dataclass(frozen=True)
class UnservedOption:
    """A `drum server` option drum-compat does not serve: the parser takes it so that it can be named, and the start is
    refused with why (exit 2), never dropped silently; `env`: the variables that set it, read as DRUM reads them."""
    flag: str
    why: str
    env: tuple[str, ...] = ()
    kind: str = "flag"  # flag | value

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


RUN_IT_INSIDE = "drum-compat starts no containers: run drum-compat inside the image instead"
UNSERVED_OPTIONS: tuple[UnservedOption, ...] = (
    UnservedOption("--docker", f"runs the model in a Docker image; {RUN_IT_INSIDE}", kind="value"),
    UnservedOption("--memory", f"limits --docker's container; {RUN_IT_INSIDE}", kind="value"),
    UnservedOption("--skip-deps-install", f"concerns --docker's image build; {RUN_IT_INSIDE}"),
    UnservedOption("--gpu-predictor", "serves a GPU predictor (Triton, NIM, vLLM), which drum-compat does not run", kind="value"),
    *(UnservedOption(flag, "is for --gpu-predictor triton, which drum-compat does not run", kind="value")
      for flag in ("--triton-host", "--triton-http-port", "--triton-grpc-port")),
    UnservedOption("--sidecar", "runs DRUM as a sidecar of another model container, which drum-compat does not do"),
    UnservedOption("--lazy-loading-file", "downloads model files from DataRobot's object storage at start, which drum-compat "
                   "does not reach", ("LAZY_LOADING_FILE",), kind="value"),
)


def add_drum_only_arguments(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """The rest of `drum server`'s options: accepted with DRUM's effect, or taken so that the start can refuse them."""
    add_server_arguments(parser, environ, ACCEPTED_OPTIONS)
    for option in UNSERVED_OPTIONS:
        parser.add_argument(option.flag, dest=option.dest,
                            action="store_true" if option.kind == "flag" else "store",
                            help=f"Refused: DRUM's {option.flag} {option.why}.")


def refusals(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, str]:
    """Why the start is refused: for each option (or variable) that asks for what drum-compat does not serve, one line."""
    found = {}
    for option in UNSERVED_OPTIONS:
        given = getattr(args, option.dest)
        set_by = [name for name in option.env if environ.get(name, "") != ""
                  and (option.kind == "value" or parse_bool(name, environ[name]))]
        if given or set_by:
            source = option.flag if given else f"{set_by[0]}={environ[set_by[0]]}"
            found[option.flag] = f"{source}: DRUM's {option.flag} {option.why}"
    if args.language not in (None, SERVED_LANGUAGE):
        found["--language"] = f"--language {args.language}: drum-compat serves Python models only"
    return found


def unserved(args: argparse.Namespace, environ: Mapping[str, str]) -> list[str]:
    return list(refusals(args, environ).values())


def option_rows(args: argparse.Namespace, environ: Mapping[str, str], hidden: str) -> list[dict]:
    """Each `drum server` option as the environment sets it, for `drum-compat config`: its value (a secret's shown as
    `hidden`), where it came from, and whether the start would refuse it."""
    refused = refusals(args, environ)
    rows = []
    for option in (*SERVER_OPTIONS, *ACCEPTED_OPTIONS, *UNSERVED_OPTIONS):
        names = (option.env,) if isinstance(option.env, str) else option.env or ()
        source = next((name for name in names if environ.get(name, "") != ""), None)
        value = getattr(args, option.dest) or (environ[source] if source else None)
        rows.append({"option": option.flag, "value": hidden if getattr(option, "secret", False) and value else value,
                     "source": source or "default", "refused": option.flag in refused})
    return rows
