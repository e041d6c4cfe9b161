"""The FastAPI stack: one pure-ASGI endpoint that hands every request to the neutral core (which routes
with the werkzeug Map Flask uses), model code in a bounded executor, uvicorn held to gunicorn's rules."""
