"""A churn classifier served through DRUM hooks: `score` returns one probability column per class label,
from a logistic score of tenure and monthly charges. Plain pandas and numpy."""
import numpy as np
import pandas as pd


def load_model(code_dir):
    return {"intercept": -1.0, "tenure_months": -0.08, "monthly_charges": 0.03}


def score(data, model, **kwargs):
    tenure = pd.to_numeric(data.get("tenure_months", 0), errors="coerce").fillna(0)
    charges = pd.to_numeric(data.get("monthly_charges", 0), errors="coerce").fillna(0)
    logit = model["intercept"] + model["tenure_months"] * tenure + model["monthly_charges"] * charges
    positive = 1.0 / (1.0 + np.exp(-logit))
    return pd.DataFrame({kwargs["positive_class_label"]: positive, kwargs["negative_class_label"]: 1.0 - positive},
                        index=data.index)
