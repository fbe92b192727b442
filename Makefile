# The README's two commands are `make demo` and `make test`; .ci/run calls `make test`.
.PHONY: setup demo test harness protos bench

setup:
	@./scripts/setup.sh

demo: setup
	@./scripts/demo.sh

harness: setup
	@./scripts/build-harness.sh

test: setup
	@./scripts/test.sh

protos: setup
	@.venv/bin/python scripts/gen_protos.py
