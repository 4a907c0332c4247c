# Two entry points, both safe to run again on a fresh machine:
#   make run    set everything up, then open the TUI on the embedded default model and the demo profile
#   make test   set everything up, then run the whole test suite
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

# Every package is pinned in constraints.txt, so a clone installs the same versions next month.
# pip's isolated build environments read PIP_CONSTRAINT (they ignore -c), so the build backends are pinned too.
CONSTRAINTS := $(CURDIR)/constraints.txt
export PIP_CONSTRAINT := $(CONSTRAINTS)

# llama.cpp compiles with -march=native by default (GGML_NATIVE=ON): the library then uses whatever the
# build machine has (AVX-512, AMX...) and dies with "Illegal instruction" on a CPU or VM without it; we
# saw exactly that with a wheel built on one machine and run on another. GGML_NATIVE=OFF compiles for
# the x86-64-v3 baseline (SSE4.2, AVX2, FMA, F16C: every x86-64 CPU since 2013) or plain ARMv8, so one
# build runs anywhere, and gives the same numbers on every machine. pip's wheel cache ignores CMAKE_ARGS
# (it would hand back a native wheel built earlier), so the portable wheel is built without it, once per
# version, into a folder of its own. LLAVA_BUILD=OFF skips llama.cpp's multimodal library (mtmd), which
# localpers never loads: 127 objects to compile instead of 178.
LLAMA_VERSION := $(shell sed -n 's/^llama_cpp_python==//p' constraints.txt)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF
LLAMA_WHEELS := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/localpers/wheels/llama-cpp-python-$(LLAMA_VERSION)-portable

.PHONY: run test bench setup clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	@ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl > /dev/null 2>&1 || \
	  echo "Building llama.cpp $(LLAMA_VERSION) for a portable CPU (about 10 minutes on two cores, once)..."
	ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl > /dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(VENV)/bin/python -m pip wheel --quiet --no-deps --no-cache-dir \
	    --no-binary llama-cpp-python -w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	# --force-reinstall: replace a native build an older setup may have left in the venv.
	$(VENV)/bin/python -m pip install --quiet --no-deps --force-reinstall --no-index --find-links $(LLAMA_WHEELS) \
	  llama-cpp-python==$(LLAMA_VERSION)
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
