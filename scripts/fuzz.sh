#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for a bounded time with
# libFuzzer through cargo fuzz, and fails on any finding.
#
#   scripts/fuzz.sh                   each target 60 s, two at a time
#   scripts/fuzz.sh --seconds 600     a longer campaign
#   scripts/fuzz.sh --jobs 1 verify_token key_file
#
# Each target starts from its seeds (fuzz/seeds/TARGET, committed) and from
# what earlier runs here found (fuzz/corpus/TARGET, not committed). A finding
# (a panic: a crash or a violated property) is saved in
# fuzz/artifacts/TARGET/; reproduce it with
#   cargo fuzz run -s none -a TARGET fuzz/artifacts/TARGET/crash-...
# and make it a regression test beside the code it concerns.
#
# Only the stable toolchain is needed: `-s none` builds without a sanitizer
# (sanitizers need nightly) but with libFuzzer's coverage instrumentation and
# debug assertions (`-a`), so overflows and failed invariants are found too.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
jobs=2
targets=()
while [ $# -gt 0 ]; do
    case $1 in
        --seconds) seconds=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done

# The cargo-fuzz the targets were written against.
CARGO_FUZZ_VERSION=0.13.2
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
echo "fuzz: building ${targets[*]}"
cargo fuzz build --fuzz-dir fuzz -s none -a

logs=fuzz/artifacts/logs
mkdir -p "$logs"
run_one() {
    local target=$1
    mkdir -p "fuzz/corpus/$target" "fuzz/seeds/$target"
    # -timeout: an input that takes a second is a finding too (a hang).
    if cargo fuzz run --fuzz-dir fuzz -s none -a "$target" \
        "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -timeout=1 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$logs/$target.log" 2>&1; then
        local runs cov
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$target.log" | grep -o '[0-9]*$' || echo '?')
        cov=$(grep -o 'cov: [0-9]*' "$logs/$target.log" | tail -1 || echo 'cov: ?')
        echo "fuzz: $target: no finding in ${seconds}s ($runs executions, $cov edges, corpus $(find "fuzz/corpus/$target" -type f | wc -l) + $(find "fuzz/seeds/$target" -type f | wc -l) seeds)"
    else
        echo "fuzz: $target: FINDING (log: $logs/$target.log)"
        grep -E -m1 -A12 'panicked at|ERROR: libFuzzer|==ERROR' "$logs/$target.log" || tail -30 "$logs/$target.log"
        return 1
    fi
}

failed=0
running=0
for target in "${targets[@]}"; do
    run_one "$target" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || failed=1
        running=$((running - 1))
    fi
done
while [ "$running" -gt 0 ]; do
    wait -n || failed=1
    running=$((running - 1))
done
if [ "$failed" -ne 0 ]; then
    echo "fuzz: findings above; see fuzz/artifacts/" >&2
    exit 1
fi
