#!/usr/bin/env bash
# Builds the Go side of benchmarks/vs_go.py (benchmarks/go-driver: a DRA driver on
# k8s.io/dynamic-resource-allocation/kubeletplugin and a kubelet-like gRPC client) into a cache
# OUTSIDE the repo, next to the harness binaries (scripts/build-harness.sh):
#
#   ${DRA_HARNESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dra-framework/harness}/go-driver/bin/
#
# Rebuilt only when a hash of the module's sources, this script and the Go version changed;
# one build at a time (flock). Prints the bin directory on stdout. The repo is never written to.
set -euo pipefail
{
cd "$(dirname "$0")/.."
SRC_DIR=$PWD/benchmarks/go-driver
CACHE=${DRA_HARNESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dra-framework/harness}
OUT=$CACHE/go-driver
BIN=$OUT/bin

command -v go >/dev/null || { echo "build-go-driver: Go is not installed" >&2; exit 1; }
export GOFLAGS="-mod=mod -trimpath -buildvcs=false"
export GOTOOLCHAIN=${DRA_HARNESS_GOTOOLCHAIN:-auto}
export CGO_ENABLED=0
GOVERSION=$(go env GOVERSION)

mkdir -p "$BIN"
exec 9>"$OUT/.lock"
flock 9

HASH=$({ echo "$GOVERSION $GOFLAGS"; cat "$0"
         (cd "$SRC_DIR" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort | xargs cat)
       } | sha256sum | cut -c1-16)
if [ -x "$BIN/go-dra-driver" ] && [ -x "$BIN/dra-bench-client" ] && [ "$(cat "$BIN/.stamp" 2>/dev/null)" = "$HASH" ]; then
  echo "==> go-driver up to date" >&2
else
  echo "==> building go-driver (~1 min with a warm Go module cache)" >&2
  rm -rf "$OUT/src"
  mkdir -p "$OUT/src"
  (cd "$SRC_DIR" && tar cf - .) | (cd "$OUT/src" && tar xf -)
  start=$(date +%s)
  (cd "$OUT/src" && nice -n 10 go build -p 2 -ldflags "-s -w" -o "$BIN/.tmp/" ./cmd/go-dra-driver ./cmd/dra-bench-client)
  mv "$BIN/.tmp/go-dra-driver" "$BIN/.tmp/dra-bench-client" "$BIN/"
  rmdir "$BIN/.tmp"
  echo "$HASH" >"$BIN/.stamp"
  echo "==> built go-driver in $(($(date +%s) - start))s" >&2
fi
echo "$BIN"
exit 0
}
