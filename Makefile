# Everything starts from a bare `python3`: the first target that needs the environment makes it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000
EXAMPLES := examples/titanic examples/car_evaluation
# Committed with their sha256 pins in model.yaml: the source of truth, never rebuilt by a build.
EXAMPLE_FILES := $(foreach example,$(EXAMPLES),$(example)/model.yaml $(example)/model.joblib \
	$(example)/reference.json) examples/titanic/holdout.csv
PYTEST_ARGS ?=

.PHONY: help venv models retrain serve test test-fast lint format lock dist clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# The installer: uv (pinned, every wheel's sha256 in requirements/bootstrap.lock, installed by pip)
# installs the hash-checked lock several times faster than pip. When uv cannot be installed or
# fails, pip installs the same lock; INSTALLER=pip uses pip alone.
INSTALLER ?= uv
PIP_INSTALL := $(BIN)/python -m pip install --quiet
UV_INSTALL := $(BIN)/uv pip install --quiet --python $(BIN)/python --system-certs

$(STAMP): requirements/dev.lock requirements/bootstrap.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@if [ "$(INSTALLER)" = uv ] \
		&& $(PIP_INSTALL) --only-binary=:all: --require-hashes -r requirements/bootstrap.lock \
		&& $(UV_INSTALL) --require-hashes -r requirements/dev.lock \
		&& $(UV_INSTALL) --no-deps -e .; then \
		echo "$(VENV): installed with uv"; \
	else \
		[ "$(INSTALLER)" = pip ] || echo "$(VENV): uv did not install the lock; using pip" >&2; \
		$(PIP_INSTALL) --require-hashes -r requirements/dev.lock \
		&& $(PIP_INSTALL) --no-deps -e . && echo "$(VENV): installed with pip"; \
	fi
	@touch $(STAMP)

venv: $(STAMP)  ## Create .venv with the locked dependencies

# No file rule ties an artefact to train.py: a fresh clone's mtimes are arbitrary, and a retrain on
# another CPU can write other bytes (and another pin) than the committed ones.
models: $(STAMP)  ## Check the committed example artefacts against their pins (never retrains)
	@for file in $(EXAMPLE_FILES); do test -f "$$file" || { echo "$$file is missing:" \
		"restore it with 'git checkout -- $$file' (or re-create the examples: make retrain)" >&2; \
		exit 1; }; done
	$(BIN)/fastinfer models $(EXAMPLES)

retrain: $(STAMP)  ## Re-create the example artefacts and pins with train.py (then commit them)
	$(BIN)/python examples/titanic/train.py
	$(BIN)/python examples/car_evaluation/train.py
	@git status --short -- examples 2>/dev/null || true

serve: models  ## Serve both examples on http://127.0.0.1:8000
	$(BIN)/fastinfer serve --host $(HOST) --port $(PORT) $(EXAMPLES)

test: models  ## Run the whole test suite (slow integration tests included)
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: models  ## The quick loop: every test but the slow ones (real server processes, containers)
	$(BIN)/pytest -m "not slow and not container" $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff, mypy, the layering contract (import-linter) and bandit
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench
	$(BIN)/mypy
	$(BIN)/lint-imports  # the layering contract in pyproject.toml: no upward imports, no cycles
	$(BIN)/bandit -c pyproject.toml -r src --severity-level high --quiet

format: $(STAMP)  ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff format src tests examples bench
	$(BIN)/ruff check --fix src tests examples bench

# runtime.lock (the image's) includes the grpc extra: the image can serve gRPC when asked to.
lock: ## Re-resolve requirements/*.lock from pyproject.toml
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet pip-tools
	.lock-venv/bin/pip-compile --quiet --no-emit-index-url --no-emit-find-links --strip-extras \
		--generate-hashes --extra grpc -o requirements/runtime.lock pyproject.toml
	.lock-venv/bin/pip-compile --quiet --no-emit-index-url --no-emit-find-links --strip-extras \
		--generate-hashes --extra dev -o requirements/dev.lock pyproject.toml
	.lock-venv/bin/pip-compile --quiet --no-emit-index-url --no-emit-find-links --strip-extras \
		--generate-hashes --extra dev --extra bench -o requirements/bench.lock pyproject.toml

# The sdist and the wheel (uv build: the wheel is built from the sdist, so the sdist is complete).
dist: $(STAMP)  ## Build the sdist and the wheel into dist/ (pip install dist/fastinfer-*.whl)
	@test -x $(BIN)/uv || $(PIP_INSTALL) --only-binary=:all: --require-hashes -r requirements/bootstrap.lock
	rm -rf dist
	$(BIN)/uv build --quiet --system-certs --out-dir dist .
	@ls dist

clean:  ## Remove the environments, build outputs and caches (the committed examples stay)
	rm -rf $(VENV) .lock-venv $(DEPLOY_VENV) build/deploy dist examples/*/__pycache__ .pytest_cache .mypy_cache .ruff_cache .import_linter_cache

# The deploy/ checkers live in their own environment: checkov pins many packages of its own.
DEPLOY_VENV ?= .deploy-venv
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed-stamp

$(DEPLOY_STAMP): requirements/deploy-checks.lock
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements/deploy-checks.lock
	@touch $(DEPLOY_STAMP)

.PHONY: check-deploy
check-deploy: $(DEPLOY_STAMP)  ## Offline checks of deploy/: kustomize, kubernetes-validate, checkov, hadolint, yamllint
	PATH="$(CURDIR)/$(DEPLOY_VENV)/bin:$$PATH" deploy/check.sh

# By hand only, never in CI: several minutes of load on this machine (BENCH_DURATION=3 for a quick pass).
.PHONY: bench
bench: $(STAMP) models  ## Benchmark fastinfer vs a naive FastAPI app and the HTTP floor -> docs/benchmarks.md
	@$(BIN)/python -c "import matplotlib" 2>/dev/null || \
		$(BIN)/python -m pip install --quiet --require-hashes -r requirements/bench.lock
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.grpc_v2  # v2 over gRPC beside v2 over REST -> bench/results/grpc.md
	PYTHONPATH=src $(BIN)/python -m bench.idle --runs 5 --seconds 30 --out bench/results/idle.md

# The gRPC stubs are committed (the server imports them; grpcio-tools is not a dependency). This
# regenerates them from the .proto with grpcio-tools at the locked grpcio's version, in a
# throwaway environment: the generated code then needs at most the locked grpcio and protobuf.
GRPC_TOOLS_VENV ?= /tmp/fastinfer-grpc-tools
GRPC_PROTO := src/fastinfer/grpc/proto/grpc_service.proto
.PHONY: grpc-stubs
grpc-stubs:  ## Regenerate the committed gRPC stubs (src/fastinfer/grpc/proto) from grpc_service.proto
	test -x $(GRPC_TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(GRPC_TOOLS_VENV)
	$(GRPC_TOOLS_VENV)/bin/python -m pip install --quiet \
		"grpcio-tools==$$(sed -n 's/^grpcio==\([0-9.]*\).*/\1/p' requirements/dev.lock)"
	$(GRPC_TOOLS_VENV)/bin/python -m grpc_tools.protoc -I src --python_out=src --pyi_out=src \
		--grpc_python_out=src $(GRPC_PROTO)
