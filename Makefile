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

.PHONY: help deps protos run test test-unit lint bench clean

help:
	@echo "make run    - start all services, the gateway and a demo tenant"
	@echo "make test   - install what is needed and run the whole test suite"
	@echo "make bench  - measure against bare baselines (table + bench-results/*.json)"

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

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

test: protos
	$(VENV_PY) -m pytest

test-unit: protos
	$(VENV_PY) -m pytest tests/unit

lint: deps
	.venv/bin/ruff check services tests bench

bench: protos
	$(VENV_PY) -m bench.run

clean:
	rm -rf .gen .run bench-results
	find services -path '*/v1/*_pb2*.py*' -delete
