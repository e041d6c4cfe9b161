"""Guards applied identically by both backends: each module holds one guard's logic as plain values
in and out; the Flask and FastAPI adapters only call it."""
