"""The server processes that serve the backends' apps: gunicorn for the Flask stack, uvicorn for the FastAPI one (their
masters, each worker's start, supervision and exit, uvicorn's protocol, accepting by load). Above the backends, below the
tools that start them."""
