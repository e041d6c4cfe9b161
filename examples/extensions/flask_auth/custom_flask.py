"""A DRUM custom_flask.py as teams write them: a token check before every route but the probes, an extra route, and
a request log line; the same file runs on gunicorn and, through drum-compat's WSGI bridge, on uvicorn."""
import logging
import os

from flask import jsonify, request

logger = logging.getLogger("custom_flask")
# DRUM's probes, the Kubernetes probes of examples/deploy and the Prometheus scrape stay open: a kubelet and a scraper
# send no token, and a locked /readyz would keep the pods from ever becoming ready
OPEN_ENDPOINTS = {f"model_api.{name}" for name in ("ping", "health", "livez", "readyz", "startupz", "metrics")}


def init_app(app):
    token = os.environ.get("MODEL_API_TOKEN", "t0k3n")

    @app.before_request
    def check_token():
        if request.endpoint in OPEN_ENDPOINTS:
            return None
        if request.headers.get("Authorization") != f"Bearer {token}":
            return jsonify({"message": "Missing or invalid bearer token"}), 401
        return None

    @app.after_request
    def log_request(response):
        logger.info("served %s %s (%s) with %d", request.method, request.path, request.endpoint, response.status_code)
        return response

    @app.route("/version", methods=["GET"])
    def version():
        return jsonify({"model": "regression", "version": "2024.1"})
