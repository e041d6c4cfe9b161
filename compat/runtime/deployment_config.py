"""DRUM's deployment config (`--deployment-config`, DEPLOYMENT_CONFIG): a JSON file whose `target` section turns the
prediction answers into DataRobot's PPS format (shared.pps); read as DRUM reads it, with DRUM's messages."""
from __future__ import annotations

import json


class DeploymentConfigError(ValueError):
    """DRUM's message for a config it cannot use."""


def deployment_target(path: str) -> dict:
    with open(path) as file:
        try:
            return json.load(file)["target"]
        except json.JSONDecodeError:
            raise DeploymentConfigError(f"Failed to parse deployment config json file '{path}'") from None
        except KeyError:
            raise DeploymentConfigError(f"'target' section not found in deployment config json file {path}") from None
