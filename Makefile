# Every target sets up what it needs: a virtual environment in .venv with the project and its demo and test extras,
# pinned by constraints.txt so that pip resolves at once and the same versions are used everywhere.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv test lint typecheck unit crds demo bench emulator clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[demo,test]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check operator tests
	$(BIN)/ruff format --check operator tests
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest

test: lint typecheck unit

crds: venv
	$(BIN)/python -m mce_operator.crdgen > crds/sagemaker.mce.dev_multicontainerendpoints.yaml

demo: venv
	$(BIN)/mce-operator demo

bench: venv
	$(BIN)/python -m mce_operator.bench

emulator: venv
	$(BIN)/mce-emulator

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
