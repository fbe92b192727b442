#!/usr/bin/env bash
# The whole test suite (`make test`, and `.ci/run` with CI=true).
# 0. scripts/lint.sh: ruff and mypy with zero findings (rule sets in pyproject.toml);
# 1. builds the Go harness (etcd, kube-apiserver, kubelet-dra-shim, allocator, cdi-check, and helm) for the
#    newest (1.37.2) and the oldest GA (1.34.4) Kubernetes, cached outside the repo;
# 2. runs every test against 1.37.2;
# 3. runs the backend conformance suite (docs/testing.md) for the built-in NVIDIA, FPGA, TPU and
#    sriov_nic (E810, ConnectX-6 Dx) backends, the example backend and examples/sriov-minimal;
# 4. runs the tests that talk to a real apiserver or kubelet, and the conformance suite, again
#    against 1.34.4.
# Without Go the harness tests skip with a reason; with CI=true they fail instead.
# Arguments are passed to pytest and skip steps 3 and 4 (e.g. `scripts/test.sh tests/cdi -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
OLDEST=1.34.4
[ $# -gt 0 ] || ./scripts/lint.sh   # seconds, before the harness build
have_go=0
if command -v go >/dev/null 2>&1; then
  have_go=1
  ./scripts/build-harness.sh
  [ $# -gt 0 ] || ./scripts/build-harness.sh "$OLDEST"
  ./scripts/build-helm.sh   # the Helm CLI of tests/deploy
elif [ "${CI:-}" = "true" ]; then
  echo "CI=true but Go is missing: the Kubernetes harness cannot be built" >&2
  exit 1
fi
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
conformance() {
  echo "==> conformance: nvidia, example, sriov-minimal, fpga, tpu, sriov-nic (Kubernetes ${DRA_HARNESS_K8S_VERSION:-default})"
  .venv/bin/python -m pytest -q --dra-conformance=nvidia --dra-config=examples/configs/nvidia-dgx-h100.yaml
  .venv/bin/python -m pytest -q --dra-conformance=example --dra-config=examples/configs/example.yaml
  # FakePciKernel plays the kernel for the rebinding writes; pci_bindings compares every VF's driver.
  .venv/bin/python -m pytest -q --dra-conformance=sriov-minimal --dra-config=examples/configs/sriov-minimal.yaml \
    --dra-host=dra_framework.testing.hosttree:FakePciKernel --dra-leftovers=dra_framework.testing:pci_bindings
  # Both FPGA families: DFL ports on the D5005 host, an Alveo card on the U250 host.
  .venv/bin/python -m pytest -q --dra-conformance=fpga --dra-config=examples/configs/fpga-d5005.yaml
  .venv/bin/python -m pytest -q --dra-conformance=fpga --dra-config=examples/configs/fpga-u250.yaml
  .venv/bin/python -m pytest -q --dra-conformance=tpu --dra-config=examples/configs/tpu-v5e-8.yaml
  # sriov_nic: the fake netlink's VF state lives in the host tree, so "nothing left behind" covers it too.
  for host in sriov-e810 sriov-cx6dx; do
    .venv/bin/python -m pytest -q --dra-conformance=sriov-nic --dra-config="examples/configs/$host.yaml" \
      --dra-host=dra_framework.testing.hosttree:FakePciKernel --dra-leftovers=dra_framework.testing:pci_bindings
  done
}
.venv/bin/python -m pytest
if [ "$have_go" = 1 ]; then
  conformance
  echo "==> again against Kubernetes $OLDEST (the oldest resource.k8s.io/v1 release)"
  DRA_HARNESS_K8S_VERSION=$OLDEST .venv/bin/python -m pytest -m k8s tests/e2e tests/slices tests/harness_tests tests/deploy tests/fpga tests/tpu tests/sriov_nic tests/explain
  DRA_HARNESS_K8S_VERSION=$OLDEST conformance
fi
