#!/usr/bin/env bash
# Runs every fuzz target for a bounded time and prints, per target, its executions, exec/s and
# corpus size (docs/fuzzing.md). Exit status 1 when any target crashed (a panic, an overflow,
# a timeout, an out-of-memory), with the input kept in fuzz/artifacts/<target>/ and the
# command that replays it; 2 on bad usage.
#
#   fuzz/run.sh [SECONDS_PER_TARGET]     default 15 (tests/run.sh); fuzz/run-long.sh for more
#
# Environment: FUZZ_JOBS targets at once (default 2, one per core of the project's machines);
# FUZZ_SANITIZER none (default: the workspace forbids unsafe code, and without ASan the same
# seconds run about twice the inputs) or address; FUZZ_TARGETS a space-separated subset;
# FUZZ_KEEP=1 adds what the run finds to fuzz/corpus/ (else it goes to a scratch folder);
# CARGO_TARGET_DIR as for cargo.
#
# Each target runs on the committed seeds (fuzz/corpus/<target>/) and the dictionary of edge
# numbers (fuzz/numbers.dict) for SECONDS, with debug
# assertions and overflow checks on (`cargo fuzz build --debug-assertions`), so an integer
# overflow is a crash here even though release builds would wrap.
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:-15}
if ! [[ $secs =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: fuzz/run.sh [SECONDS_PER_TARGET]" >&2
  exit 2
fi
jobs=${FUZZ_JOBS:-2}
sanitizer=${FUZZ_SANITIZER:-none}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# cargo-fuzz asks for nightly-only flags (-Z); the stable toolchain accepts them this way.
export RUSTC_BOOTSTRAP=1
echo "== cargo fuzz build (sanitizer: $sanitizer, debug assertions on)"
cargo fuzz build --sanitizer "$sanitizer" --debug-assertions

triple=$(rustc -vV | sed -n 's/^host: //p')
bindir="${CARGO_TARGET_DIR:-target}/$triple/release"
targets=${FUZZ_TARGETS:-$(cargo fuzz list)}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# One target: SECONDS of libFuzzer on its seeds; its log in $scratch/<target>.log.
run_one() {
  local t=$1 corpus
  mkdir -p "artifacts/$t" "corpus/$t"
  if [ "${FUZZ_KEEP:-0}" = 1 ]; then
    corpus=("corpus/$t")
  else
    mkdir -p "$scratch/$t"
    corpus=("$scratch/$t" "corpus/$t")
  fi
  if "$bindir/$t" "${corpus[@]}" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -dict=numbers.dict -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"$scratch/$t.log" 2>&1; then
    echo ok >"$scratch/$t.result"
  else
    echo CRASH >"$scratch/$t.result"
  fi
}

echo "== fuzzing $(wc -w <<<"$targets") targets, ${secs} s each, $jobs at a time"
running=0
for t in $targets; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

failed=0
printf '%-22s %8s %12s %9s %8s %7s  %s\n' target seconds executions exec/s corpus cov result
for t in $targets; do
  log="$scratch/$t.log"
  result=$(cat "$scratch/$t.result" 2>/dev/null || echo "NOT RUN")
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  # The last status line: "#N DONE cov: C ft: F corp: U/Sb ..." (or the last pulse before a crash).
  status=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$status")
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")
  printf '%-22s %8s %12s %9s %8s %7s  %s\n' "$t" "$secs" "${execs:--}" "${rate:--}" "${corp:--}" "${cov:--}" "$result"
  if [ "$result" != ok ]; then
    failed=1
  fi
done

if [ "$failed" = 1 ]; then
  for t in $targets; do
    if [ "$(cat "$scratch/$t.result" 2>/dev/null)" != ok ]; then
      echo
      echo "== $t crashed; the end of its log:"
      tail -40 "$scratch/$t.log"
      for a in "artifacts/$t"/*; do
        [ -e "$a" ] && echo "replay: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s $sanitizer -a $t $a)"
      done
    fi
  done
  exit 1
fi
