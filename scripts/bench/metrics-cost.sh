#!/usr/bin/env bash
# What `--metrics-addr` costs per request, in instructions (callgrind): a
# count that does not depend on how noisy the machine is, where wall-clock
# rounds on this 2-core VM vary by +-8 % and cannot resolve a 1-3 % effect.
#
#   scripts/bench/metrics-cost.sh [N]     (after scripts/bench.sh, whose builds it uses)
#
# For metrics off and on, runs the release runner under callgrind with the
# creator .cwasm, sends 50 and then 50+N sequential POST /create, and prints
# the slope: instructions per request, start-up excluded. Runs with
# --no-pooling: valgrind cannot reserve the pooling allocator's address
# space; the metrics work per request is the same either way.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-200}
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
RUNNER=$TARGET_DIR/release/runner
WORK=$TARGET_DIR/bench
for f in "$RUNNER" "$WORK/cwasm/creator.cwasm" "$WORK/key/key.txt"; do
    [ -e "$f" ] || { echo "metrics-cost: $f missing; run scripts/bench.sh first" >&2; exit 1; }
done
command -v valgrind >/dev/null || { echo "metrics-cost: needs valgrind (apt-get install valgrind)" >&2; exit 1; }

# instructions REQUESTS [runner flags]: total Ir of start-up + REQUESTS requests.
instructions() {
    local requests=$1 out port pid
    shift
    out=$(mktemp)
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    valgrind --tool=callgrind --callgrind-out-file="$out" "$RUNNER" --addr "127.0.0.1:$port" \
        --no-access-log --no-pooling --dir "$WORK/key::/usr/share/key" "$@" \
        "$WORK/cwasm/creator.cwasm" >/dev/null 2>"$out.log" &
    pid=$!
    python3 - "$port" "$requests" <<'PY'
import http.client, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 60
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/healthz"); c.getresponse().read()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("runner under valgrind did not start")
        time.sleep(0.2)
for _ in range(n):
    c.request("POST", "/create", body=b'{"username":"testname","password":"p"}')
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
    kill -TERM "$pid"
    wait "$pid" || true
    awk '/^totals:/ { print $2 }' "$out"
    rm -f "$out" "$out.log"
}

declare -A per_request
for mode in off on; do
    flags=()
    [ "$mode" = on ] && flags=(--metrics-addr 127.0.0.1:0)
    base=$(instructions 50 ${flags[@]+"${flags[@]}"})
    more=$(instructions $((50 + N)) ${flags[@]+"${flags[@]}"})
    per_request[$mode]=$(( (more - base) / N ))
    printf 'metrics %-3s %9d instructions per request\n' "$mode" "${per_request[$mode]}"
done
awk -v off="${per_request[off]}" -v on="${per_request[on]}" \
    'BEGIN { printf "metrics cost: %+d instructions per request (%+.2f %%)\n", on - off, 100 * (on - off) / off }'
