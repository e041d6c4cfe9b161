# The two commands of the README: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ADDRESS ?= 127.0.0.1:8080
MODEL ?= examples/models/regression
PYTEST_ARGS ?=
# pytest-xdist processes; each module's tests stay in one (they share its servers)
PYTEST_WORKERS ?= auto
PYTEST := $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: run test test-fast test-busy fuzz reference bench bench-reference overload clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "drum-compat needs Python 3.10+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# the server and the tools the README runs beside it (parity, replay, ab): a server image needs none of the extras
$(VENV)/.installed: setup.cfg setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[parity,ab]'
	touch $@

$(VENV)/.installed-test: setup.cfg setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

# the model's own requirements.txt first, as DRUM's images install it
run: $(VENV)/.installed
	if [ -f $(MODEL)/requirements.txt ]; then $(BIN)/python -m pip install --quiet -r $(MODEL)/requirements.txt; fi
	$(BIN)/drum-compat server --code-dir $(MODEL) --address $(ADDRESS)

test: $(VENV)/.installed-test
	$(PYTEST) $(PYTEST_ARGS)

# the in-process part only: no server started
test-fast: $(VENV)/.installed-test
	$(PYTEST) -m 'not servers' $(PYTEST_ARGS)

# the server tests with every core busy (two CPU-bound processes per core beside them), as on a shared CI runner
test-busy: $(VENV)/.installed-test
	$(BIN)/python -m tests.busy $(PYTEST) -m servers $(PYTEST_ARGS)

# DRUM 1.18 itself, in a venv of its own, for the tests that compare drum-compat with the real thing
DRUM_VENV ?= .venv-drum
reference: $(DRUM_VENV)/bin/drum
$(DRUM_VENV)/bin/drum:
	if [ -L $(DRUM_VENV) ] && [ ! -e $(DRUM_VENV) ]; then rm $(DRUM_VENV); fi  # a dangling link an old checkout left
	$(PYTHON) -m venv $(DRUM_VENV)
	$(DRUM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DRUM_VENV)/bin/python -m pip install --quiet 'datarobot-drum==1.18.*' 'openai>=1.30'  # chat models' types

# the differential fuzzing tests with new random cases, many more of them (each stack in-process and over sockets)
FUZZ_EXAMPLES ?= 5000
fuzz: $(VENV)/.installed-test
	DRUM_COMPAT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/test_fuzz.py -x $(PYTEST_ARGS)

bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench $(BENCH_ARGS)

# DRUM 1.18 for `make bench` to compare with (the same venv the reference tests use)
bench-reference: reference

$(VENV)/.installed-bench: setup.cfg setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@ $(VENV)/.installed $(VENV)/.installed-test

# the overload check on every stack, with tight limits and with the defaults
overload: $(VENV)/.installed-test
	$(BIN)/python -m bench.overload $(OVERLOAD_ARGS)
	$(BIN)/python -m bench.overload --defaults $(OVERLOAD_ARGS)

clean:
	rm -rf $(VENV) $(DRUM_VENV) *.egg-info .pytest_cache
