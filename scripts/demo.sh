#!/usr/bin/env bash
# `make demo`: the node daemon on the bundled DGX-H100 sample host, against real Kubernetes parts.
# Builds the Go harness first (cached; the first build takes a while, later runs seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || { echo "make demo needs Go 1.26+ to build etcd, kube-apiserver and the kubelet shim" >&2; exit 1; }
./scripts/build-harness.sh
exec .venv/bin/python scripts/demo.py "$@"
