"""The FastAPI stack: one pure-ASGI endpoint that hands every request to the neutral core (which
routes with the same werkzeug Map Flask uses), model code in a bounded executor, uvicorn to serve it."""
