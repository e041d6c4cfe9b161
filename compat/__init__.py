"""What makes the Flask -> FastAPI switch safe: DRUM's command-line options and environment
variables, the server selector, the launchers, and (later) the parity and A/B tools."""
