#!/usr/bin/env bash
# Runs every fuzz target longer than CI does: SECONDS each (default 600), two at a time, with
# AddressSanitizer unless FUZZ_SANITIZER says otherwise (it also checks the dependencies'
# unsafe code; a second build, and about half the executions per second). FUZZ_KEEP=1 keeps
# what it finds in fuzz/corpus/<target>/ (trim with `cargo fuzz cmin` before committing).
# Same table, environment and exit status as fuzz/run.sh.
#
#   fuzz/run-long.sh [SECONDS_PER_TARGET]
set -euo pipefail
export FUZZ_SANITIZER=${FUZZ_SANITIZER:-address}
exec "$(dirname "$0")/run.sh" "${1:-600}"
