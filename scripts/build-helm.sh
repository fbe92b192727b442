#!/usr/bin/env bash
# Builds the Helm CLI the chart tests (tests/deploy) use, from the Go module proxy, into the
# harness cache OUTSIDE the repo (same cache root, lock and stamp conventions as
# scripts/build-harness.sh):
#
#   ${DRA_HARNESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dra-framework/harness}/helm-<version>/bin/helm
#
# usage: scripts/build-helm.sh [HELM_VERSION]   (default: $DRA_HARNESS_HELM_VERSION or v3.22.0)
#
# `go install helm.sh/helm/v3/cmd/helm@<version>` builds with helm's own go.mod/go.sum (checked
# against the checksum database), so nothing is vendored here. Rebuilt only when the hash of
# this script, the version and the Go settings changes; a warm run takes well under a second.
# A cold build takes ~6 min on 2 cores (most of it downloading and compiling client-go).
set -euo pipefail
{
cd "$(dirname "$0")/.."
V=${1:-${DRA_HARNESS_HELM_VERSION:-v3.22.0}}
V=v${V#v}
MAJOR=${V%%.*}
CACHE=${DRA_HARNESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dra-framework/harness}
OUT=$CACHE/helm-$V
BIN=$OUT/bin

command -v go >/dev/null || { echo "build-helm: Go is not installed" >&2; exit 1; }
export GOFLAGS="-mod=mod -trimpath -buildvcs=false"
export GOTOOLCHAIN=${DRA_HARNESS_GOTOOLCHAIN:-auto}
export CGO_ENABLED=0
mkdir -p "$BIN"
exec 9>"$OUT/.lock"
flock 9

log() { printf '==> helm %s: %s\n' "$V" "$*" >&2; }
hash=$( { echo "$V $(go env GOVERSION) $GOFLAGS $GOTOOLCHAIN"; cat "$0"; } | sha256sum | cut -c1-16)
if [ -x "$BIN/helm" ] && [ "$(cat "$BIN/.helm.stamp" 2>/dev/null)" = "$hash" ]; then
  log "up to date in $BIN"
  exit 0
fi
log "building helm (cold: ~6 min on 2 cores)"
start=$(date +%s)
tmp=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# The version stamp helm's Makefile sets, so `helm version` reports the real release.
GOBIN=$tmp nice -n 10 go install -ldflags "-s -w -X helm.sh/helm/$MAJOR/internal/version.version=$V" \
  "helm.sh/helm/$MAJOR/cmd/helm@$V"
mv "$tmp/helm" "$BIN/helm"
echo "$hash" >"$BIN/.helm.stamp"
log "built in $(($(date +%s) - start))s: $BIN/helm"
exit 0
}
