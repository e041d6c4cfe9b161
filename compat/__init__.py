"""What makes the Flask -> FastAPI switch safe: DRUM's command-line options and environment variables,
the settings table, the server selector, the launcher and each instance's own files, and the CLI."""
