"""A loaded DRUM model directory and the per-request pipeline DRUM runs through its hooks:
read_input_data -> transform -> score (or CustomTask / artifact) -> post_process -> marshalling."""
from __future__ import annotations

import importlib.util
import inspect
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np
import pandas as pd

from drum_compat.shared.drum_api import install_datarobot_drum_module
from drum_compat.shared.errors import DrumError, is_user_http_error
from drum_compat.shared.model.artifacts import RUNNING_LANG_MSG, SklearnPredictor, check_language, find_artifact, load_artifact
from drum_compat.shared.model.config import ModelConfig
from drum_compat.shared.model.marshalling import PRED_COLUMN, marshal_predictions
from drum_compat.shared.model.target_types import CLASSIFICATION, NON_NUMERIC_PREDICTIONS, TargetType
from drum_compat.shared.payloads import read_structured_input

logger = logging.getLogger("drum_compat.model")

CUSTOM_FILE = "custom.py"
STRUCTURED_HOOKS = ("init", "read_input_data", "load_model", "transform", "score", "post_process", "chat",
                    "get_supported_llm_models")
UNSTRUCTURED_HOOKS = ("init", "load_model", "score_unstructured")


class ModelLoadError(DrumError):
    """The model directory could not be loaded; the text is what DRUM's error server reports."""


class DrumPythonModelAdapterError(DrumError):
    """A user hook raised; its traceback has been logged already. DRUM's class name: a trace's error status reads
    `DrumPythonModelAdapterError: <message>` as under DRUM."""


def run_hook(context: str, hook: Callable, *args, **kwargs) -> Any:
    """Call a user hook; failures become DRUM's `<context> Exception: <repr>` (CustomHTTPError passes)."""
    try:
        return hook(*args, **kwargs)
    except Exception as exc:
        if is_user_http_error(exc):
            raise
        logger.exception("%s Exception: %r", context, exc)
        raise DrumPythonModelAdapterError(f"{context} Exception: {exc!r}") from exc


