"""A linear model of house prices served through DRUM hooks: `load_model` reads the coefficients,
`score` applies them. Plain pandas, so the example runs anywhere drum-compat does."""
import json
import os

import pandas as pd


def load_model(code_dir):
    with open(os.path.join(code_dir, "coefficients.json"), encoding="utf-8") as fp:
        return json.load(fp)


def score(data, model, **kwargs):
    missing = sorted(set(model["weights"]) - set(data.columns))
    if missing:
        from datarobot_drum import CustomHTTPError

        raise CustomHTTPError(f"Missing feature columns: {', '.join(missing)}", status_code=422)
    prediction = pd.Series(float(model["intercept"]), index=data.index)
    for column, weight in model["weights"].items():
        prediction += weight * data[column].astype(float)
    return pd.DataFrame({"Predictions": prediction})
