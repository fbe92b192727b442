#!/usr/bin/env bash
# Writes go.mod/go.sum for the k8s wrapper module in DIR, pinned to Kubernetes VERSION.
#
# k8s.io/kubernetes requires its staging modules at the fake version v0.0.0 and maps them
# to ./staging/... with replace directives that a consumer does not inherit. So we copy
# the replace list from the tag's own go.mod (never hand-maintained: 1.36 added two staging
# modules) and point each one at the real v0.X.Y release. We also copy upstream's `go` and
# `godebug` lines so the build behaves like upstream's.
#
# usage: gen-gomod.sh VERSION DIR MODULE_PATH
set -euo pipefail
V=$1 DIR=$2 MOD=$3
cd "$DIR"
upstream=$(go mod download -json "k8s.io/kubernetes@v$V" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
rm -f go.mod go.sum
go mod init "$MOD" >/dev/null 2>&1
read -r gover godebug < <(go mod edit -json "$upstream" | python3 -c '
import json,sys
m = json.load(sys.stdin)
print(m["Go"], ",".join(d["Key"] + "=" + d["Value"] for d in (m.get("GoDebug") or [])) or "-")')
go mod edit -go="$gover"
[ "$godebug" = "-" ] || for d in ${godebug//,/ }; do go mod edit -godebug="$d"; done
go mod edit -json "$upstream" | python3 -c '
import json,sys
for r in json.load(sys.stdin)["Replace"] or []:
    if r["New"]["Path"].startswith("./staging/"): print(r["Old"]["Path"])' |
while read -r m; do
  # replace only: tidy adds a require for the staging modules the build really imports
  go mod edit -replace="$m=$m@v0.${V#1.}"
done
go mod edit -require="k8s.io/kubernetes@v$V"
# tidy resolves everything else at upstream's (or MVS-raised) versions and writes go.sum.
go mod tidy
