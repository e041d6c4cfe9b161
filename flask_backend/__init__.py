"""The Flask stack: a `model_api` blueprint generated from shared.routes, DRUM's request hooks,
`custom_flask.py` extensions, and the gunicorn application. It only adapts the neutral core."""
