#!/usr/bin/env bash
# cargo-fuzz targets of fuzz/ (see docs/fuzzing.md).
#
#   scripts/fuzz.sh list                    the targets
#   scripts/fuzz.sh smoke                   every target for FUZZ_SECONDS (45) each; scripts/test.sh runs this
#   scripts/fuzz.sh run TARGET [SECONDS [LIBFUZZER_FLAG...]]
#                                           one target, 600 s by default, 0 = until it finds something
#   scripts/fuzz.sh repro TARGET FILE       run one saved input (a crash artifact, a regression)
#   scripts/fuzz.sh tmin TARGET FILE        minimize a crashing input
#   scripts/fuzz.sh seeds                   rebuild fuzz/seeds/ from the repository's inputs
#
# Installs cargo-fuzz (pinned) into target/tools/cargo-fuzz. Builds with the `nightly` rustup
# toolchain when there is one, else with the pinned stable toolchain and RUSTC_BOOTSTRAP=1
# (FUZZ_TOOLCHAIN=nightly|stable forces one). Everything it writes is under target/fuzz/:
# build/<toolchain>/ (cargo), corpus/<target>/ (working corpus, grown from fuzz/seeds/),
# artifacts/<target>/ (crashes, timeouts, slow inputs), logs/<target>.log.
#
# Limits (environment): FUZZ_SECONDS per target in smoke (45), FUZZ_TIMEOUT seconds per input
# before it counts as a hang (10), FUZZ_RSS_MB memory limit (2048), FUZZ_SLOW seconds above
# which an input is reported as slow (1).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

CARGO_FUZZ_VERSION=0.13.2
tools=$root/target/tools/cargo-fuzz
work=$root/target/fuzz
seconds=${FUZZ_SECONDS:-45}
timeout=${FUZZ_TIMEOUT:-10}
rss_mb=${FUZZ_RSS_MB:-2048}
slow=${FUZZ_SLOW:-1}

usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

