#!/usr/bin/env bash
# Benchmark the token service, side by side, on this machine, in one command:
#
#   scripts/bench.sh            full run (~25 min once built); writes docs/benchmarks.md
#   scripts/bench.sh --quick    1 s runs, 1 round, no containers, wasmtime-cli only if
#                               already installed; writes target/bench/benchmarks-quick.md
#   scripts/bench.sh --only-algorithms
#                               the token algorithm pass alone (~6 min): replaces only
#                               its section of docs/benchmarks.md
#
# It replaces only what it generates in the report, between the markers
# (docs/benchmarks.md's current results and analysis are written by hand).
#
# Systems: runner JIT (.wasm), runner AOT (.cwasm), the same AOT runner as the
# images build it (static musl), runner AOT --no-pooling, the
# --no-access-log, --fs-on-blocking-pool and --metrics-addr variants, the
# runner on the floor component (scripts/bench/floor: answers "ok", so it
# costs what the runner itself costs), `wasmtime serve` 48.0.8 on the same
# .wasm, Spin (`spin up` of spin.toml, same .wasm and key; only when a Spin
# CLI is given, see SPIN below), a Go net/http + golang-jwt server of the same
# contract (scripts/bench/go-baseline: what users of the reference run today),
# and native-server (hyper, no Wasm: the ceiling). POST /create
# and POST /verifier under wrk at 32 connections and at 1 connection; then, in
# the full mode, the floor, the runner's services and Go loaded in turn, a few
# seconds each (CPU ratios from neighbouring runs); memory; start-up;
# container start and image sizes when docker and the images exist. Then the
# token algorithms: HS256, EdDSA and ES256 create and verify for the runner,
# native-server and the Go baseline doing the same algorithm, and the runner
# with the P-256 crates at opt-level 3 (what opt-level "s" costs ES256).
#
# Builds what it needs: the release runner, native-server and keycreator, the
# two components, the floor component and their .cwasm, the Go baseline
# (Debian's golang-go and golang-github-golang-jwt-jwt-dev, GOPATH mode: no
# module proxy needed); installs wrk (and python3) from Debian when
# missing and, in full mode, wasmtime-cli 48.0.8 into target/bench-tools (a
# ~10 min cargo build, done once).
#
# Options:
#   --quick              see above
#   --only-algorithms    see above
#   --out PATH           where to write the markdown report
#   --pin on|off|auto    pin servers and wrk to separate CPUs (auto: when >= 2 CPUs)
#   --no-containers      skip docker measurements
#   --no-unpinned        skip the full mode's extra unpinned 32-connection pass
#   --quiet-budget S     seconds the full mode may wait in all for other processes
#                        to go idle before runs (default 900; 0 = never wait)
#   --duration S, --duration-c1 S, --reps N, --startup-reps N, --only ID,...
#                        override the mode's defaults (harness debugging)
# Environment: WASMTIME=path/to/wasmtime to use another wasmtime 48.0.8 binary;
#   SPIN=path/to/spin (or `spin` on PATH) adds Spin to the tables and the
#   runner's ratio to it to the targets. Never installed here; without it the
#   report says Spin was not measured.
#
# Exit status: 0 when every measurement ran, whatever the numbers; non-zero only
# when the harness breaks (a build fails, a server never comes up or breaks the
# contract, wrk reports socket errors).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$TARGET_DIR/bench
TOOLS=$TARGET_DIR/bench-tools
WASMTIME_VERSION=48.0.8

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

QUICK=0
ONLY_ALGORITHMS=0
OUT=""
HARNESS_ARGS=()
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1 ;;
        --out) OUT=${2:?--out needs a path}; shift ;;
        --pin|--duration|--duration-c1|--reps|--startup-reps|--only|--quiet-budget)
            HARNESS_ARGS+=("$1" "${2:?$1 needs a value}"); shift ;;
        --no-containers|--no-unpinned) HARNESS_ARGS+=("$1") ;;
        --only-algorithms) ONLY_ALGORITHMS=1; HARNESS_ARGS+=("$1") ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
