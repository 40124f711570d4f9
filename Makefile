# Every target sets up what it needs: a virtual environment in .venv with the project and its demo and test extras,
# pinned by constraints.txt so that pip resolves at once and the same versions are used everywhere.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# The test control plane (kube-apiserver + etcd, built from controlplane/ with Go): where its binaries live.
CONTROLPLANE_DIR ?= $(or $(MCE_CONTROLPLANE_DIR),$(CURDIR)/.cache/controlplane)
export MCE_CONTROLPLANE_DIR := $(CONTROLPLANE_DIR)

.PHONY: venv test lint typecheck unit soak crds demo bench emulator clean \
	controlplane cluster cluster-tier cluster-up demo-cluster

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

# The fast tier: everything but tests/cluster and the soak.
unit: venv
	$(BIN)/pytest -m "not cluster and not soak"

# kube-apiserver and etcd, built only when missing or out of date (see controlplane/build.sh).
controlplane:
	controlplane/build.sh "$(CONTROLPLANE_DIR)"

# The cluster tier: tests/cluster against a real kube-apiserver + etcd, with the real kubectl.
cluster: venv controlplane
	$(BIN)/pytest -m cluster tests/cluster

# Run by `make test`: the cluster tier where Go can build the control plane. In CI (CI=true) a missing Go
# is a failure; elsewhere it is said loudly, since the fast tier alone proves nothing about Kubernetes.
cluster-tier:
	@if command -v go >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory cluster; \
	elif [ "$$CI" = true ]; then \
		echo "make test: Go is required in CI to build the control plane for tests/cluster." >&2; exit 1; \
	else \
		echo "************************************************************************************"; \
		echo "* make test: tests/cluster (the real kube-apiserver + etcd tier) was NOT run:        *"; \
		echo "* Go is not installed. Install Go 1.24+ (https://go.dev/doc/install) and run again. *"; \
		echo "************************************************************************************"; \
	fi

# A bounded soak of the operator process: random changes, API faults and SIGKILLs (about 90 s).
soak: venv
	$(BIN)/pytest -m soak

test: lint typecheck unit soak cluster-tier

crds: venv
	$(BIN)/python -m mce_operator.crdgen > crds/sagemaker.mce.dev_multicontainerendpoints.yaml

demo: venv
	$(BIN)/mce-operator demo

# The same demo against a real kube-apiserver + etcd, showing real `kubectl get mce --watch` output.
demo-cluster: venv controlplane
	$(BIN)/mce-operator demo --control-plane

# A control plane for a person: prints the `export KUBECONFIG=...` line; Ctrl-C stops it.
cluster-up: venv controlplane
	$(BIN)/python -m mce_operator.testkit.controlplane up --workdir .cache/cluster

bench: venv
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[demo,test,bench]'
	$(BIN)/python -m mce_operator.bench

emulator: venv
	$(BIN)/mce-emulator

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
