#!/usr/bin/env bash
# The whole test suite: formatting, lints and every test. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust with rustup (https://rustup.rs); rust-toolchain.toml pins the version" >&2
  exit 2
fi

# CI as the test harness reads it (tests/support/mod.rs `is_ci`): `true` in any case, or `1`.
ci=false
case "${CI:-}" in [Tt][Rr][Uu][Ee] | 1) ci=true ;; esac

# A clean clone gains no speed from incremental compilation, only about 1.3 GB of target/.
if [ "$ci" = true ]; then export CARGO_INCREMENTAL=0; fi

# Disk: a cold run writes about 4.5 GB under target/ (test build 2.3 GB, fuzz build 2.1 GB) and,
# with cold Go caches, about 6 GB more (go env GOCACHE GOMODCACHE). Say so up front, not as
# "No space left on device" from the last step.
need_gb=11
free_gb=$(df -Pk "${CARGO_TARGET_DIR:-.}" 2>/dev/null | awk 'NR == 2 { printf "%d", $4 / 1048576 }')
echo "disk: ${free_gb:-unknown} GB free for target/; a cold run needs up to ${need_gb} GB"
if [ -n "$free_gb" ] && [ "$free_gb" -lt "$need_gb" ]; then
  echo "WARNING: less than ${need_gb} GB free: the run may fail with 'No space left on device'; free some" \
    "space (cargo clean, or remove target/fuzz/build) if it does" >&2
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

# Tools the tests run are built from the Go module proxy: tools/k8s/build.sh (a real etcd,
# kube-apiserver and kubectl for the end-to-end tests) and tools/helm/build.sh (helm and the
# cert-manager/prometheus-operator CRDs for the chart tests). Minutes the first time, well under
# a second when current.

# go_tool DIR ASSETS_VAR WHO: builds tools/DIR into $ASSETS_VAR (default target/DIR-test-assets)
# for the tests named WHO. The build script exits 2 when Go is missing or too old (its message
# says what to install): a failure under CI=true, otherwise WHO are skipped.
go_tool() {
  local dir=$1 var=$2 who=$3 status=0 t0
  step "tools/$dir/build.sh (for $who)"
  local out=${!var:-$PWD/target/$dir-test-assets}
  t0=$(date +%s.%N)
  bash "tools/$dir/build.sh" "$out" || status=$?
  case $status in
    0)
      export "$var=$out"
      echo "build step took $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s"
      ;;
    2)
      if [ "$ci" = true ]; then
        echo "ERROR: CI=true but there is no usable Go (see above): the $who need it." >&2
        exit 2
      fi
      echo "NOTE: no usable Go (see above): the $who will be skipped."
      ;;
    *) exit "$status" ;;
  esac
}
go_tool k8s K8S_TEST_ASSETS "end-to-end tests (tests/e2e_*.rs)"
go_tool helm HELM_TEST_ASSETS "chart tests (tests/helm_chart.rs)"

step "cargo test"
# Plain `cargo test`: benches have `test = false`, which `--all-targets` would override.
cargo test --locked --no-fail-fast

step "fuzz smoke (scripts/fuzz.sh smoke)"
# Every fuzz target for 45 s from its seeds (docs/fuzzing.md); a crash, hang or OOM fails.
bash scripts/fuzz.sh smoke
