# OnTrackio platform. `make run` starts everything with a demo tenant; `make test` runs the suite.
# Everything the project needs is installed from here: a private uv in .tools/, the locked
# dependencies in .venv/, generated gRPC code from protos/.

PYTHON ?= python3.11
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV_PY := .venv/bin/python
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv

PROTO_FILES := $(shell find protos -name '*.proto')

.PHONY: help deps system-packages protos run test test-unit lint bench mutate clean

help:
	@echo "make run    - start all services, the gateway and a demo tenant"
	@echo "make test   - install what is needed and run the whole test suite"
	@echo "make bench  - measure against bare baselines (table + bench-results/*.json)"
	@echo "make mutate - mutation check of the core modules (slow; docs/testing.md)"

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

# Distribution packages the tests' counterparts need: xmlsec1 (pysaml2 signs the test IdP's
# responses with it) and chromium (the browser tests). Installed once, when missing.
SYSTEM_BINARIES := xmlsec1 chromium
system-packages:
	@missing=""; for b in $(SYSTEM_BINARIES); do command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	  || { echo "could not install$$missing (run as root, or install them)"; exit 1; }; \
	fi

deps: .venv/.synced

# Generated code lands beside the hand-written code of each service (services/<svc>/v1/),
# never committed: .gen/ontrackio is a link to services/, so protoc's module paths
# (ontrackio.<svc>.v1) match the import root.
.gen/stamp: $(PROTO_FILES) .venv/.synced
	rm -rf .gen && mkdir -p .gen && ln -s ../services .gen/ontrackio
	find services -path '*/v1/*_pb2*.py*' -delete
	$(VENV_PY) -m grpc_tools.protoc -Iprotos --python_out=.gen --pyi_out=.gen \
	  --grpc_python_out=.gen $(PROTO_FILES)
	touch $@

protos: .gen/stamp

run: protos
	$(VENV_PY) -m ontrackio.devtools.run

test: protos system-packages
	$(VENV_PY) -m pytest

test-unit: protos
	$(VENV_PY) -m pytest tests/unit

lint: deps
	.venv/bin/ruff check services tests bench

bench: protos system-packages
	$(VENV_PY) -m bench.run

# Mutation check (docs/testing.md "Mutation check"); not part of `make test` or CI. mutmut
# names a mutated module after its path, so it runs in .mutate/, where `ontrackio` is a link
# to services/ (as in .gen/); it copies that tree, tests/ and pyproject.toml ([tool.mutmut])
# into .mutate/mutants/ and runs the unit tests there, MUTATE_JOBS at a time. A run without
# MUTANTS starts afresh; MUTANTS (globs: MUTANTS='ontrackio.core.outbox.*') keeps the earlier
# results and runs only those mutants again, against the tests as they are now. The last line
# counts the verdicts per module. Afterwards: cd .mutate && ../.venv/bin/mutmut show <name>.
MUTATE_JOBS ?= 2
MUTANTS ?=

mutate: protos
	$(if $(MUTANTS),,rm -rf .mutate)
	mkdir -p .mutate
	ln -sfn ../services .mutate/ontrackio
	ln -sfn ../tests .mutate/tests
	ln -sfn ../pyproject.toml .mutate/pyproject.toml
	cd .mutate && ../.venv/bin/mutmut run --max-children $(MUTATE_JOBS) $(foreach m,$(MUTANTS),'$(m)')
	cd .mutate && ../.venv/bin/mutmut results
	cd .mutate && ../.venv/bin/mutmut results --all true \
	  | sed -E 's/^ *([a-z_.]+)\.x[_ǁ].*: (.*)$$/\1: \2/' | sort | uniq -c

clean:
	rm -rf .gen .run bench-results .mutate
	find services -path '*/v1/*_pb2*.py*' -delete
