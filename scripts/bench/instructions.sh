#!/usr/bin/env bash
# Instructions and component-model host calls per request, counted with
# callgrind: figures that do not depend on how busy the machine is (wall-clock
# rounds on this 2-core VM vary by +-8 %), for comparing two versions of a
# component or of the runner.
#
#   scripts/bench/instructions.sh [COMPONENT...]     default: bench_floor creator verifier
#
# Environment:
#   N=200             requests in the measured slope
#   RUNNER_FLAGS=...  extra runner flags (e.g. --metrics-addr 127.0.0.1:0)
#   RUNNER=...        the runner binary (default: the `profiling` build, whose
#                     symbols let host calls be counted; built if missing)
#   GUEST_READS_KEY=1 the guest reads the key file itself; by default the
#                     runner passes it (`--env-from-file`), as the images run
#
# For each component: starts the runner under callgrind with its .cwasm,
# sends 50 and then 50+N sequential requests in two runs, and prints the
# difference divided by N, so start-up is excluded. The pooling allocator is
# on, with two slots (valgrind cannot reserve a full pool's address space).
# Host calls are the calls into wasmtime's `HostFn::cabi_entrypoint`: every
# WASI function the guest calls, resource drops excepted. The guest's own code
# counts as instructions too (callgrind runs the generated code), the kernel's
# does not.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
N=${N:-200}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$TARGET_DIR/bench/instructions
RUNNER=${RUNNER:-$TARGET_DIR/profiling/runner}
read -r -a EXTRA <<<"${RUNNER_FLAGS:-}"
KEY_FLAGS=(--env-from-file "SIGNING_KEY=$WORK/key/key.txt")
[ "${GUEST_READS_KEY:-}" != 1 ] || KEY_FLAGS=()
components=("$@")
[ ${#components[@]} -gt 0 ] || components=(bench_floor creator verifier)

command -v valgrind >/dev/null || { echo "instructions: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
if [ ! -x "$RUNNER" ]; then
    echo "instructions: building the profiling runner (release with symbols)" >&2
    cargo build --quiet --profile profiling -p runner
fi
cargo build --quiet --release --target wasm32-wasip2 -p creator -p verifier -p bench-floor
cargo build --quiet --release -p keycreator
mkdir -p "$WORK/key"
KEY=benchmark-secret KEY_FILE=$WORK/key/key.txt "$TARGET_DIR/release/keycreator" >/dev/null
printf '%s' '{"username":"testname","password":"pass"}' >"$WORK/create.json"

# A TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# measure COMPONENT REQUESTS: runs the runner under callgrind for REQUESTS
# requests and prints "instructions host-calls" for the whole run.
measure() {
    local component=$1 requests=$2 out port pid key=()
    # The floor component reads no key; a stat per request would not be its.
    [ "$component" = bench_floor ] || key=(${KEY_FLAGS[@]+"${KEY_FLAGS[@]}"})
    out=$(mktemp)
    port=$(free_port)
    valgrind --tool=callgrind --callgrind-out-file="$out" "$RUNNER" --addr "127.0.0.1:$port" \
        --no-access-log --max-concurrent-requests 2 --dir "$WORK/key::/usr/share/key" \
        --env TOKEN_TTL_SECONDS=86400 ${key[@]+"${key[@]}"} ${EXTRA[@]+"${EXTRA[@]}"} "$WORK/$component.cwasm" \
        >/dev/null 2>"$out.log" &
    pid=$!
    python3 - "$port" "$requests" "$component" "$WORK" <<'PY'
import http.client, json, sys, time
port, n, component, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
deadline = time.monotonic() + 120
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("GET", "/healthz"); c.getresponse().read()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("runner under valgrind did not start")
        time.sleep(0.2)
path, body_file = {"creator": ("/create", "create.json"),
                   "verifier": ("/verifier", "verify.json")}.get(component, ("/", "create.json"))
body = open(f"{work}/{body_file}", "rb").read()
for _ in range(n):
    c.request("POST", path, body=body)
    r = c.getresponse(); r.read()
    assert r.status == 200, (r.status, r.read())
PY
    kill -TERM "$pid"
    wait "$pid" || true
    python3 - "$out" <<'PY'
import re, sys
names, calls, current, total = {}, 0, None, 0
for line in open(sys.argv[1], errors="replace"):
    if line.startswith("totals:"):
        total = int(line.split()[1])
    # Names are compressed: the first mention of a function, as caller
    # (fn=) or callee (cfn=), gives "(id) name"; later ones only "(id)".
    m = re.match(r"(c?)fn=\((\d+)\)(?: (.*))?", line)
    if m:
        callee, id_, name = m.groups()
        if name:
            names[id_] = name.strip()
        if callee:
            current = names.get(id_, "")
        continue
    if line.startswith("calls=") and current is not None:
        if current.endswith("HostFn::cabi_entrypoint"):
            calls += int(line.split("=")[1].split()[0])
        current = None
print(total, calls)
PY
    rm -f "$out" "$out.log"
}

printf '%-12s %14s %12s\n' component instructions host-calls
for component in "${components[@]}"; do
    "$RUNNER" compile "$TARGET_DIR/wasm32-wasip2/release/$component.wasm" -o "$WORK/$component.cwasm"
    if [ "$component" = verifier ]; then
        # A token from this creator, valid long enough for the run.
        "$RUNNER" compile "$TARGET_DIR/wasm32-wasip2/release/creator.wasm" -o "$WORK/creator.cwasm"
        port=$(free_port)
        "$RUNNER" --addr "127.0.0.1:$port" --no-access-log --dir "$WORK/key::/usr/share/key" \
            --env TOKEN_TTL_SECONDS=86400 "$WORK/creator.cwasm" >/dev/null 2>&1 &
        pid=$!
        python3 - "$port" "$WORK" <<'PY'
import http.client, json, sys, time
port, work = int(sys.argv[1]), sys.argv[2]
for _ in range(200):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("POST", "/create", body=open(f"{work}/create.json", "rb").read())
        token = c.getresponse().read().decode()
        break
    except OSError:
        time.sleep(0.05)
open(f"{work}/verify.json", "w").write(json.dumps({"token": token}))
PY
        kill "$pid"
        wait "$pid" || true
    fi
    read -r base_ir base_calls < <(measure "$component" 50)
    read -r more_ir more_calls < <(measure "$component" $((50 + N)))
    awk -v c="$component" -v n="$N" -v i=$((more_ir - base_ir)) -v h=$((more_calls - base_calls)) \
        'BEGIN { printf "%-12s %14d %12.1f\n", c, i / n, h / n }'
done
