"""An unstructured model: `score_unstructured` gets the raw body (text when the request says it is text) and
answers a JSON word count, as DRUM passes it: bytes or str, with its mimetype and charset."""
import json


def load_model(code_dir):
    return "word-count"


def score_unstructured(model, data, **kwargs):
    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
    answer = {"words": len(text.split()), "mimetype": kwargs.get("mimetype"), "charset": kwargs.get("charset")}
    return json.dumps(answer, sort_keys=True), {"mimetype": "application/json"}
