"""The same extension the FastAPI way: a pure ASGI middleware checks the token (probes stay open), a router adds a
route, and a second route runs model code in a model thread under drum-compat's admission."""
import json
import logging
import os

from fastapi import APIRouter, Request

from drum_compat.fastapi_backend.extensions import in_model_thread

logger = logging.getLogger("custom_fastapi")
# DRUM's probes, the Kubernetes probes of examples/deploy and the Prometheus scrape stay open (no token comes with them)
OPEN_PATHS = {"/", "/ping", "/ping/", "/health/", "/livez", "/readyz", "/startupz", "/metrics"}


class BearerToken:
    def __init__(self, app, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            if dict(scope["headers"]).get(b"authorization") != self.expected:
                body = json.dumps({"message": "Missing or invalid bearer token"}).encode()
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


router = APIRouter()


@router.get("/version")
def version():
    return {"model": "regression", "version": "2024.1"}


def word_count(text: str) -> dict:
    return {"words": len(text.split())}


@router.post("/words")
async def words(request: Request):
    text = (await request.body()).decode()
    return await in_model_thread(request, word_count, text)  # model work: under admission and the deadline


def init_app(app):
    app.add_middleware(BearerToken, token=os.environ.get("MODEL_API_TOKEN", "t0k3n"))
    app.include_router(router)
