#!/usr/bin/env bash
# Move tools/helm to another Helm release.
#
#   tools/helm/update.sh 4.3.1        (works from any directory)
#
# Resets the requirement list, then `go get -tool helm.sh/helm/v4/cmd/helm@vVERSION`, so that
# every dependency is selected exactly as that Helm release pins it; `go mod tidy`; then checks
# that no module differs from Helm's own go.mod.
#
# Afterwards commit tools/helm/go.mod and tools/helm/go.sum and run build.sh.
# Network: needs the Go module proxy and checksum database (GOPROXY/GOSUMDB);
# build.sh then needs only the proxy, and nothing once the module cache is warm.
set -euo pipefail

usage() { echo "usage: $0 HELM_VERSION   (e.g. $0 4.3.1; list: go list -m -versions helm.sh/helm/v4)" >&2; exit 2; }
[ $# -eq 1 ] || usage
HV=${1#v}
[[ $HV =~ ^4\.[0-9]+\.[0-9]+$ ]] || usage

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
cd "$HERE"

export GOTOOLCHAIN=local       # never download another Go toolchain
export GOWORK=off
export LC_ALL=C
export GOFLAGS=-buildvcs=false # drop an inherited -mod=readonly: this script edits go.mod

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH=/usr/local/go/bin:$PATH
fi
command -v go >/dev/null 2>&1 || { echo "ERROR: 'go' not found; install Go from https://go.dev/dl/" >&2; exit 2; }

J=$(go mod download -json "helm.sh/helm/v4@v$HV") || {
  echo "ERROR: helm.sh/helm/v4@v$HV is not on the module proxy. Available:" >&2
  go list -m -versions helm.sh/helm/v4 >&2 || true
  exit 1
}
HGOMOD=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"$J")
HGO=$(sed -n 's/^go[[:space:]]\{1,\}\([0-9][0-9.]*\)[[:space:]]*$/\1/p' "$HGOMOD")
if grep -q '^[[:space:]]*replace\b' "$HGOMOD"; then
  echo "ERROR: helm v$HV's go.mod has replace directives; this script does not handle them" >&2
  exit 1
fi

# Start from an empty module with Helm's go version.
{ echo "// Pins the Helm CLI used by the chart tests (tests/helm_chart.rs); see README.md."
  echo "// Maintained by update.sh: run tools/helm/update.sh <helm-version>, do not edit by hand."
  echo "module coder-guard/tools/helm"
  echo
  echo "go $HGO"; } > go.mod
: > go.sum
go get -tool "helm.sh/helm/v4/cmd/helm@v$HV"
go mod tidy
go mod edit -toolchain=none
go mod tidy -diff >/dev/null || { echo "ERROR: go.mod/go.sum not tidy after update" >&2; exit 1; }

# every module Helm requires must be selected at exactly its version
MISMATCH=$(join <(go list -m -f '{{.Path}} {{.Version}}' all | sort) \
                <(awk '$1 == "require" && $2 == "(" {b=1; next} b && $1 == ")" {b=0; next}
                       b {print $1, $2} $1 == "require" && $2 != "(" {print $2, $3}' "$HGOMOD" | sort) |
           awk '$2 != $3 {print "  " $1 ": selected " $2 ", helm requires " $3}')
if [ -n "$MISMATCH" ]; then
  echo "ERROR: the module graph differs from helm v$HV's go.mod:" >&2; echo "$MISMATCH" >&2; exit 1
fi
echo "helm: $(go list -m -f '{{.Version}}' helm.sh/helm/v4) (go $HGO)"
echo "Next: commit tools/helm/go.mod tools/helm/go.sum, update the version in tools/helm/README.md, run tools/helm/build.sh"
