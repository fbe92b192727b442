#!/usr/bin/env bash
# The whole test suite (`make test`, and `.ci/run` with CI=true).
# 1. builds the Go harness (etcd, kube-apiserver, kubelet-dra-shim, allocator, cdi-check) for the
#    newest (1.37.2) and the oldest GA (1.34.4) Kubernetes, cached outside the repo;
# 2. runs every test against 1.37.2;
# 3. runs the tests that talk to a real apiserver or kubelet again against 1.34.4.
# Without Go the harness tests skip with a reason; with CI=true they fail instead.
# Arguments are passed to pytest and skip step 3 (e.g. `scripts/test.sh tests/cdi -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
OLDEST=1.34.4
have_go=0
if command -v go >/dev/null 2>&1; then
  have_go=1
  ./scripts/build-harness.sh
  [ $# -gt 0 ] || ./scripts/build-harness.sh "$OLDEST"
elif [ "${CI:-}" = "true" ]; then
  echo "CI=true but Go is missing: the Kubernetes harness cannot be built" >&2
  exit 1
fi
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
.venv/bin/python -m pytest
if [ "$have_go" = 1 ]; then
  echo "==> again against Kubernetes $OLDEST (the oldest resource.k8s.io/v1 release)"
  DRA_HARNESS_K8S_VERSION=$OLDEST .venv/bin/python -m pytest -m k8s tests/e2e tests/slices tests/harness_tests
fi
