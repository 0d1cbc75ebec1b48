#!/usr/bin/env bash
# What `--metrics-addr` costs per request, in instructions (callgrind): a
# count that does not depend on how noisy the machine is, where wall-clock
# rounds on this 2-core VM vary by +-8 % and cannot resolve a 1-3 % effect.
#
#   scripts/bench/metrics-cost.sh
#
# Runs scripts/bench/instructions.sh for the creator with metrics off and on
# and prints the difference per request.
set -euo pipefail
here=$(dirname "$0")
count() { "$here/instructions.sh" creator | awk '$1 == "creator" { print $2 }'; }
off=$(count)
on=$(RUNNER_FLAGS="--metrics-addr 127.0.0.1:0" count)
printf 'metrics off %9d instructions per request\nmetrics on  %9d instructions per request\n' "$off" "$on"
awk -v off="$off" -v on="$on" \
    'BEGIN { printf "metrics cost: %+d instructions per request (%+.2f %%)\n", on - off, 100 * (on - off) / off }'
