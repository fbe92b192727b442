#!/usr/bin/env bash
# Builds the real-Kubernetes test harness (etcd, kube-apiserver, kubelet-dra-shim,
# kube-scheduler, dra-allocator, cdi-check) from the Go module proxy into a cache OUTSIDE the repo:
#
#   ${DRA_HARNESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dra-framework/harness}/k8s-<version>/bin/
#
# usage: scripts/build-harness.sh [K8S_VERSION]   (default: $DRA_HARNESS_K8S_VERSION or the
#        version pinned in tests/harness/k8s/go.mod)
#
# Each binary is rebuilt only when a hash of its module's sources (plus this script, the
# Kubernetes version and the Go version) changed, so a warm run takes well under a second.
# Modules are copied into the cache and built there: for the pinned version with the
# committed go.mod/go.sum, for any other version with a go.mod generated from that
# Kubernetes tag (tests/harness/gen-gomod.sh). The repo is never written to.
# See tests/harness/README.md.
set -euo pipefail
# The braces make bash parse the whole script before running it, so editing or checking
# out this file during a (long) build cannot derail the running build.
{
cd "$(dirname "$0")/.."
REPO=$PWD
H=$REPO/tests/harness

PINNED=$(sed -n 's/^[[:space:]]*k8s.io\/kubernetes v\([0-9.]*\)$/\1/p' "$H/k8s/go.mod" | head -1)
V=${1:-${DRA_HARNESS_K8S_VERSION:-$PINNED}}
V=${V#v}
MINOR=${V#1.}           # 1.37.2 -> 37.2; staging modules are v0.37.2
CACHE=${DRA_HARNESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dra-framework/harness}
OUT=$CACHE/k8s-$V
BIN=$OUT/bin
SRC=$OUT/src

command -v go >/dev/null || { echo "build-harness: Go is not installed" >&2; exit 1; }

# Deterministic Go settings, whatever the caller's environment says (harness.md 1.4):
# -mod=mod keeps builds working when go.sum lacks an entry (it is updated in the cache
# copy only); GOTOOLCHAIN=auto lets a module that declares a newer `go` line fetch that
# toolchain from the proxy instead of failing under GOTOOLCHAIN=local. GOMODCACHE and
# GOCACHE stay at their defaults so CI on the same machine reuses them.
export GOFLAGS="-mod=mod -trimpath -buildvcs=false"
export GOTOOLCHAIN=${DRA_HARNESS_GOTOOLCHAIN:-auto}
export CGO_ENABLED=0
GOVERSION=$(go env GOVERSION)

mkdir -p "$BIN" "$SRC"
# One build per cache dir at a time (parallel pytest sessions, make harness + make test).
exec 9>"$OUT/.lock"
flock 9

log() { printf '==> harness %s: %s\n' "$V" "$*" >&2; }

# Hash of everything that determines a module's binaries.
module_hash() {
  { echo "$V $GOVERSION $GOFLAGS $GOTOOLCHAIN"
    cat "$0" "$H/gen-gomod.sh"
    (cd "$H/$1" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort | xargs cat)
  } | sha256sum | cut -c1-16
}

up_to_date() { [ -x "$BIN/$1" ] && [ "$(cat "$BIN/.$1.stamp" 2>/dev/null)" = "$2" ]; }

# prepare_module NAME: fresh copy of tests/harness/NAME in $SRC/NAME with a go.mod for $V.
prepare_module() {
  local name=$1 dir=$SRC/$1 modpath
  rm -rf "$dir"
  mkdir -p "$dir"
  (cd "$H/$name" && tar cf - --exclude=go.mod --exclude=go.sum .) | (cd "$dir" && tar xf -)
  if [ "$V" = "$PINNED" ]; then
    cp "$H/$name/go.mod" "$H/$name/go.sum" "$dir/"
    return
  fi
  modpath=$(sed -n 's/^module //p' "$H/$name/go.mod")
  log "generating go.mod of $name for Kubernetes $V"
  case $name in
    k8s) "$H/gen-gomod.sh" "$V" "$dir" "$modpath" ;;
    tools)
      # No k8s.io/kubernetes here: plain staging releases, no replace directives.
      local cdi
      cdi=$(sed -n 's/^[[:space:]]*tags.cncf.io\/container-device-interface \(v[^ ]*\)$/\1/p' "$H/tools/go.mod")
      (cd "$dir" && go mod init "$modpath" >/dev/null 2>&1 &&
        go get "k8s.io/dynamic-resource-allocation@v0.$MINOR" "k8s.io/client-go@v0.$MINOR" \
          "k8s.io/api@v0.$MINOR" "k8s.io/apimachinery@v0.$MINOR" \
          "tags.cncf.io/container-device-interface@$cdi" && go mod tidy) ;;
    etcd)
      local ev
      ev=$(etcd_version)
      log "etcd $ev (upstream's pin for Kubernetes $V)"
      (cd "$dir" && go mod init "$modpath" >/dev/null 2>&1 &&
        go get "go.etcd.io/etcd/server/v3@$ev" && go mod tidy) ;;
  esac
}

