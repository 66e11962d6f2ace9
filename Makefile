# mmext developer entry points. The environment is a venv at $(MMEXT_VENV).
MMEXT_VENV ?= $(CURDIR)/.venv
PY := $(MMEXT_VENV)/bin/python
PYTEST_ARGS ?=
export MMEXT_VENV

.PHONY: install test demo env clean-venv

install:  ## create/update the venv with the pinned stack (idempotent)
	bash tools/install_env.sh

test: install  ## run the test suite (the README's test command)
	$(PY) -m pytest tests -q $(PYTEST_ARGS)

demo: install  ## train + evaluate on the embedded demo data (CPU)
	PY=$(PY) bash tools/demo.sh

env:  ## print the environment report for bug reports
	$(PY) -m mmext.utils.env

clean-venv:
	rm -rf $(MMEXT_VENV)
