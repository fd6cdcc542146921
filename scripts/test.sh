#!/usr/bin/env bash
# The whole test suite: formatting, lints and every test. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust with rustup (https://rustup.rs); rust-toolchain.toml pins the version" >&2
  exit 2
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

# The end-to-end tests run a real etcd and kube-apiserver (tests/support/apiserver.rs), built
# from source by tools/k8s/build.sh: minutes the first time, well under a second when current.
step "tools/k8s/build.sh (kube-apiserver, etcd, kubectl for the end-to-end tests)"
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH=/usr/local/go/bin:$PATH
fi
if command -v go >/dev/null 2>&1; then
  t0=$(date +%s.%N)
  export K8S_TEST_ASSETS=${K8S_TEST_ASSETS:-$PWD/target/k8s-test-assets}
  bash tools/k8s/build.sh "$K8S_TEST_ASSETS"
  echo "build step took $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s"
elif [ "${CI:-}" = true ]; then
  GO_NEED=$(sed -n 's/^go[[:space:]]\{1,\}\([0-9][0-9.]*\)[[:space:]]*$/\1/p' tools/k8s/go.mod)
  echo "ERROR: CI=true but 'go' is not installed. The end-to-end tests need Go >= $GO_NEED to build" \
    "kube-apiserver, etcd and kubectl: install it from https://go.dev/dl/ into /usr/local/go." >&2
  exit 2
else
  echo "NOTE: 'go' not found: the end-to-end tests (tests/e2e_*.rs) will be skipped." \
    "Install Go (https://go.dev/dl/, into /usr/local/go) to run them."
fi

# The chart tests (tests/helm_chart.rs) run the real helm, built from the Go module proxy by
# tools/helm/build.sh: about 2 minutes the first time, well under a second when current.
step "tools/helm/build.sh (helm and the cert-manager/prometheus-operator CRDs for the chart tests)"
if command -v go >/dev/null 2>&1; then
  t0=$(date +%s.%N)
  export HELM_TEST_ASSETS=${HELM_TEST_ASSETS:-$PWD/target/helm-test-assets}
  bash tools/helm/build.sh "$HELM_TEST_ASSETS"
  echo "build step took $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s"
elif [ "${CI:-}" = true ]; then
  GO_NEED=$(sed -n 's/^go[[:space:]]\{1,\}\([0-9][0-9.]*\)[[:space:]]*$/\1/p' tools/helm/go.mod)
  echo "ERROR: CI=true but 'go' is not installed. The chart tests need Go >= $GO_NEED to build helm:" \
    "install it from https://go.dev/dl/ into /usr/local/go." >&2
  exit 2
else
  echo "NOTE: 'go' not found: the chart tests (tests/helm_chart.rs) will be skipped." \
    "Install Go (https://go.dev/dl/, into /usr/local/go) to run them."
fi

step "cargo test"
# Plain `cargo test`: benches have `test = false`, which `--all-targets` would override.
cargo test --locked --no-fail-fast
