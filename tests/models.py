"""Model directories written the way DRUM users write them, materialised into a temp dir by tests."""
from __future__ import annotations

import pickle
import textwrap
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "models"
REGRESSION = '''
import pandas as pd

def load_model(code_dir):
    return 2.0

def score(data, model, **kwargs):
    return pd.DataFrame({"Predictions": data.iloc[:, 0].astype(float) * model})
'''

REGRESSION_EXTRA = '''
import pandas as pd

def load_model(code_dir):
    return "m"

def score(data, model, **kwargs):
    n = len(data)
    return pd.DataFrame({"Predictions": [0.1 * (i + 1) for i in range(n)],
                         "extra1": list(range(2, 2 + n)), "extra2": ["high", "low"] * (n // 2) + ["high"] * (n % 2)})
'''

BINARY = '''
import pandas as pd
from datarobot_drum import CustomHTTPError

def load_model(code_dir):
    return "m"

def score(data, model, **kwargs):
    assert kwargs["positive_class_label"] == "yes" and kwargs["negative_class_label"] == "no"
    p = (data.iloc[:, 0].astype(float) % 10) / 10.0
    return pd.DataFrame({"yes": p, "no": 1 - p})
'''

MULTICLASS = '''
import pandas as pd

def load_model(code_dir):
    return "m"

def score(data, model, **kwargs):
    n = len(data)
    return pd.DataFrame({"dog": [0.7] * n, "cat": [0.1] * n, "horse": [0.2] * n, "note": ["x/é"] * n})
'''

MULTILABEL = '''
import pandas as pd

def load_model(code_dir):
    return "m"

def score(data, model, **kwargs):
    n = len(data)
    return pd.DataFrame({"a": [0.9] * n, "b": [0.8] * n, "c": [0.05] * n})
'''

ANOMALY = '''
import pandas as pd

def load_model(code_dir):
    return "m"

def score(data, model, **kwargs):
    return pd.DataFrame({"Predictions": [1/3, 1e-12, 1e20, float("nan"), -0.0, 0.123456789012345][: len(data)]})
'''

UNSTRUCTURED = '''
import json

def load_model(code_dir):
    return "m"

def score_unstructured(model, data, **kwargs):
    query = kwargs["query"]
    mode = query.get("ret_mode", "echo")
    if mode == "echo":
        options = {}
        if "ret_mimetype" in query:
            options["mimetype"] = query["ret_mimetype"]
        if "ret_charset" in query:
            options["charset"] = query["ret_charset"]
        return data, (options or None)
    if mode == "kwargs":
        seen = {"type": type(data).__name__, "mimetype": kwargs["mimetype"], "charset": kwargs.get("charset", "<absent>"),
                "query": sorted(query.items(multi=True)),
                "headers": {k: v for k, v in kwargs["headers"].items() if k not in ("Host", "User-Agent", "Accept", "Accept-Encoding", "Connection")}}
        return json.dumps(seen, sort_keys=True), {"mimetype": "application/json"}
    if mode == "count":
        text = data if isinstance(data, str) else data.decode("utf-8")
        return str(len(text.split()))
    if mode == "binary":
        return len(data).to_bytes(4, "big")
    if mode == "none":
        return None
    if mode == "bad":
        return 42
    if mode == "nomime":
        return "x", {"mimetype": None}
    if mode == "boom":
        raise RuntimeError("unstructured boom")
    from datarobot_drum import CustomHTTPError
    raise CustomHTTPError("teapot", status_code=418)
'''

TRANSFORM = '''
import pandas as pd

def load_model(code_dir):
    return "m"

def transform(data, model):
    out = data.copy()
    out.columns = [f"{c} t" for c in data.columns]
    return out * 2
'''

FAILING = '''
import pandas as pd
from datarobot_drum import CustomHTTPError

def load_model(code_dir):
    return "m"

def score(data, model, **kwargs):
    first = str(data.columns[0])
    if first == "custom":
        raise CustomHTTPError("Custom prediction error", status_code=418)
    if first == "notframe":
        return [1, 2]
    if first == "twocols":
        return pd.DataFrame({"a": [1.0] * len(data), "b": [2.0] * len(data), "c": [3.0] * len(data)})
    raise ValueError("boom")
'''

ALL_HOOKS = '''
import pandas as pd

calls = []

def init(code_dir):
    calls.append("init")

def load_model(code_dir):
    calls.append("load_model")
    return "m"

def read_input_data(binary_data):
    calls.append("read_input_data")
    import json
    return pd.DataFrame(json.loads(binary_data))

def transform(data, model):
    calls.append("transform")
    return data

def score(data, model, **kwargs):
    calls.append("score")
    return pd.DataFrame({"Predictions": [0.0] * len(data)})

def post_process(predictions, model):
    calls.append("post_process")
    return predictions + len(set(calls))
'''

CUSTOM_TASK = '''
import pandas as pd
from datarobot_drum.custom_task_interfaces import RegressionEstimatorInterface

class CustomTask(RegressionEstimatorInterface):
    @classmethod
    def load(cls, artifact_directory):
        return cls()

    def predict(self, X, **kwargs):
        return pd.DataFrame({"Predictions": X.iloc[:, 0].astype(float) + 0.5})
'''