targets() {
  for f in fuzz/fuzz_targets/*.rs; do basename "$f" .rs; done
}

known_target() {
  local t
  for t in $(targets); do [ "$t" = "$1" ] && return; done
  echo "unknown fuzz target ${1:-(none)}; targets: $(targets | tr '\n' ' ')" >&2
  exit 2
}

install_cargo_fuzz() {
  if [ "$("$tools/bin/cargo-fuzz" --version 2>/dev/null)" = "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    return
  fi
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION into ${tools#"$root"/}"
  cargo install --locked --quiet --version "$CARGO_FUZZ_VERSION" --root "$tools" cargo-fuzz
}

# Sets `plus` (the cargo toolchain argument) and `label`, exports RUSTC_BOOTSTRAP for stable.
pick_toolchain() {
  local want=${FUZZ_TOOLCHAIN:-auto}
  if [ "$want" = auto ]; then
    want=stable
    if command -v rustup >/dev/null 2>&1 && rustup toolchain list 2>/dev/null | grep '^nightly-' >/dev/null; then
      want=nightly
    fi
  fi
  case $want in
    nightly) plus=(+nightly) label=nightly ;;
    # rust-toolchain.toml's toolchain; its standard library ships the sanitizer runtimes, and
    # RUSTC_BOOTSTRAP=1 lets it accept the -Z flags cargo-fuzz passes.
    stable) plus=() label=stable && export RUSTC_BOOTSTRAP=1 ;;
    *) echo "FUZZ_TOOLCHAIN must be nightly or stable, not $want" >&2 && exit 2 ;;
  esac
  echo "toolchain: $label ($(cargo "${plus[@]}" --version))"
}

cargo_fuzz() {
  PATH="$tools/bin:$PATH" cargo "${plus[@]}" fuzz "$@"
}

prepare() {
  install_cargo_fuzz
  pick_toolchain
  # cargo-fuzz has no --locked: fail here if fuzz/Cargo.lock is not current.
  cargo "${plus[@]}" metadata --locked --quiet --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null
  build_dir=$work/build/$label
}

build() {
  local t0=$SECONDS
  cargo_fuzz build --target-dir "$build_dir"
  echo "fuzz build took $((SECONDS - t0))s"
}

# fuzz TARGET SECONDS [FLAG...]: runs one target from its working corpus plus the seeds and saved
# regressions; returns non-zero when libFuzzer found a crash, hang or memory blow-up.
fuzz() {
  local target=$1 secs=$2 status=0
  shift 2
  local corpus=$work/corpus/$target artifacts=$work/artifacts/$target log=$work/logs/$target.log
  mkdir -p "$corpus" "$artifacts" "$work/logs"
  local dirs=("$corpus" "fuzz/seeds/$target")
  [ -d "fuzz/regressions/$target" ] && dirs+=("fuzz/regressions/$target")
  local stamp
  stamp=$(mktemp "$work/logs/.stamp.XXXXXX")
  echo "--> $target: ${secs}s (log: ${log#"$root"/})"
  cargo_fuzz run --target-dir "$build_dir" "$target" "${dirs[@]}" -- \
    -max_total_time="$secs" -timeout="$timeout" -rss_limit_mb="$rss_mb" -report_slow_units="$slow" \
    -artifact_prefix="$artifacts/" -print_final_stats=1 "$@" >"$log" 2>&1 || status=$?
  # libFuzzer's last status line (`#RUNS DONE cov: EDGES ft: FEATURES corp: N/SIZE exec/s: N
  # rss: MB`) and final statistics.
  grep -E '^#[0-9]+[[:space:]]+[A-Z]+ +cov:' "$log" | tail -n 1 | sed 's/^/    /' || true
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" | tr '\n' ' ' |
    sed 's/stat:://g; s/^/    /; s/ $/\n/' || true
  local found
  found=$(find "$artifacts" -type f -newer "$stamp" | sort)
  rm -f "$stamp"
  local slow_units
  slow_units=$(grep -E '^slow-unit-' <<<"$(for f in $found; do basename "$f"; done)" || true)
  if [ -n "$slow_units" ]; then
    echo "NOTE: inputs slower than ${slow}s (not a failure): $(sed "s|^|${artifacts#"$root"/}/|" <<<"$slow_units" | tr '\n' ' ')"
  fi
  if [ "$status" -ne 0 ]; then
    echo "FAILED: $target (exit $status); from its log:" >&2
    grep -E -A2 'panicked at|ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)' "$log" | head -n 20 >&2 || true
    grep -E '^SUMMARY' "$log" >&2 || tail -n 20 "$log" >&2
    local crash
    for crash in $found; do
      case $(basename "$crash") in slow-unit-*) continue ;; esac
      echo "artifact: ${crash#"$root"/}" >&2
      echo "  reproduce: scripts/fuzz.sh repro $target ${crash#"$root"/}" >&2
      echo "         or: PATH=${tools#"$root"/}/bin:\$PATH cargo ${plus[*]} fuzz run --target-dir ${build_dir#"$root"/} $target ${crash#"$root"/}" >&2
      echo "  minimize:  scripts/fuzz.sh tmin $target ${crash#"$root"/}" >&2
      echo "  then fix the bug and keep the input as fuzz/regressions/$target/<name> (tests/fuzz_regressions.rs replays it)" >&2
    done
    return 1
  fi
}

cmd=${1:-}
case $cmd in
  list)
    targets
    ;;
  smoke)
    prepare
    build
    failed=()
    for target in $(targets); do
      fuzz "$target" "$seconds" || failed+=("$target")
    done
    if [ ${#failed[@]} -gt 0 ]; then
      echo "fuzz smoke: ${failed[*]} failed" >&2
      exit 1
    fi
    echo "fuzz smoke: $(targets | wc -l) targets, ${seconds}s each, nothing found"
    ;;
  run)
    [ $# -ge 2 ] || usage
    known_target "$2"
    prepare
    build
    fuzz "$2" "${3:-600}" "${@:4}"
    ;;
  repro | tmin)
    [ $# -eq 3 ] || usage
    known_target "$2"
    prepare
    mkdir -p "$work/artifacts/$2"
    if [ "$cmd" = repro ]; then
      cargo_fuzz run --target-dir "$build_dir" "$2" "$3" -- -artifact_prefix="$work/artifacts/$2/"
    else
      # The smallest input that still fails goes to target/fuzz/artifacts/TARGET/minimized-from-*.
      cargo_fuzz tmin --target-dir "$build_dir" "$2" "$3" -- -artifact_prefix="$work/artifacts/$2/"
    fi
    ;;
  seeds)
    python3 fuzz/seeds.py
    ;;
  *)
    usage
    ;;
esac
