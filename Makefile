# The README's two commands are `make demo` and `make test`; .ci/run calls `make test`.
.PHONY: setup demo test lint harness protos bench api-docs

setup:
	@./scripts/setup.sh

demo: setup
	@./scripts/demo.sh

harness: setup
	@./scripts/build-harness.sh

test: setup
	@./scripts/test.sh

# ruff + mypy (also the first step of `make test`)
lint: setup
	@./scripts/lint.sh

protos: setup
	@.venv/bin/python scripts/gen_protos.py

# The backend API reference (HTML, from the docstrings of dra_framework.api) in build/api-docs.
api-docs: setup
	@.venv/bin/pdoc --docformat restructuredtext -o build/api-docs dra_framework.api
	@echo "==> build/api-docs/dra_framework/api.html"
