#!/usr/bin/env bash
# Build kubeconform for the `check` comparison benchmark (benches/kubeconform.rs):
#   kubeconform   (github.com/yannh/kubeconform/cmd/kubeconform, version pinned in go.mod)
#
#   tools/kubeconform/build.sh [OUTDIR]      default OUTDIR: <repo>/target/kubeconform-bench-assets
#
# Works from any directory (a relative OUTDIR is taken relative to the caller's cwd). A no-op
# taking well under a second when OUTDIR/.build-stamp matches the hash of go.mod, go.sum,
# build.sh, ../go-build-lib.sh and the Go version and the binary exists. Go's module and build
# caches stay at their defaults, so rebuilds on the same machine are warm. Needs the module
# proxy only when the module cache lacks something.
#
# Exit status: 0 built or current; 1 the build failed; 2 Go is missing or too old.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd "$HERE/../.." && pwd -P)
OUT=${1:-$REPO/target/kubeconform-bench-assets}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd -P)
cd "$HERE"

# shellcheck source=../go-build-lib.sh
source "$HERE/../go-build-lib.sh"
require_go "kubeconform" "go get -tool github.com/yannh/kubeconform/cmd/kubeconform@vX.Y.Z and go mod tidy (tools/kubeconform/README.md)"

# ---- Up to date? ----------------------------------------------------------------
show_version() { echo "kubeconform $("$OUT/kubeconform" -v)"; }
outputs_present() { [ -x "$OUT/kubeconform" ]; }

stamp_or_build go.mod go.sum build.sh ../go-build-lib.sh

# ---- Version from the module graph ------------------------------------------------
KV=$(go list -m -f '{{.Version}}' github.com/yannh/kubeconform)    # v0.8.0
[[ $KV =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "unexpected github.com/yannh/kubeconform version '$KV' in go.mod"
echo "kubeconform $KV"
step_done "read version from go.mod"

# What kubeconform's .goreleaser.yml sets (CGO_ENABLED=0 comes from go-build-lib.sh).
LDF="-s -w -X main.version=$KV"

# ---- Download and build ----------------------------------------------------------------
build_go_binary github.com/yannh/kubeconform/cmd/kubeconform kubeconform "$LDF"

# ---- Check ----------------------------------------------------------------------------
VOUT=$("$OUT/kubeconform" -v 2>&1) || { echo "$VOUT" >&2; die "the freshly built kubeconform failed 'kubeconform -v'"; }
[ "$VOUT" = "$KV" ] || die "kubeconform -v reports '$VOUT', expected $KV"
show_version
step_done "kubeconform -v check"

{ echo "$HASH"
  echo "# tools/kubeconform/build.sh stamp: sha256(go.mod go.sum build.sh ../go-build-lib.sh + Go version)"
  echo "kubeconform=$KV go=$GOVERSION $GOOS/$GOARCH"
} > "$STAMP_FILE"
ls -l "$OUT/kubeconform"
step_done "done"