if [ -z "$OUT" ]; then
    if [ "$QUICK" = 1 ]; then OUT=$WORK/benchmarks-quick.md; else OUT=$ROOT/docs/benchmarks.md; fi
fi

apt_install() {
    [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1 ||
        die "$* missing and cannot apt-get install it (not root or not Debian); install it first"
    log "installing $* from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 || {
        apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    } || die "apt-get install $* failed"
}

# --- tools -----------------------------------------------------------------
command -v wrk >/dev/null 2>&1 || apt_install wrk
command -v taskset >/dev/null 2>&1 || apt_install util-linux
PYTHON=$(command -v python3 || true)
[ -n "$PYTHON" ] || { apt_install python3; PYTHON=$(command -v python3); }

# --- builds ----------------------------------------------------------------
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    log "adding the wasm32-wasip2 target"
    rustup target add wasm32-wasip2
fi
log "building runner, native-server, keycreator (release)"
cargo build --release --quiet -p runner -p native-server -p keycreator
log "building the creator, verifier and floor components"
cargo build --release --quiet --target wasm32-wasip2 -p creator -p verifier -p bench-floor

# The Go baseline, from Debian packages only.
command -v go >/dev/null 2>&1 || apt_install golang-go
[ -d /usr/share/gocode/src/github.com/golang-jwt/jwt ] || apt_install golang-github-golang-jwt-jwt-dev
GO_BASELINE=$WORK/go-baseline
log "building the Go baseline ($(go version | cut -d' ' -f3))"
mkdir -p "$WORK"
(cd "$ROOT/scripts/bench/go-baseline" &&
    GOPATH=$ROOT/scripts/gopath:/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE=$WORK/go-cache \
        go build -o "$GO_BASELINE" .) || die "the Go baseline did not build"

# The runner exactly as the images build it (static musl, no compiler), so
# the figures cover what is shipped; skipped if the musl toolchain is missing.
RUNNER_MUSL=""
if [ "$ONLY_ALGORITHMS" = 1 ]; then
    log "token algorithms only: no static musl runner, wasmtime-cli or Spin"
elif rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl ||
    rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1; then
    command -v x86_64-linux-musl-gcc >/dev/null 2>&1 || (apt_install musl-tools) || true
    log "building the runner for the images (static musl, no compiler)"
    if cargo build --release --quiet --target x86_64-unknown-linux-musl -p runner --no-default-features; then
        RUNNER_MUSL=$TARGET_DIR/x86_64-unknown-linux-musl/release/runner
    else
        log "WARNING: static musl runner did not build; measuring without it"
    fi
fi

RUNNER=$TARGET_DIR/release/runner
NATIVE=$TARGET_DIR/release/native-server
KEYCREATOR=$TARGET_DIR/release/keycreator
WASM_DIR=$TARGET_DIR/wasm32-wasip2/release
CWASM_DIR=$WORK/cwasm
mkdir -p "$WORK" "$CWASM_DIR"
for c in creator verifier bench_floor; do
    if [ ! -s "$CWASM_DIR/$c.cwasm" ] || [ "$WASM_DIR/$c.wasm" -nt "$CWASM_DIR/$c.cwasm" ] ||
        [ "$RUNNER" -nt "$CWASM_DIR/$c.cwasm" ]; then
        log "runner compile $c.wasm"
        "$RUNNER" compile "$WASM_DIR/$c.wasm" -o "$CWASM_DIR/$c.cwasm"
    fi
done

