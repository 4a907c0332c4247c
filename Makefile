# Two entry points, both safe to run again on a fresh machine:
#   make run    set everything up, then open the TUI on the embedded default model and the demo profile
#   make test   set everything up, then run the whole test suite
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test bench setup clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	# torch first and pinned: the CPU build that lies on the machine, not GBs of CUDA.
	$(VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	$(VENV)/bin/localpers models --assemble > /dev/null
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/localpers tui --demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info
