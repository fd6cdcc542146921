#!/usr/bin/env bash
# Move tools/k8s to another Kubernetes release.
#
#   tools/k8s/update.sh 1.36.3        (works from any directory)
#
# - derives one `replace k8s.io/<staging> => k8s.io/<staging> v0.X.Y` per
#   staging module from that release's own go.mod (never hand-maintained);
# - resets the requirement list, then `go get -tool` kube-apiserver + kubectl
#   at vVERSION, so every dependency (etcd included) is selected exactly as
#   k8s.io/kubernetes pins it -- also when moving to an OLDER release;
# - `go mod tidy`, then checks and prints the pinned etcd version.
#
# Afterwards commit tools/k8s/go.mod and tools/k8s/go.sum and run build.sh.
# Network: needs the Go module proxy and checksum database (GOPROXY/GOSUMDB);
# build.sh then needs only the proxy, and nothing once the module cache is warm.
set -euo pipefail

usage() { echo "usage: $0 KUBERNETES_VERSION   (e.g. $0 1.36.3; list: go list -m -versions k8s.io/kubernetes)" >&2; exit 2; }
[ $# -eq 1 ] || usage
KV=${1#v}
[[ $KV =~ ^1\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || usage

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
cd "$HERE"

export GOTOOLCHAIN=local      # never download another Go toolchain
export GOWORK=off             # ignore any go.work further up
export LC_ALL=C               # stable sort/join
export GOFLAGS=-buildvcs=false # drop an inherited -mod=readonly: this script edits go.mod
MODPATH=coder-guard/tools/k8s

# ---- Go present and recent enough -------------------------------------------
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH=/usr/local/go/bin:$PATH
fi
if ! command -v go >/dev/null 2>&1; then
  echo "ERROR: 'go' not found on PATH. Install Go >= 1.24 (Kubernetes 1.36 needs >= 1.26.0) from https://go.dev/dl/ and put its bin/ on PATH." >&2
  exit 1
fi
GOVER=$(go env GOVERSION); GOVER=${GOVER#go}
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }   # $1 >= $2
need_go() {
  if ! version_ge "$GOVER" "$1"; then
    echo "ERROR: $2 needs Go >= $1 but '$(command -v go)' is go$GOVER (GOTOOLCHAIN=local, no automatic download). Install a newer Go from https://go.dev/dl/." >&2
    exit 1
  fi
}
need_go 1.24 "the go.mod 'tool' directive"

T0=$(date +%s)
step() { printf '==> [%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

# ---- The release's own go.mod -------------------------------------------------
step "fetching k8s.io/kubernetes@v$KV"
KJSON=$(go mod download -json "k8s.io/kubernetes@v$KV") || {
  echo "ERROR: k8s.io/kubernetes@v$KV is not available from the module proxy. Available:" >&2
  go list -m -versions k8s.io/kubernetes >&2 || true
  exit 1
}
KGOMOD=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"$KJSON")
[ -f "$KGOMOD" ] || { echo "ERROR: could not locate the go.mod of k8s.io/kubernetes@v$KV (go mod download said: $KJSON)" >&2; exit 1; }

KGO=$(sed -n 's/^go[[:space:]]\{1,\}\([0-9][0-9.]*\)[[:space:]]*$/\1/p' "$KGOMOD")
[ -n "$KGO" ] || { echo "ERROR: no go directive in $KGOMOD" >&2; exit 1; }
need_go "$KGO" "k8s.io/kubernetes v$KV (its go.mod says 'go $KGO')"

# staging modules = the relative replaces in k8s.io/kubernetes' go.mod
# (both the block form "\tk8s.io/x => ./staging/..." and "replace k8s.io/x => ./staging/...")
mapfile -t STAGING < <(sed -n 's|^[[:space:]]*\(replace[[:space:]]\{1,\}\)\{0,1\}\(k8s\.io/[^[:space:]]*\)[[:space:]]\{1,\}=>[[:space:]]\{1,\}\./staging/.*|\2|p' "$KGOMOD" | sort -u)
[ "${#STAGING[@]}" -gt 0 ] || { echo "ERROR: found no './staging/...' replaces in $KGOMOD" >&2; exit 1; }
KETCD=$(sed -n 's|^[[:space:]]*\(require[[:space:]]\{1,\}\)\{0,1\}go\.etcd\.io/etcd/server/v3[[:space:]]\{1,\}\(v[^[:space:]]*\).*|\2|p' "$KGOMOD" | head -n1)
STAGEV=v0.${KV#1.}
step "k8s.io/kubernetes v$KV: go $KGO, ${#STAGING[@]} staging modules -> $STAGEV, etcd ${KETCD:-<not required>}"

# ---- Rewrite go.mod -------------------------------------------------------------
if [ ! -f go.mod ]; then
  step "go mod init $MODPATH"
  go mod init "$MODPATH"
  { echo "// Maintained by update.sh (Kubernetes + staging replaces + etcd pin); see README.md."
    echo "// Do not edit by hand: run tools/k8s/update.sh <kubernetes-version>."
    cat go.mod; } > go.mod.tmp && mv go.mod.tmp go.mod
fi
[ -f cmd/etcd/main.go ] || { echo "ERROR: $HERE/cmd/etcd/main.go is missing" >&2; exit 1; }

# first field of every entry of a go.mod directive (single-line and block form)
entries() {
  go mod edit -print | awk -v kw="$1" '
    $1 == kw && $2 == "(" { inblk = 1; next }
    inblk && $1 == ")"    { inblk = 0; next }
    inblk                 { print $1; next }
    $1 == kw              { print $2 }'
}
# replace all k8s.io replaces with one block of staging replaces at the end of go.mod
write_replaces() {
  local edits=() r m
  while read -r r; do if [[ $r == k8s.io/* ]]; then edits+=("-dropreplace=$r"); fi; done < <(entries replace)
  [ "${#edits[@]}" -eq 0 ] || go mod edit "${edits[@]}"
  { echo
    echo "// Staging modules of k8s.io/kubernetes v$KV (from its go.mod), at their published $STAGEV."
    echo "replace ("
    for m in "${STAGING[@]}"; do printf '\t%s => %s %s\n' "$m" "$m" "$STAGEV"; done
    echo ")"; } >> go.mod
  go mod edit -fmt
}
EDITS=()
# drop every requirement and tool, so nothing from the previous release
# (e.g. a newer etcd or golang.org/x/*) survives a downgrade
while read -r m; do EDITS+=("-droprequire=$m"); done < <(entries require)
while read -r t; do EDITS+=("-droptool=$t"); done < <(entries tool)
EDITS+=("-go=$KGO" "-toolchain=none")
step "go mod edit (${#EDITS[@]} edits + ${#STAGING[@]} staging replaces)"
go mod edit "${EDITS[@]}"
write_replaces

step "go get -tool k8s.io/kubernetes/cmd/{kube-apiserver,kubectl}@v$KV"
go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@v$KV" "k8s.io/kubernetes/cmd/kubectl@v$KV"

step "go mod tidy"
go mod tidy
go mod edit -toolchain=none   # keep go.mod free of a toolchain line
write_replaces                # move the replace block below require/tool
go mod tidy -diff >/dev/null || { echo "ERROR: go.mod/go.sum not tidy after update" >&2; go mod tidy -diff >&2; exit 1; }

# ---- Check and report ------------------------------------------------------------
GOT_K=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
GOT_ETCD=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
[ "$GOT_K" = "v$KV" ] || { echo "ERROR: k8s.io/kubernetes resolved to $GOT_K, expected v$KV" >&2; exit 1; }
if [ -n "$KETCD" ] && [ "$GOT_ETCD" != "$KETCD" ]; then
  echo "ERROR: go.etcd.io/etcd/server/v3 resolved to $GOT_ETCD but k8s.io/kubernetes v$KV pins $KETCD" >&2
  exit 1
fi
# every non-staging module that k8s.io/kubernetes requires must be selected at exactly its version
MISMATCH=$(join <(go list -m -f '{{.Path}} {{.Version}}' all | sort) \
                <(awk '$1 == "require" && $2 == "(" {b=1; next} b && $1 == ")" {b=0; next}
                       b {print $1, $2} $1 == "require" && $2 != "(" {print $2, $3}' "$KGOMOD" | sort) |
           awk '$1 !~ /^k8s\.io\// && $2 != $3 {print "  " $1 ": selected " $2 ", k8s.io/kubernetes requires " $3}')
if [ -n "$MISMATCH" ]; then
  echo "ERROR: the module graph differs from k8s.io/kubernetes v$KV's go.mod:" >&2; echo "$MISMATCH" >&2; exit 1
fi
NREPL=$(go mod edit -print | grep -c "=> k8s.io/.* $STAGEV\$" || true)
step "done"
echo "Kubernetes:      v$KV (go.mod: go $(go mod edit -print | sed -n 's/^go //p'))"
echo "staging replaces: $NREPL x $STAGEV"
echo "etcd (pinned):   $GOT_ETCD   (go.etcd.io/etcd/server/v3, as required by k8s.io/kubernetes v$KV)"
echo "Next: commit tools/k8s/go.mod tools/k8s/go.sum, then run tools/k8s/build.sh"
