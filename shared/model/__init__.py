"""Loading a DRUM model directory and running it: custom.py hooks, the CustomTask class API,
scikit-learn artifacts, target types and DRUM's output validation."""
