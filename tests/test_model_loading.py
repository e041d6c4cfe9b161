"""Loading model directories as DRUM does: config resolution, hook discovery, artifacts, marshalling."""
import numpy as np
import pytest

from drum_compat.shared.errors import DrumError
from drum_compat.shared.model.config import ModelConfigError, resolve_model_config
from drum_compat.shared.model.marshalling import marshal_predictions
from drum_compat.shared.model.python_model import ModelLoadError, PythonModel
from drum_compat.shared.model.target_types import TargetType
from tests.models import write_model


def test_target_type_and_labels_from_metadata(tmp_path):
    (tmp_path / "model-metadata.yaml").write_text(
        "targetType: binary\ninferenceModel:\n  positiveClassLabel: 1\n  negativeClassLabel: 0\n"
    )
    config = resolve_model_config(str(tmp_path))
    assert (config.target_type, config.class_ordering) == (TargetType.BINARY, ["1", "0"])  # DRUM's: positive first
    with pytest.raises(ModelConfigError, match="doesn't match target type"):
        resolve_model_config(str(tmp_path), target_type="regression")


@pytest.mark.parametrize("kwargs,message", [
    ({}, "Target type is missing"),
    ({"target_type": "binary"}, "Positive/negative class labels are missing"),
    ({"target_type": "multiclass"}, "Class labels are missing"),
    ({"target_type": "multiclass", "class_labels": ["a", "a"]}, "must be unique"),
    ({"target_type": "nonsense"}, "Unknown target type"),
    ({"target_type": "textgeneration"}, "TARGET_NAME"),
])
def test_config_errors(tmp_path, kwargs, message):
    with pytest.raises(ModelConfigError, match=message):
        resolve_model_config(str(tmp_path), **kwargs)


def test_missing_code_dir():
    with pytest.raises(ModelConfigError, match="does not exist"):
        resolve_model_config("/no/such/dir", target_type="regression")


def test_hook_order(tmp_path):
    code_dir, options = write_model(tmp_path, "all_hooks")
    model = PythonModel.load(resolve_model_config(str(code_dir), **options))
    result = model.predict(b'{"a": [1, 2]}', "application/json", None, None)
    assert result.predictions["Predictions"].tolist() == [6.0, 6.0]
    import custom

    assert custom.calls == ["init", "load_model", "read_input_data", "transform", "score", "post_process"]


def test_an_empty_code_dir_gets_drums_language_message_byte_for_byte(tmp_path):
    with pytest.raises(DrumError) as raised:
        PythonModel.load(resolve_model_config(str(tmp_path), target_type="regression"))
    # DRUM 1.18.1's error server, recorded: {"message": "ERROR: " + this}
    assert str(raised.value) == (
        "Can not detect language by artifacts and/or custom.py/R files.\nDetected: language by artifacts - None; "
        "language by custom - None.\nCode directory must have one or more model artifacts belonging to the same "
        "language:\nPython/R/Java, with an extension:\nPython models: ['.pkl', '.pth', '.h5', '.joblib', '.onnx']\n"
        "R models: ['.rds']\nJava models: ['.jar', '.zip', '.java', '.mojo'].\nOr one of custom.py/R files.\n\n"
        f"Files(100 first) found in {tmp_path}:\n\n"
    )
    (tmp_path / "model.rds").write_bytes(b"")
    (tmp_path / "custom.py").write_text("")
    with pytest.raises(DrumError, match="Detected: language by artifacts - r; language by custom - python."):
        PythonModel.load(resolve_model_config(str(tmp_path), target_type="regression"))


def test_a_missing_artifact_gets_drums_message_byte_for_byte(tmp_path):
    (tmp_path / "custom.py").write_text("def score(data, model, **kwargs):\n    return data\n")
    with pytest.raises(ModelLoadError) as raised:
        PythonModel.load(resolve_model_config(str(tmp_path), target_type="regression"))
    assert str(raised.value) == (  # DRUM 1.18.1's, recorded
        "An error occurred when loading your artifact: \n\nRunning environment language: Python.\nCould not find model "
        f"artifact file in: {tmp_path} supported by default predictors.\nThey support filenames with the following "
        "extensions ['.h5', '.onnx', '.pkl', '.pth'].\nIf your artifact is not supported by default predictor, "
        "implement custom.load_model() hook.\nList of retrieved files are: custom.py"
    )


def test_artifact_errors(tmp_path):
    (tmp_path / "a.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ModelLoadError, match="An error occurred when loading your artifact: Could not load model from the artifact file"):
        PythonModel.load(resolve_model_config(str(tmp_path), target_type="regression"))
    import pickle

    (tmp_path / "a.pkl").write_bytes(pickle.dumps({"not": "an estimator"}))
    with pytest.raises(ModelLoadError, match="Could not find any framework to handle loaded model and a score hook is not provided"):
        PythonModel.load(resolve_model_config(str(tmp_path), target_type="regression"))
    (tmp_path / "b.pkl").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="Multiple serialized model files found"):
        PythonModel.load(resolve_model_config(str(tmp_path), target_type="regression"))


def test_too_many_custom_files(tmp_path):
    (tmp_path / "model.pkl").write_bytes(b"")  # DRUM's language check passes on the artifact
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "custom.py").write_text("")
    with pytest.raises(RuntimeError, match="Found too many custom.py files"):
        PythonModel.load(resolve_model_config(str(tmp_path), target_type="regression"))


def test_unstructured_needs_hook(tmp_path):
    (tmp_path / "custom.py").write_text("def load_model(code_dir):\n    return 1\n")
    with pytest.raises(ModelLoadError, match="hook 'score_unstructured' must be provided"):
        PythonModel.load(resolve_model_config(str(tmp_path), target_type="unstructured"))


@pytest.mark.parametrize("predictions,target,labels,model_labels,message", [
    (np.array([[0.5, 0.6]]), TargetType.BINARY, ["0", "1"], ["0", "1"], "do not add up to 1"),
    (np.array([[-0.5, 1.5]]), TargetType.BINARY, ["0", "1"], ["0", "1"], "have negative values"),
    (np.array([[0.2, 1.5]]), TargetType.MULTILABEL, ["a", "b"], ["a", "b"], "values greater than 1"),
    (np.array([[0.2, 0.8]]), TargetType.BINARY, ["0", "1"], ["x", "y"], r"Expected predictions to have columns \['0', '1'\], but encountered \['x', 'y'\]"),
    (np.array([[0.2, 0.8]]), TargetType.REGRESSION, None, None, "must contain only 1 column. Your predictions have 2 columns"),
    ([1, 2], TargetType.REGRESSION, None, None, "predictions must return a np array"),
])
def test_marshalling_errors(predictions, target, labels, model_labels, message):
    with pytest.raises(DrumError, match=message):
        marshal_predictions(labels, predictions, target, model_labels)


def test_marshalling_orders_and_infers():
    frame = marshal_predictions(["no", "yes"], np.array([[0.25]]), TargetType.BINARY, None)
    assert frame.columns.tolist() == ["no", "yes"] and frame.values.tolist() == [[0.75, 0.25]]
    frame = marshal_predictions(["1.0", "2"], np.array([[0.3, 0.7]]), TargetType.MULTICLASS, [2, 1])
    assert frame.columns.tolist() == ["2", "1.0"]
    frame = marshal_predictions(["a", "b"], np.array([[0.9, 0.8]]), TargetType.MULTILABEL, ["a", "b"])
    assert frame.values.tolist() == [[0.9, 0.8]]
