# Sourced (not run) by tools/*/build.sh: the strict Go environment, step timing, errors, and
# the check that Go is installed and as recent as the calling module's go.mod asks.
# Expects the caller's cwd to be its module directory.

export GOTOOLCHAIN=local          # never download another Go toolchain
export GOWORK=off
export CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false"   # go.mod/go.sum are committed; never edit them here

T0=$(date +%s.%N)
LAST=$T0
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1fs", b - a }'; }
step_done() {  # step_done "what": prints the time since the previous step
  local now; now=$(date +%s.%N)
  printf '==> %-40s %8s  (total %s)\n' "$1" "$(elapsed "$LAST" "$now")" "$(elapsed "$T0" "$now")"
  LAST=$now
}
die() { echo "ERROR: $*" >&2; exit 1; }
no_go() { echo "ERROR: $*" >&2; exit 2; }

# require_go WHAT UPDATE: go.mod and go.sum exist (else: create them with UPDATE), and Go is on
# PATH (or in /usr/local/go) at the version go.mod needs, else exit 2 saying how to install it
# to build WHAT. Sets GO_NEED, GOVERSION, GOOS, GOARCH.
require_go() {
  local what=$1 update=$2
  [ -f go.mod ] && [ -f go.sum ] || die "$PWD/go.mod or go.sum is missing; create them with $update"
  GO_NEED=$(sed -n 's/^go[[:space:]]\{1,\}\([0-9][0-9.]*\)[[:space:]]*$/\1/p' go.mod)
  if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
    export PATH=/usr/local/go/bin:$PATH
  fi
  command -v go >/dev/null 2>&1 ||
    no_go "'go' not found on PATH. Building $what needs Go >= $GO_NEED: install it from https://go.dev/dl/ (e.g. to /usr/local/go) and add its bin/ to PATH."
  local env
  env=$(go env GOVERSION GOOS GOARCH) || die "'go env' failed"
  GOVERSION=$(sed -n 1p <<<"$env"); GOOS=$(sed -n 2p <<<"$env"); GOARCH=$(sed -n 3p <<<"$env")
  if [ "$(printf '%s\n%s\n' "$GO_NEED" "${GOVERSION#go}" | sort -V | head -n1)" != "$GO_NEED" ]; then
    no_go "'$(command -v go)' is $GOVERSION but $PWD/go.mod needs Go >= $GO_NEED (GOTOOLCHAIN=local: no automatic toolchain download). Install Go >= $GO_NEED from https://go.dev/dl/ and put it first on PATH."
  fi
}

# stamp_or_build FILE...: sets STAMP_FILE and HASH (of FILE... and the Go version), then exits 0
# when $OUT is current — the stamp matches and the caller's `outputs_present` holds — after the
# caller's `show_version`, also once a concurrent build into the same $OUT has finished;
# otherwise returns holding $OUT's lock, the stamp removed.
up_to_date() { [ -f "$STAMP_FILE" ] && [ "$(head -n1 "$STAMP_FILE")" = "$HASH" ] && outputs_present; }
stamp_or_build() {
  STAMP_FILE=$OUT/.build-stamp
  HASH=$( { sha256sum "$@"; echo "$GOVERSION $GOOS/$GOARCH"; } | sha256sum | cut -d' ' -f1)
  if up_to_date; then
    step_done "up to date ($OUT)"; show_version; step_done "version check"; exit 0
  fi
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$OUT/.build.lock"
    flock 9
    if up_to_date; then step_done "up to date (built by a concurrent run)"; show_version; exit 0; fi
  fi
  rm -f "$STAMP_FILE"
  echo "Building into $OUT with $GOVERSION $GOOS/$GOARCH (GOMODCACHE=$(go env GOMODCACHE), GOCACHE=$(go env GOCACHE))"
}

# build_go_binary PACKAGE NAME LDFLAGS: fetches what PACKAGE needs (a no-op with a warm module
# cache; verified against go.sum) and builds it, at low priority, into $OUT/NAME atomically.
# PACKAGE is an import path or, like ./cmd/etcd, a package of the calling module.
build_go_binary() {
  local pkg=$1 name=$2 ldf=$3 nice=()
  command -v nice >/dev/null 2>&1 && nice=(nice -n 10)
  "${nice[@]}" go list -deps "$pkg" >/dev/null
  step_done "modules present ($name)"
  "${nice[@]}" go build -trimpath -ldflags "$ldf" -o "$OUT/$name.tmp" "$pkg"
  mv -f "$OUT/$name.tmp" "$OUT/$name"
  step_done "go build $name"
}
