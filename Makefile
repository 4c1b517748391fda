# `make demo` and `make test` set up .venv from requirements.txt when it is missing or out of date.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: venv demo test test-fast demo-data bench clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# visdom ships only as a source archive whose setup needs pkg_resources (setuptools < 81)
	$(PY) -m pip install -q 'setuptools<81' wheel
	$(PY) -m pip install -q --no-build-isolation -r requirements.txt
	touch $@

venv: $(VENV)/.installed

## Enhance datasets/test_data/*/ into datasets/result/ with checkpoints/LLE_model.pth
demo: venv
	$(PY) lowlight_test.py

## The whole test suite (CPU; the slow tests run subprocesses and torchrun)
test: venv
	$(PY) -m pytest -q

## The suite without the tests marked slow (over ~4 s each)
test-fast: venv
	$(PY) -m pytest -q -m "not slow"

## Build the demo training data (datasets/data/) from scikit-image's photos
demo-data: venv
	$(PY) -m datasets.prepare_demo

## Performance figures of docs/performance.md
bench: venv
	$(PY) benchmarks/bench_enhancer.py --repeats 5
	$(PY) benchmarks/bench_inference.py --repeats 3
	$(PY) benchmarks/bench_training.py
	$(PY) benchmarks/bench_export.py
	$(PY) benchmarks/bench_curve_scale.py --repeats 2

clean:
	rm -rf datasets/result .pytest_cache
