"""`python -m fastapi_backend.serve`: uvicorn run in-process with the settings the launcher resolved
(compat.settings), each worker building the app from the environment after it starts."""
from __future__ import annotations

import uvicorn

from compat.options import ServerOptions


def main() -> None:
    options = ServerOptions.from_environ()
    uvicorn.run(
        "fastapi_backend.asgi:app_from_environment",
        factory=True,
        host=options.host,
        port=options.port,
        http="httptools",
        **(options.server_settings or {}),
    )


if __name__ == "__main__":
    main()