# The etcd release upstream tests this Kubernetes tag with (hack/lib/etcd.sh), or the
# newest patch of that minor when the exact one is not on the proxy. DRA_HARNESS_ETCD_VERSION overrides.
etcd_version() {
  if [ -n "${DRA_HARNESS_ETCD_VERSION:-}" ]; then echo "v${DRA_HARNESS_ETCD_VERSION#v}"; return; fi
  local dir want minor
  dir=$(go mod download -json "k8s.io/kubernetes@v$V" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  want=v$(sed -n 's/^ETCD_VERSION=\${ETCD_VERSION:-\([0-9.]*\)}.*/\1/p' "$dir/hack/lib/etcd.sh")
  if go mod download "go.etcd.io/etcd/server/v3@$want" >/dev/null 2>&1; then echo "$want"; return; fi
  minor=$(echo "$want" | cut -d. -f1,2)
  go list -m -versions go.etcd.io/etcd/server/v3 | tr ' ' '\n' | grep "^$minor\.[0-9]*$" | sort -V | tail -1
}

# The version stamp upstream's build puts in (hack/lib/version.sh); without it the
# binaries report v0.0.0-master and the Node's kubeletVersion is wrong.
LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDFLAGS+=" -X $pkg.gitVersion=v$V -X $pkg.gitMajor=1 -X $pkg.gitMinor=${MINOR%%.*}"
  LDFLAGS+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

# Kubelet APIs the shim uses changed in 1.35, 1.36 and 1.37; build tags select the matching
# compat_*.go files (tests/harness/k8s/cmd/kubelet-dra-shim).
TAGS=""
[ "${MINOR%%.*}" -lt 37 ] && TAGS+="k8s_pre137,"
[ "${MINOR%%.*}" -lt 36 ] && TAGS+="k8s_pre136,"
[ "${MINOR%%.*}" -lt 35 ] && TAGS+="k8s_pre135,"
TAGS=${TAGS%,}

# build MODULE BINARY PACKAGE
build() {
  local mod=$1 bin=$2 pkg=$3 hash start
  hash=$(module_hash "$mod")
  if up_to_date "$bin" "$hash"; then
    log "$bin up to date"
    return
  fi
  if [ "$(cat "$SRC/.$mod.prepared" 2>/dev/null)" != "$hash" ]; then
    prepare_module "$mod"
    echo "$hash" >"$SRC/.$mod.prepared"
  fi
  log "building $bin (a cold build of everything takes ~5 min on 2 cores, kube-apiserver most of it)"
  start=$(date +%s)
  (cd "$SRC/$mod" && nice -n 10 go build -p 2 -tags "$TAGS" -ldflags "$LDFLAGS" -o "$BIN/$bin.tmp" "$pkg")
  mv "$BIN/$bin.tmp" "$BIN/$bin"
  echo "$hash" >"$BIN/.$bin.stamp"
  log "built $bin in $(($(date +%s) - start))s"
}

# Cheapest first, so a broken toolchain shows up fast.
build tools dra-allocator ./cmd/dra-allocator
build tools cdi-check ./cmd/cdi-check
build etcd etcd .
build k8s kube-apiserver ./cmd/kube-apiserver
build k8s kubelet-dra-shim ./cmd/kubelet-dra-shim
build k8s kube-scheduler ./cmd/kube-scheduler

# Facts the pytest fixtures need, derived from this exact version (cheap, so always).
"$BIN/kubelet-dra-shim" --print-dra-gates >"$BIN/dra-gates.txt.tmp" && mv "$BIN/dra-gates.txt.tmp" "$BIN/dra-gates.txt"
if [ ! -s "$BIN/resource-api-versions.txt" ] || [ "$BIN/kube-apiserver" -nt "$BIN/resource-api-versions.txt" ]; then
  # The resource.k8s.io versions this apiserver serves (read from its storage wiring).
  kdir=$(go mod download -json "k8s.io/kubernetes@v$V" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  grep -o 'resourcev1[a-z0-9]*\.SchemeGroupVersion\.Version' "$kdir/pkg/registry/resource/rest/storage_resource.go" |
    sed 's/^resource\(v1[a-z0-9]*\)\..*/\1/' | sort -u >"$BIN/resource-api-versions.txt"
fi
echo "$V" >"$BIN/k8s-version.txt"
log "ready in $BIN"
exit 0
}
