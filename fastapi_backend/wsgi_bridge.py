"""A WSGI app (the Flask app of a code dir's custom_flask.py) served by the FastAPI stack through a2wsgi, behind the
cycle's front door: it reads the body the front door kept, and sees the headers a WSGI server would pass."""
from __future__ import annotations

from a2wsgi.wsgi import WSGIMiddleware

from drum_compat.fastapi_backend.cycle import watch_for_disconnect
from drum_compat.shared.cycle import CYCLE_KEY
from drum_compat.shared.http import passed_by_wsgi_servers


def from_the_cycle(app):
    """The WSGI app as the Flask stack's loop would call it: the body is the one the front door read, and the cycle
    is in the environ for the views."""
    def bridged(environ: dict, start_response):
        cycle = environ["asgi.scope"][CYCLE_KEY]
        environ[CYCLE_KEY] = cycle
        cycle.body.as_wsgi_input(environ)
        return app(environ, start_response)

    return bridged


class WsgiBridge(WSGIMiddleware):
    """The router's default when the Flask app answers DRUM's routes. `workers`: a2wsgi's pool, whose queue has no
    bound; sized by AdmissionLimits.request_threads, so admission, not that queue, decides who waits."""

    def __init__(self, app, workers: int) -> None:
        super().__init__(from_the_cycle(app), workers=workers)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        scope = {**scope, "headers": [(name, value) for name, value in scope["headers"] if passed_by_wsgi_servers(name)]}
        watcher = watch_for_disconnect(receive, scope[CYCLE_KEY])  # a streamed answer stops when its client leaves
        try:
            await super().__call__(scope, receive, send)
        finally:
            watcher.cancel()
