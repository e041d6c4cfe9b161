"""The tools that make the Flask -> FastAPI switch safe, above both backends: the CLI, the launcher (DRUM_SERVER_TYPE),
parity, side-by-side A/B, replay, and the running of real servers; the runtime they start is compat/runtime/."""