def check_frame(frame: Any, hook: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise DrumError(f"{hook} must return a dataframe, but received {type(frame)}")
    if len(frame.shape) != 2:
        raise DrumError(f"{hook} must return a dataframe of dim 2, but received one with dims {frame.shape}")


def check_same_rows(original: pd.DataFrame, transformed: pd.DataFrame) -> None:
    if original.shape[0] != transformed.shape[0]:
        raise DrumError("Transformation resulted in different number of rows than original data")


def find_code_file(code_dir: str, filename: str = CUSTOM_FILE) -> Path | None:
    """The one `filename` anywhere under the code dir (DRUM searches recursively), or None."""
    found = sorted(Path(code_dir).rglob(filename))
    if len(found) > 1:
        raise RuntimeError(f"Found too many {filename} files: {found}")
    return found[0] if found else None


def import_code_file(path: Path) -> ModuleType:
    """Import custom.py (or custom_flask.py) as DRUM does, its folder first on sys.path; always from
    this path, even if another model's module of the same name was imported in this process."""
    name = path.stem
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
        raise
    return module


@dataclass
class Predictions:
    predictions: pd.DataFrame
    extra_model_output: pd.DataFrame | None = None
    marshalled: pd.DataFrame | None = None  # before the cast to float: what DRUM reports to MLOps; None: `predictions`

    @property
    def monitored(self) -> pd.DataFrame:
        return self.predictions if self.marshalled is None else self.marshalled


class PythonModel:
    """One loaded model. Not thread-safe by design: DRUM never ran a model concurrently in a process."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.hooks: dict[str, Callable] = {}
        self.task = None  # CustomTask instance (class API)
        self.model: Any = None
        self.artifact_predictor: type[SklearnPredictor] | None = None

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, config: ModelConfig) -> "PythonModel":
        install_datarobot_drum_module()
        check_language(config.code_dir)
        self = cls(config)
        custom_file = find_code_file(config.code_dir)
        module = None
        if custom_file is not None:
            try:
                module = import_code_file(custom_file)
            except ImportError as exc:
                raise ModelLoadError(f"\n\n{RUNNING_LANG_MSG}\nFailed loading hooks from [{custom_file}] : {exc}") from exc
        if module is not None and getattr(module, "CustomTask", None) is not None:
            self._load_task(module.CustomTask)
            return self
        names = UNSTRUCTURED_HOOKS if config.target_type == TargetType.UNSTRUCTURED else STRUCTURED_HOOKS
        self.hooks = {name: getattr(module, name) for name in names if module is not None and callable(getattr(module, name, None))}
        if config.target_type == TargetType.UNSTRUCTURED and "score_unstructured" not in self.hooks:
            raise ModelLoadError("In 'unstructured' mode hook 'score_unstructured' must be provided.")
        if "init" in self.hooks:
            self.hooks["init"](code_dir=config.code_dir)
        try:
            self._load_model()
        except Exception as exc:
            raise ModelLoadError(f"An error occurred when loading your artifact: {exc}") from exc
        return self

    def _load_task(self, task_class: type) -> None:
        from datarobot_drum.custom_task_interfaces import CustomTaskInterface

        if not (isinstance(task_class, type) and issubclass(task_class, CustomTaskInterface)):
            raise ModelLoadError("The CustomTask class must inherit from the CustomTaskInterface")
        try:
            self.task = task_class.load(self.config.code_dir)
        except Exception as exc:
            raise ModelLoadError(f"An error occurred when loading your artifact: {exc}") from exc
        self.model = self.task

    def _load_model(self) -> None:
        target_type = self.config.target_type
        if "load_model" in self.hooks:
            self.model = run_hook("'load_model' hook failed to load the model.", self.hooks["load_model"], self.config.code_dir)
            if self.model is None:
                raise DrumError("'load_model' hook failed to load model, None is returned.")
        else:
            self.model = load_artifact(find_artifact(self.config.code_dir))
        if target_type not in (TargetType.UNSTRUCTURED, TargetType.TRANSFORM) and not {"score", "chat"} & self.hooks.keys():
            if not SklearnPredictor.can_use(self.model):
                raise DrumError(
                    f"\n\n{RUNNING_LANG_MSG}\nCould not find any framework to handle loaded model and a score hook is not provided"
                )
            self.artifact_predictor = SklearnPredictor
        if target_type == TargetType.TRANSFORM and "transform" not in self.hooks and "sklearn" not in str(type(self.model)):
            raise DrumError("A transform task requires a user-defined transform hook for non-sklearn transformers")

    # -- what /info/ and /capabilities/ report --------------------------------------------------------
    @property
    def has_read_input_data_hook(self) -> bool:
        return "read_input_data" in self.hooks

    @property
    def supports_chat(self) -> bool:
        return "chat" in self.hooks

    def supported_llm_models(self, llm_id: str | None) -> dict:
        """GET /models as DRUM answers it: the hook's OpenAI `Model` objects, else the LLM_ID runtime parameter's,
        else none (DRUM's python_model_adapter.get_supported_llm_models)."""
        result: dict = {"object": "list", "data": []}
        hook = self.hooks.get("get_supported_llm_models")
        if hook is not None:
            result["data"] = [model.to_dict() for model in hook(self.model) if getattr(model, "object", None) == "model"]
        elif llm_id is not None:
            result["data"].append({"id": llm_id, "object": "model", "created": 1735689600, "owned_by": "DataRobot"})
        return result

    @property
    def predictor_name(self) -> str | None:
        return self.artifact_predictor.name if self.artifact_predictor else None

    # -- requests --------------------------------------------------------------------------------
    def _label_kwargs(self) -> dict:
        config = self.config
        kwargs: dict[str, Any] = {"target_type": config.target_type}
        if config.positive_class_label is not None and config.negative_class_label is not None:
            kwargs["positive_class_label"] = config.positive_class_label
            kwargs["negative_class_label"] = config.negative_class_label
        if config.class_labels:
            kwargs["class_labels"] = list(config.class_labels)
        return kwargs

    def _read(self, binary_data: bytes, mimetype: str | None, sparse_colnames: list[str] | None, use_hook: bool = True) -> Any:
        if use_hook and "read_input_data" in self.hooks:
            return run_hook("Model 'read_input_data' hook failed to read input data.", self.hooks["read_input_data"], binary_data)
        return read_structured_input(binary_data, mimetype, sparse_colnames)

    def predict(self, binary_data: bytes, mimetype: str | None, charset: str | None, sparse_colnames: list[str] | None) -> Predictions:
        return self.predict_frame(self._read(binary_data, mimetype, sparse_colnames), binary_data, mimetype, charset, sparse_colnames)

    def predict_frame(self, data: Any, binary_data: bytes | None, mimetype: str | None, charset: str | None,
                      sparse_colnames: list[str] | None = None) -> Predictions:
        """transform -> score -> post_process -> marshalling of data already read; `binary_data` None for one batch
        of a streamed request (/predictionsStream/), whose whole bytes are never in memory."""
        kwargs = {
            "binary_data": binary_data,
            "mimetype": mimetype,
            "charset": charset,
            "sparse_colnames": sparse_colnames,
            **self._label_kwargs(),
        }
        if "transform" in self.hooks:
            data = run_hook("Model 'transform hook' failed to transform dataset.", self.hooks["transform"], data, self.model)
            check_frame(data, "transform")
        raw, model_labels, extra = self._score(data, kwargs)
        target_type = self.config.target_type
        marshalled = frame = marshal_predictions(self.config.class_ordering, raw, target_type, model_labels, copy=False)
        # float64 predictions are already what the cast makes (it would only copy them: a tenth of a small request)
        if target_type not in NON_NUMERIC_PREDICTIONS and getattr(raw, "dtype", None) != np.float64:
            frame = frame.astype("float")
        return Predictions(frame, extra, marshalled if frame is not marshalled else None)

    def _score(self, data: Any, kwargs: dict):
        target_type = self.config.target_type
        if self.task is not None:
            method = self.task.predict_proba if target_type in (TargetType.BINARY, TargetType.MULTICLASS) else self.task.predict
            frame = run_hook("Model 'score' hook failed to make predictions.", method, data, **kwargs)
            check_frame(frame, "score")
            return frame.values, frame.columns, None
        extra = None
        if "score" in self.hooks:
            frame = run_hook("Model 'score' hook failed to make predictions.", self.hooks["score"], data, self.model, **kwargs)
            check_frame(frame, "score")
            frame, extra = self._split_extra_output(frame)
            raw, model_labels = frame.values, frame.columns
        else:
            # looked up inside the hook's context: a chat-only model has no predictor, and fails there as in DRUM
            raw, model_labels = run_hook(
                "Failure when making predictions.", lambda: self.artifact_predictor.predict(data, self.model, target_type)
            )
        if "post_process" in self.hooks:
            marshalled = marshal_predictions(self.config.class_ordering, raw, target_type, model_labels)
            frame = run_hook(
                "Model 'post_process' hook failed to post-process predictions.", self.hooks["post_process"], marshalled, self.model
            )
            if not isinstance(frame, pd.DataFrame):
                raise DrumError(f"Output of post_process hook must be a dataframe, not a {type(frame)}")
            raw, model_labels = frame.values, frame.columns
        return raw, model_labels, extra

    def _split_extra_output(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """Columns beyond the labels (classification) or beyond the one prediction column are extra output, split as
        DRUM splits them: a label or the prediction column missing fails with pandas' own KeyError, as there."""
        labels = self.config.class_ordering if self.config.target_type in CLASSIFICATION else None
        if labels:
            if len(frame.columns) <= len(labels) or frame.columns.tolist() == labels:
                return frame, None
            extra = frame.drop(columns=labels)
            predicted = labels if len(labels) == 1 else [column for column in frame.columns if column not in extra.columns]
            return frame[predicted], extra
        if len(frame.columns) <= 1:
            return frame, None
        target_column = self.config.target_name or PRED_COLUMN
        if target_column not in frame and len(target_column) >= 2 and target_column[0] == target_column[-1] == '"':
            target_column = target_column[1:-1]
        extra = frame.drop(columns=[target_column])
        return frame[[target_column]], extra

    def transform(self, features: tuple[bytes, str | None, list[str] | None], target: tuple[bytes, str | None] | None):
        data = self._read(*features)
        target_data = self._read(target[0], target[1], None, use_hook=False) if target else None
        if self.task is not None:
            try:
                output = self.task.transform(data)
                check_frame(output, "transform")
                check_same_rows(output, data)
            except Exception as exc:
                if is_user_http_error(exc):
                    raise
                raise DrumError(f"Model 'transform' hook failed to transform dataset. Exception: {exc!r}") from exc
            return output, target_data
        hook = self.hooks.get("transform")
        if hook is None:
            return self._sklearn_transform(data), target_data
        arity = len(inspect.signature(hook).parameters)
        if arity not in (2, 3):
            raise DrumError(f"Transform hook must take 2 or 3 arguments; hook provided takes {arity}")
        args = (data, self.model, target_data) if arity == 3 else (data, self.model)
        output = run_hook("Model 'transform hook' failed to transform dataset.", hook, *args)
        if isinstance(output, tuple):
            raise DrumError("Transformation of the target variable is not supported by DRUM.")
        check_frame(output, "transform")
        check_same_rows(output, data)
        return output, target_data

    def _sklearn_transform(self, data: pd.DataFrame) -> pd.DataFrame:
        from scipy.sparse import issparse

        try:
            transformed = self.model.transform(data)
        except Exception as exc:
            raise type(exc)(f"Couldn't naively apply transformer: {exc}") from None
        if issparse(transformed):
            return pd.DataFrame.sparse.from_spmatrix(transformed)
        return pd.DataFrame(transformed)

    def chat(self, params: Any, headers) -> Any:
        """The `chat` hook's ChatCompletion or iterable of chunks; `headers=` only for a hook that takes more than
        (params, model), as DRUM decides. Its errors are not wrapped (DRUM's text is the hook's own)."""
        hook = self.hooks["chat"]
        if len(inspect.signature(hook).parameters) > 2:
            return hook(params, self.model, headers=headers)
        return hook(params, self.model)

    def predict_unstructured(self, data: str | bytes, **kwargs) -> tuple[Any, dict | None]:
        # a text-generation model may have no such hook: calling the missing one fails as in DRUM ("'NoneType' object ...")
        result = self.hooks.get("score_unstructured")(self.model, data, **kwargs)
        single = not isinstance(result, tuple)
        pair = (result, None) if single else result
        if len(pair) != 2:
            raise DrumError(
                f"In unstructured mode predictions of type tuple must have length = 2, but received length = {len(pair)}"
            )
        body, options = pair
        if not isinstance(body, (bytes, str, type(None))) or not isinstance(options, (dict, type(None))):
            if single:
                raise DrumError(f"In unstructured mode single return value can be of type str/bytes, but received {type(body)}")
            raise DrumError(
                "In unstructured mode tuple return value must be of type (str/bytes, dict) "
                f"but received ({type(body)}, {type(options)})"
            )
        return body, options
