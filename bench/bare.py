"""The bare apps the benchmark compares drum-compat with: Flask (for gunicorn) and FastAPI (for uvicorn) doing the same
work per request as drum-compat's /predictions/ (pandas read_csv of the body, the model's frame, to_json), and a raw
ASGI app for the ping floor. Nothing else: no guards, no metrics, no logging. Run as a module on a CSV, it times that
work with no server at all: the floor under any server's time for a large request."""
from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import pandas as pd
from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from flask import Flask, request

OK = b'{"message":"OK"}\n'


def predictions(body: bytes) -> bytes:
    data = pd.read_csv(io.BytesIO(body))
    frame = pd.DataFrame({"Predictions": [1.0] * len(data)})
    return f'{{"predictions":{frame["Predictions"].to_json(orient="records")}}}'.encode()


flask_app = Flask(__name__)


@flask_app.get("/ping")
def flask_ping():
    return flask_app.response_class(OK, mimetype="application/json")


@flask_app.post("/predictions/")
def flask_predictions():
    return flask_app.response_class(predictions(request.get_data()), mimetype="application/json")


fastapi_app = FastAPI()


@fastapi_app.get("/ping")
def fastapi_ping():
    return Response(OK, media_type="application/json")


@fastapi_app.post("/predictions/")
async def fastapi_predictions(request: Request):
    # off the event loop, as FastAPI advises for blocking work and as drum-compat runs model code
    return Response(await run_in_threadpool(predictions, await request.body()), media_type="application/json")


async def raw_asgi_app(scope, receive, send):
    """/ping with nothing around it: what uvicorn with httptools costs on its own."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"17")]})
    await send({"type": "http.response.body", "body": OK})


def work_alone(path: Path) -> float:
    """Seconds of /predictions/' work on the CSV at `path`, already in memory, in this process."""
    body = path.read_bytes()
    began = time.perf_counter()
    predictions(body)
    return time.perf_counter() - began


if __name__ == "__main__":
    print(work_alone(Path(sys.argv[1])))