AUTH_CUSTOM_FLASK = '''
from flask import request, jsonify

def init_app(app):
    @app.before_request
    def check_auth():
        if request.endpoint in {"model_api.ping", "model_api.health"}:
            return None
        token = request.headers.get("X-Auth")
        if token is None:
            return jsonify({"message": "Missing X-Auth header"}), 401
        if token != "t0k3n":
            return jsonify({"message": "Auth token is invalid"}), 401
'''

BROKEN_LOAD = '''
def load_model(code_dir):
    raise RuntimeError("weights are corrupt")
'''

MODELS = {
    "regression": ({"custom.py": REGRESSION}, {"target_type": "regression"}),
    "regression_extra": ({"custom.py": REGRESSION_EXTRA}, {"target_type": "regression"}),
    "binary": ({"custom.py": BINARY}, {"target_type": "binary", "positive_class_label": "yes", "negative_class_label": "no"}),
    "multiclass": ({"custom.py": MULTICLASS}, {"target_type": "multiclass", "class_labels": ["cat", "dog", "horse"]}),
    "multilabel": ({"custom.py": MULTILABEL}, {"target_type": "multilabel", "class_labels": ["a", "b", "c"]}),
    "anomaly": ({"custom.py": ANOMALY}, {"target_type": "anomaly"}),
    "unstructured": ({"custom.py": UNSTRUCTURED}, {"target_type": "unstructured"}),
    "transform": ({"custom.py": TRANSFORM}, {"target_type": "transform"}),
    "failing": ({"custom.py": FAILING}, {"target_type": "regression"}),
    "all_hooks": ({"custom.py": ALL_HOOKS}, {"target_type": "regression"}),
    "custom_task": ({"custom.py": CUSTOM_TASK}, {"target_type": "regression"}),
    "broken": ({"custom.py": BROKEN_LOAD}, {"target_type": "regression"}),
}


def write_model(root: Path, name: str) -> tuple[Path, dict]:
    files, options = MODELS[name]
    code_dir = root / name
    code_dir.mkdir(parents=True, exist_ok=True)
    for filename, source in files.items():
        (code_dir / filename).write_text(textwrap.dedent(source).lstrip())
    return code_dir, options


def write_sklearn_model(root: Path) -> Path:
    """A binary scikit-learn artifact with no custom.py at all."""
    from sklearn.linear_model import LogisticRegression

    code_dir = root / "sklearn_binary"
    code_dir.mkdir(parents=True, exist_ok=True)
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], ["no", "no", "yes", "yes"])
    with open(code_dir / "model.pkl", "wb") as fp:
        pickle.dump(model, fp)
    return code_dir

LOGGING = '''
import logging
import pandas as pd

def load_model(code_dir):
    return "m"

def score(data, model, **kwargs):
    logging.getLogger("user.model").warning("scoring %d rows", len(data))
    return pd.DataFrame({"Predictions": [1.0] * len(data)})
'''
MODELS["logging"] = ({"custom.py": LOGGING}, {"target_type": "regression"})

# Worker lifecycle: each load leaves loaded-<pid> in the code dir; a request body "sleep=S" leaves
# busy-<pid> there, sleeps S seconds, and the answer is the pid that served it.
TRACED = '''
import os
import time
from pathlib import Path

def load_model(code_dir):
    Path(code_dir, f"loaded-{os.getpid()}").touch()
    return Path(code_dir)

def score_unstructured(model, data, **kwargs):
    if data.startswith("sleep="):
        Path(model, f"busy-{os.getpid()}").touch()
        time.sleep(float(data.split("=", 1)[1]))
    return str(os.getpid())
'''
MODELS["traced"] = ({"custom.py": TRACED}, {"target_type": "unstructured"})

# CPU-bound (examples/models/cpu_bound, shared with bench.overload): `cpu=S` spins for S seconds; overlapping
# calls in one process leave an `overlap` file
MODELS["cpu"] = ({"custom.py": (EXAMPLES / "cpu_bound" / "custom.py").read_text()}, {"target_type": "unstructured"})


# Faults (tests/test_supervision.py): the answer is the pid that served. `hang` never returns; `cpu=S` spins S seconds;
# `sleep=S` waits S seconds;
# `leak=M` keeps M MiB more for good (touched, so resident). FAULTS_LOAD_GIL=N: load_model holds the GIL while one
# regular expression backtracks through 2**N steps.
FAULTS = '''
import os
import re
import time

def load_model(code_dir):
    hold = int(os.environ.get("FAULTS_LOAD_GIL", "0"))
    if hold:
        re.match(r"(a+)+$", "a" * hold + "b")
    return []

def score_unstructured(model, data, **kwargs):
    command, _, value = (data if isinstance(data, str) else data.decode()).partition("=")
    if command == "hang":  # a read that never gets data, as from a stuck upstream (gevent does not patch os.read)
        os.read(os.pipe()[0], 1)
    elif command == "cpu":
        end = time.monotonic() + float(value)
        while time.monotonic() < end:
            pass
    elif command == "sleep":
        time.sleep(float(value))
    elif command == "leak":
        model.append(b"x" * (int(value) * 1024 * 1024))
    return str(os.getpid())
'''
MODELS["faults"] = ({"custom.py": FAULTS}, {"target_type": "unstructured"})
