# clara-rt developer entry points. `make demo` and `make test` work on a fresh machine:
# they create .venv, install the project (building the C++ scheduler) and run.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test cpp-test bench lint format clean gpu-check gpu-wheels

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall (and rebuild the extension) whenever the build inputs change.
$(STAMP): $(BIN)/python pyproject.toml setup.py $(wildcard csrc/*.cpp csrc/*.hpp)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel pybind11
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# A GPU machine without network (benchmarks/README.md, "GPU check"): run `make gpu-wheels` here
# (with network), bring the checkout and its .gpu/ folder there and run `make gpu-check` with the
# Python that has CuPy. Results land in .gpu/out.
GPU_PYTHON ?= python3
GPU_PYTHON_VERSION ?= 3.12
GPU_WHEELS := pydicom==3.0.2 nibabel==5.4.2 highdicom==0.28.2 pyjpegls

gpu-check:
	PYTHON=$(GPU_PYTHON) benchmarks/gpu_check.sh

gpu-wheels:
	mkdir -p .gpu/whl
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --implementation cp \
	  --python-version $(GPU_PYTHON_VERSION) --platform manylinux_2_28_x86_64 \
	  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/whl $(GPU_WHEELS)
	@ls .gpu/whl

# The scheduler's C++ tests alone: unit tests, then the stress test under ThreadSanitizer
# (tests/cpp/test_cpp.py builds both with g++; `make test` runs them too).
cpp-test: $(STAMP)
	$(BIN)/python -m pytest -q tests/cpp

lint: $(STAMP)
	$(BIN)/ruff check .
	@if command -v clang-format >/dev/null; then \
	  clang-format --dry-run --Werror csrc/*.cpp csrc/*.hpp tests/cpp/*.cpp tests/cpp/*.hpp && echo "clang-format: clean"; \
	else echo "clang-format not installed: C++ formatting not checked"; fi

format: $(STAMP)
	$(BIN)/ruff check --fix .
	@command -v clang-format >/dev/null && clang-format -i csrc/*.cpp csrc/*.hpp || true

clean:
	rm -rf build dist *.egg-info clara_rt/_core*.so .pytest_cache .benchmarks