# --- wasmtime-cli ------------------------------------------------------------
wasmtime_ok() { [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q "^wasmtime $WASMTIME_VERSION\b"; }
WASMTIME=${WASMTIME:-$TOOLS/bin/wasmtime}
if [ "$ONLY_ALGORITHMS" = 1 ]; then
    WASMTIME=""
elif ! wasmtime_ok "$WASMTIME"; then
    if [ "$QUICK" = 1 ]; then
        log "wasmtime-cli $WASMTIME_VERSION not installed: skipped in quick mode"
        WASMTIME=""
    else
        log "installing wasmtime-cli $WASMTIME_VERSION into $TOOLS (a long cargo build, done once)"
        if cargo install wasmtime-cli --version "$WASMTIME_VERSION" --locked --root "$TOOLS" &&
            wasmtime_ok "$TOOLS/bin/wasmtime"; then
            WASMTIME=$TOOLS/bin/wasmtime
        else
            log "WARNING: wasmtime-cli could not be installed; measuring without it"
            WASMTIME=""
        fi
    fi
fi

# --- Spin (optional, never installed) ----------------------------------------
SPIN=${SPIN:-$(command -v spin || true)}
[ "$ONLY_ALGORITHMS" = 0 ] || SPIN=""
if [ -n "$SPIN" ]; then
    "$SPIN" --version >/dev/null 2>&1 || die "SPIN=$SPIN does not run"
    log "measuring $("$SPIN" --version | head -1) too"
else
    log "no Spin CLI (SPIN=/path/to/spin or spin on PATH): Spin is not measured"
fi

# --- keys --------------------------------------------------------------------
KEYDIR=$WORK/key
mkdir -p "$KEYDIR"
KEY=benchmark-secret KEY_FILE=$KEYDIR/key.txt "$KEYCREATOR" >/dev/null
# EdDSA and ES256: each service's directory, as keycreator writes it for it.
ALG_KEYS=$WORK/keys
for alg in EdDSA ES256; do
    for role in creator verifier; do
        mkdir -p "$ALG_KEYS/$alg/$role"
        KEY=benchmark-secret TOKEN_ALG=$alg KEYS_FOR=$role KEY_FILE=$ALG_KEYS/$alg/$role/key.txt \
            "$KEYCREATOR" >/dev/null
    done
done

# --- ES256 without the size setting -------------------------------------------
# Cargo.toml builds the P-256 crates at opt-level "s" (the verifier image's
# 6 MB goal); the components built at opt-level 3, in a target directory of
# their own, measure what that costs. Not in quick mode.
P256_O3_CWASM_DIR=""
if [ "$QUICK" = 0 ]; then
    O3_TARGET=$WORK/p256-opt-level-3
    log "building the components with the P-256 crates at opt-level 3"
    o3=()
    for crate in p256 primeorder elliptic-curve ecdsa; do
        o3+=(--config "profile.release.package.$crate.opt-level=3")
    done
    CARGO_TARGET_DIR=$O3_TARGET cargo build --release --quiet --target wasm32-wasip2 \
        -p creator -p verifier "${o3[@]}"
    P256_O3_CWASM_DIR=$O3_TARGET/cwasm
    mkdir -p "$P256_O3_CWASM_DIR"
    for c in creator verifier; do
        "$RUNNER" compile "$O3_TARGET/wasm32-wasip2/release/$c.wasm" -o "$P256_O3_CWASM_DIR/$c.cwasm"
    done
fi

# --- measure -----------------------------------------------------------------
[ "$QUICK" = 1 ] && HARNESS_ARGS+=(--quick)
exec "$PYTHON" "$ROOT/scripts/bench/harness.py" \
    --root "$ROOT" --runner "$RUNNER" --runner-musl "$RUNNER_MUSL" --native "$NATIVE" --wasmtime "$WASMTIME" --spin "$SPIN" \
    --go "$GO_BASELINE" --floor-cwasm "$CWASM_DIR/bench_floor.cwasm" \
    --wasm-dir "$WASM_DIR" --cwasm-dir "$CWASM_DIR" --keydir "$KEYDIR" \
    --alg-keys "$ALG_KEYS" --p256-o3-cwasm-dir "$P256_O3_CWASM_DIR" \
    --workdir "$WORK" --out "$OUT" ${HARNESS_ARGS[@]+"${HARNESS_ARGS[@]}"}
