"""Load harness: the same bounded load against each stack in one run, reported as figures and ratios."""
