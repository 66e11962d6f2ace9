# mmext developer entry points. The environment is a venv at $(MMEXT_VENV).
MMEXT_VENV ?= $(CURDIR)/.venv
PY := $(MMEXT_VENV)/bin/python
PYTEST_ARGS ?=
# where `make demo` generates and reads its data (the demo configs read it
# from $MMEXT_DEMO_DATA), e.g. `make demo DEMO_DATA=/scratch/mmext_demo`
DEMO_DATA ?= data/demo
export MMEXT_VENV

.PHONY: install test demo env clean-venv

install:  ## create/update the venv with the pinned stack (idempotent)
	bash tools/install_env.sh

test: install  ## run the test suite (the README's test command)
	$(PY) -m pytest tests -q $(PYTEST_ARGS)

demo: install  ## train + evaluate on the embedded demo data (CPU)
	MMEXT_DEMO_DATA=$(DEMO_DATA) PY=$(PY) bash tools/demo.sh

env:  ## print the environment report for bug reports
	$(PY) -m mmext.apis.env

clean-venv:
	rm -rf $(MMEXT_VENV)
