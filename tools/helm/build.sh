#!/usr/bin/env bash
# Build the Helm CLI used by the chart tests (tests/helm_chart.rs):
#   helm     (helm.sh/helm/v4/cmd/helm, version pinned in go.mod)
#   crds/    CRDs of cert-manager and prometheus-operator for server-side dry-runs of the
#            chart's optional objects (test-crds.txt: Go modules, pinned by version and hash)
#
#   tools/helm/build.sh [OUTDIR]      default OUTDIR: <repo>/target/helm-test-assets
#
# Works from any directory (a relative OUTDIR is taken relative to the caller's cwd). A no-op
# taking well under a second when OUTDIR/.build-stamp matches the hash of go.mod, go.sum,
# build.sh, test-crds.txt and the Go version and the outputs exist. Go's module and build caches stay at their
# defaults (go env GOMODCACHE / GOCACHE), so rebuilds on the same machine are warm. Needs the
# module proxy only when the module cache lacks something.
#
# Exit status: 0 built or current; 1 the build failed; 2 Go is missing or too old.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd "$HERE/../.." && pwd -P)
OUT=${1:-$REPO/target/helm-test-assets}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd -P)
cd "$HERE"

# shellcheck source=../go-build-lib.sh
source "$HERE/../go-build-lib.sh"
require_go "helm" "tools/helm/update.sh <helm-version>"

# ---- Up to date? ----------------------------------------------------------------
# the CRD files, as listed in test-crds.txt (fields: module version hash path)
mapfile -t CRD_LINES < <(grep -v '^[[:space:]]*\(#\|$\)' test-crds.txt)
crd_files_present() {
  local line f; for line in "${CRD_LINES[@]}"; do
    f=$(awk '{print $4}' <<<"$line"); [ -s "$OUT/crds/$(basename "$f")" ] || return 1
  done
}

show_version() { "$OUT/helm" version --template 'helm {{.Version}} (tree {{.GitTreeState}}, {{.GoVersion}}, client-go {{.KubeClientVersion}})'; echo; }
outputs_present() { [ -x "$OUT/helm" ] && crd_files_present; }

stamp_or_build go.mod go.sum build.sh ../go-build-lib.sh test-crds.txt

# ---- Version from the module graph ------------------------------------------------
HV=$(go list -m -f '{{.Version}}' helm.sh/helm/v4)    # v4.3.1
[[ $HV =~ ^v4\.[0-9]+\.[0-9]+$ ]] || die "unexpected helm.sh/helm/v4 version '$HV' in go.mod"
echo "Helm $HV"
step_done "read version from go.mod"

# What Helm's own Makefile sets (gitCommit stays empty: the module proxy does not record it).
LDF="-s -w -X helm.sh/helm/v4/internal/version.version=$HV -X helm.sh/helm/v4/internal/version.gitTreeState=clean"

# ---- Download and build ----------------------------------------------------------------
build_go_binary helm.sh/helm/v4/cmd/helm helm "$LDF"

# ---- Check ----------------------------------------------------------------------------
VOUT=$("$OUT/helm" version --template '{{.Version}}' 2>&1) || { echo "$VOUT" >&2; die "the freshly built helm failed 'helm version'"; }
[ "$VOUT" = "$HV" ] || die "helm version reports '$VOUT', expected $HV"
show_version
step_done "helm version check"

# ---- Test CRDs ------------------------------------------------------------------------
rm -rf "$OUT/crds.tmp"; mkdir -p "$OUT/crds.tmp"
for line in "${CRD_LINES[@]}"; do
  read -r MOD VER SUM FILE _ <<<"$line"
  J=$(go mod download -json "$MOD@$VER") || die "go mod download $MOD@$VER failed: $J"
  GOT=$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",\{0,1\}$/\1/p' <<<"$J")
  DIR=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$J")
  [ "$GOT" = "$SUM" ] || die "$MOD@$VER has hash '$GOT', test-crds.txt pins '$SUM'"
  [ -f "$DIR/$FILE" ] || die "$MOD@$VER has no $FILE"
  cp "$DIR/$FILE" "$OUT/crds.tmp/"
  chmod 644 "$OUT/crds.tmp/$(basename "$FILE")"
done
rm -rf "$OUT/crds"; mv "$OUT/crds.tmp" "$OUT/crds"
step_done "test CRDs (${#CRD_LINES[@]} files)"

{ echo "$HASH"
  echo "# tools/helm/build.sh stamp: sha256(go.mod go.sum build.sh test-crds.txt + Go version)"
  echo "helm=$HV go=$GOVERSION $GOOS/$GOARCH"
} > "$STAMP_FILE"
ls -l "$OUT/helm" "$OUT/crds"
step_done "done"
