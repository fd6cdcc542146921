#!/usr/bin/env bash
# Build the real control plane used by the end-to-end tests:
#   kube-apiserver, kubectl  (k8s.io/kubernetes/cmd/..., version pinned in go.mod)
#   etcd                     (./cmd/etcd, the etcd version Kubernetes itself pins)
#
#   tools/k8s/build.sh [OUTDIR]      default OUTDIR: <repo>/target/k8s-test-assets
#
# Works from any directory (a relative OUTDIR is taken relative to the caller's
# cwd). A no-op taking well under a second when OUTDIR/.build-stamp matches the
# hash of go.mod, go.sum, build.sh, ../go-build-lib.sh, cmd/etcd/main.go and the Go
# version and all three binaries exist. Each binary is built by build_go_binary
# (tools/go-build-lib.sh): into NAME.tmp, then moved into place. Go's module and build caches stay at their defaults
# (go env GOMODCACHE / GOCACHE), so rebuilds on the same machine are warm.
# Needs the module proxy only when the module cache lacks something.
#
# Exit status: 0 built or current; 1 the build failed; 2 Go is missing or too old.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd "$HERE/../.." && pwd -P)
OUT=${1:-$REPO/target/k8s-test-assets}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd -P)
cd "$HERE"

# shellcheck source=../go-build-lib.sh
source "$HERE/../go-build-lib.sh"
require_go "kube-apiserver/kubectl/etcd" "tools/k8s/update.sh <kubernetes-version>"

# ---- Up to date? ----------------------------------------------------------------
BINS=(kube-apiserver kubectl etcd)
show_version() {
  "$OUT/kube-apiserver" --version
  "$OUT/kubectl" version --client
  "$OUT/etcd" --version
}
outputs_present() {
  local b; for b in "${BINS[@]}"; do [ -x "$OUT/$b" ] || return 1; done
}
stamp_or_build go.mod go.sum build.sh ../go-build-lib.sh cmd/etcd/main.go

# ---- Versions from the module graph -----------------------------------------------
KV=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)              # v1.36.3
ETCDV=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)  # v3.6.8
[[ $KV =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+ ]] || die "unexpected k8s.io/kubernetes version '$KV' in go.mod"
KMAJOR=${BASH_REMATCH[1]}; KMINOR=${BASH_REMATCH[2]}
# the release tag's commit time, as recorded by the module proxy (reproducible)
BUILD_DATE=$(go list -m -f '{{with .Time}}{{.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)
BUILD_DATE=${BUILD_DATE:-1970-01-01T00:00:00Z}
echo "Kubernetes $KV, etcd $ETCDV"
step_done "read versions from go.mod"

# Same version variables as Kubernetes' hack/lib/version.sh sets, for both
# copies of the version package (component-base: kube-apiserver /version and
# `kubectl version`; client-go: the User-Agent client-go sends).
# gitCommit is left at its default: the module proxy does not record it.
LDF_K8S="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDF_K8S+=" -X $pkg.gitVersion=$KV -X $pkg.gitMajor=$KMAJOR -X $pkg.gitMinor=$KMINOR"
  LDF_K8S+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$BUILD_DATE"
done

# ---- Download and build (each: go list -deps, then go build into NAME.tmp and mv) ----------
build_go_binary k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "$LDF_K8S"
build_go_binary k8s.io/kubernetes/cmd/kubectl kubectl "$LDF_K8S"
build_go_binary ./cmd/etcd etcd "-s -w"

# ---- Check ----------------------------------------------------------------------------
VOUT=$(show_version 2>&1) || { echo "$VOUT" >&2; die "a freshly built binary failed its --version check"; }
echo "$VOUT"
grep -q "^Kubernetes $KV\$" <<<"$VOUT" || die "kube-apiserver --version does not report $KV"
grep -q "^Client Version: $KV\$" <<<"$VOUT" || die "kubectl version --client does not report $KV"
grep -q "^etcd Version: ${ETCDV#v}\$" <<<"$VOUT" || die "etcd --version does not report ${ETCDV#v}"
step_done "--version checks"

{ echo "$HASH"
  echo "# tools/k8s/build.sh stamp: sha256(go.mod go.sum build.sh ../go-build-lib.sh cmd/etcd/main.go + Go version)"
  echo "kubernetes=$KV etcd=$ETCDV go=$GOVERSION $GOOS/$GOARCH"
} > "$STAMP_FILE"
ls -l "${BINS[@]/#/$OUT/}"
step_done "done"
