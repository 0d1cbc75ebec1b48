#!/usr/bin/env bash
# Rotate the signing key of the compose deployment without rejecting a token.
#
#   KEY=<new> KEY_PREVIOUS=<old> scripts/rotate-key.sh        open, wait one token lifetime, close
#   KEY=<new> KEY_PREVIOUS=<old> scripts/rotate-key.sh open   creators sign with <new>; verifiers accept both
#   KEY=<new> scripts/rotate-key.sh close                     verifiers drop <old>: its tokens get 401
#
# It re-runs keycreator (`compose run`) on the running stack's key volume.
# keycreator writes previous-key.txt before key.txt, and the services read the
# key files on every request, so nothing restarts: from the moment key.txt
# changes, creators sign with the new key and verifiers accept both. Run
# `close` no sooner than TOKEN_TTL_SECONDS (the stack's token lifetime,
# default 300) after `open`, or still-valid tokens of the old key are
# rejected. Afterwards every compose command needs KEY=<new>.
#
# Honours what compose honours (COMPOSE_PROJECT_NAME, COMPOSE_FILE, ...);
# COMPOSE overrides the compose command (default: `docker compose`, else
# docker-compose). Exit 1 with one line on bad usage or a failed step.
set -euo pipefail

cd "$(dirname "$0")/.."

die() { printf 'rotate-key: %s\n' "$*" >&2; exit 1; }
log() { printf 'rotate-key: %s\n' "$*"; }

step=${1:-all}
case $step in
    open | close | all) ;;
    -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown step '$step'; use open, close or no argument (see --help)" ;;
esac

[[ -n ${KEY:-} ]] || die "KEY is not set: set it to the NEW signing secret"
if [[ $step != close ]]; then
    [[ -n ${KEY_PREVIOUS:-} ]] || die "KEY_PREVIOUS is not set: set it to the secret in use now"
    [[ $KEY_PREVIOUS != "$KEY" ]] || die "KEY and KEY_PREVIOUS are the same secret"
fi
ttl=${TOKEN_TTL_SECONDS:-300}
[[ $ttl =~ ^[0-9]+$ ]] || die "TOKEN_TTL_SECONDS must be a whole number of seconds, got '$ttl'"

if [[ -n ${COMPOSE:-} ]]; then
    read -r -a compose <<<"$COMPOSE"
elif docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose=(docker-compose)
else
    die "neither 'docker compose' nor docker-compose works"
fi

export KEY

# keycreator with KEY and KEY_PREVIOUS=$1, on the stack's key volume; then the
# verifier must report ready (both key files present and well-formed).
write_keys() {
    KEY_PREVIOUS=$1 "${compose[@]}" run --rm --no-deps -T keycreator >/dev/null ||
        die "keycreator failed; the key files are unchanged or complete (see its message above)"
    "${compose[@]}" exec -T verifier /runner probe http://127.0.0.1:5000/readyz >/dev/null ||
        die "the verifier is not ready after the key change: check 'compose logs verifier'"
}

if [[ $step != close ]]; then
    write_keys "$KEY_PREVIOUS"
    log "opened: creators sign with the new key, verifiers accept the new and the previous one"
fi
if [[ $step == all ]]; then
    # One token lifetime plus a little clock skew between creator and verifier.
    wait=$((ttl + 5))
    log "waiting ${wait}s (TOKEN_TTL_SECONDS + 5) until every token of the previous key has expired"
    sleep "$wait"
fi
if [[ $step != open ]]; then
    write_keys ""
    log "closed: only the new key is accepted; keep KEY=<new> for every compose command from now on"
fi
