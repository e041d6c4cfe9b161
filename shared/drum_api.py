"""The API that model code written for DRUM imports from `datarobot_drum`, for when the real
package is absent: RuntimeParameters, CustomHTTPError, the CustomTask interfaces and their secrets."""
from __future__ import annotations

import importlib.util
import os
import pickle
import sys
import types

from drum_compat.shared.errors import BaseCustomUserError, CustomHTTPError, DrumError
from drum_compat.shared.model import user_secrets
from drum_compat.shared.runtime_parameters import RuntimeParameters


class DrumSerializationError(DrumError):
    pass


class CustomTaskInterface:
    """Base of the `CustomTask` class API; `load` unpickles the task saved by `save`."""

    default_artifact_filename = "drum_artifact.pkl"
    _secrets: dict | None = None

    @property
    def secrets(self) -> dict:
        return self._secrets or {}

    @secrets.setter
    def secrets(self, secrets: dict | None) -> None:
        self._secrets = secrets

    def save(self, artifact_directory: str):
        with open(os.path.join(artifact_directory, self.default_artifact_filename), "wb") as fp:
            pickle.dump(self, fp)
        return self

    @classmethod
    def load(cls, artifact_directory: str):
        with open(os.path.join(artifact_directory, cls.default_artifact_filename), "rb") as fp:
            task = pickle.load(fp)
        if not isinstance(task, cls):
            raise DrumSerializationError(f"load_task method must return a {cls.__name__} class")
        return task

    def fit(self, X, y, parameters=None, row_weights=None, **kwargs):
        raise NotImplementedError()


class EstimatorInterface(CustomTaskInterface):
    def predict(self, X, **kwargs):
        raise NotImplementedError()


class RegressionEstimatorInterface(EstimatorInterface):
    pass


class AnomalyEstimatorInterface(EstimatorInterface):
    pass


class BinaryEstimatorInterface(EstimatorInterface):
    def predict_proba(self, X, **kwargs):
        raise NotImplementedError()


class MulticlassEstimatorInterface(BinaryEstimatorInterface):
    pass


class TransformerInterface(CustomTaskInterface):
    def transform(self, X, **kwargs):
        raise NotImplementedError()


def install_datarobot_drum_module() -> None:
    """Register `datarobot_drum` (and its custom_task_interfaces) unless the real package exists."""
    if "datarobot_drum" in sys.modules or importlib.util.find_spec("datarobot_drum") is not None:
        return
    top = types.ModuleType("datarobot_drum", "drum-compat's stand-in for DataRobot DRUM's model API")
    top.RuntimeParameters = RuntimeParameters
    top.CustomHTTPError = CustomHTTPError
    top.BaseCustomUserError = BaseCustomUserError
    interfaces = types.ModuleType("datarobot_drum.custom_task_interfaces")
    for cls in (
        CustomTaskInterface,
        RegressionEstimatorInterface,
        AnomalyEstimatorInterface,
        BinaryEstimatorInterface,
        MulticlassEstimatorInterface,
        TransformerInterface,
    ):
        setattr(interfaces, cls.__name__, cls)
    for name in (*(cls.__name__ for cls in user_secrets.SECRET_TYPES.values()), "AbstractSecret", "GCPKey"):
        setattr(interfaces, name, getattr(user_secrets, name))
    secrets_module = types.ModuleType("datarobot_drum.custom_task_interfaces.user_secrets")
    secrets_module.__dict__.update({name: value for name, value in vars(user_secrets).items() if not name.startswith("_")})
    interfaces.user_secrets = secrets_module
    top.custom_task_interfaces = interfaces
    top.__path__ = []  # a package, so `from datarobot_drum.custom_task_interfaces import ...` works
    sys.modules["datarobot_drum"] = top
    sys.modules["datarobot_drum.custom_task_interfaces"] = interfaces
    sys.modules["datarobot_drum.custom_task_interfaces.user_secrets"] = secrets_module
