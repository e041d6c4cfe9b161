"""Proof that both stacks answer alike for a user's own model: `drum-compat parity` (cases, comparison,
reports, differential fuzzing), also what the project's own CI runs on every example model."""
