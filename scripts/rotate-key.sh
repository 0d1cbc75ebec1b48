#!/usr/bin/env bash
# Rotate the signing key of the compose deployment without rejecting a token.
#
#   KEY=<new> KEY_PREVIOUS=<old> scripts/rotate-key.sh          every step, with the waits in between
#
#   EdDSA and ES256 (TOKEN_ALG), whose public keys clients cache:
#   KEY=<old> KEY_NEXT=<new> scripts/rotate-key.sh publish      publish <new>; <old> still signs
#     ... wait JWKS_MAX_AGE_SECONDS, until every client has fetched the new set
#   KEY=<new> KEY_PREVIOUS=<old> scripts/rotate-key.sh open     creators sign with <new>; <old> still accepted
#     ... wait TOKEN_TTL_SECONDS, until every token of <old> has expired
#   KEY=<new> scripts/rotate-key.sh close                       <old> is dropped: its tokens get 401
#
#   HS256 (the default) has no published keys and no publish step: open, wait, close.
#
# It re-runs the two keycreator services (`compose run`) on the running
# stack's key volumes, the verifier's first: a key is accepted before it
# signs. The services read the key files on every request, so nothing
# restarts. Afterwards every compose command needs KEY=<new>.
#
# Reads what compose reads: TOKEN_ALG, TOKEN_TTL_SECONDS (default 300),
# JWKS_MAX_AGE_SECONDS (default 300), COMPOSE_PROJECT_NAME, COMPOSE_FILE, ...;
# COMPOSE overrides the compose command (default: `docker compose`, else
# docker-compose). Exit 1 with one line on bad usage or a failed step.
set -euo pipefail

cd "$(dirname "$0")/.."

die() { printf 'rotate-key: %s\n' "$*" >&2; exit 1; }
log() { printf 'rotate-key: %s\n' "$*"; }

step=${1:-all}
case $step in
    publish | open | close | all) ;;
    -h | --help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown step '$step'; use publish, open, close or no argument (see --help)" ;;
esac

alg=${TOKEN_ALG:-HS256}
case $alg in
    HS256) asymmetric=false ;;
    EdDSA | ES256) asymmetric=true ;;
    *) die "TOKEN_ALG must be HS256, EdDSA or ES256, got '$alg'" ;;
esac
number() {
    [[ ${!1:-$2} =~ ^[0-9]+$ ]] || die "$1 must be a whole number of seconds, got '${!1}'"
    printf '%s' "${!1:-$2}"
}
ttl=$(number TOKEN_TTL_SECONDS 300)
max_age=$(number JWKS_MAX_AGE_SECONDS 300)

[[ -n ${KEY:-} ]] || die "KEY is not set: set it to the secret that signs after this step"
case $step in
    publish)
        $asymmetric || die "publish is for EdDSA and ES256 (TOKEN_ALG=$alg has no published keys): use open, then close"
        [[ -n ${KEY_NEXT:-} ]] || die "KEY_NEXT is not set: set it to the new secret (KEY stays the one in use)"
        [[ $KEY_NEXT != "$KEY" ]] || die "KEY and KEY_NEXT are the same secret" ;;
    open | all)
        [[ -n ${KEY_PREVIOUS:-} ]] || die "KEY_PREVIOUS is not set: set it to the secret in use now"
        [[ $KEY_PREVIOUS != "$KEY" ]] || die "KEY and KEY_PREVIOUS are the same secret" ;;
esac

if [[ -n ${COMPOSE:-} ]]; then
    read -r -a compose <<<"$COMPOSE"
elif docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose=(docker-compose)
else
    die "neither 'docker compose' nor docker-compose works"
fi

# write_keys KEY KEY_PREVIOUS KEY_NEXT: both keycreators on the stack's key
# volumes, the verifier's first; then both services must report ready.
write_keys() {
    local service
    for service in verifier-keycreator keycreator; do
        KEY=$1 KEY_PREVIOUS=$2 KEY_NEXT=$3 "${compose[@]}" run --rm --no-deps -T "$service" >/dev/null ||
            die "$service failed; its key files are unchanged or complete (see its message above)"
    done
    for service in verifier:5000 creator:8000; do
        "${compose[@]}" exec -T "${service%:*}" /runner probe "http://127.0.0.1:${service#*:}/readyz" >/dev/null ||
            die "the ${service%:*} is not ready after the key change: check 'compose logs ${service%:*}'"
    done
}

pause() {
    log "waiting ${1}s ($2)"
    sleep "$1"
}

if [[ $step == publish ]] || { [[ $step == all ]] && $asymmetric; }; then
    if [[ $step == all ]]; then
        write_keys "$KEY_PREVIOUS" "" "$KEY"
    else
        write_keys "$KEY" "" "$KEY_NEXT"
    fi
    log "published: the new key is in the JWK Set; the key in use still signs"
fi
if [[ $step == all ]] && $asymmetric; then
    # Clients may serve the set they fetched for max-age seconds; plus skew.
    pause $((max_age + 5)) "JWKS_MAX_AGE_SECONDS + 5, until every client that caches the set has the new key"
fi
if [[ $step == open || $step == all ]]; then
    write_keys "$KEY" "$KEY_PREVIOUS" ""
    log "opened: creators sign with the new key, verifiers accept the new and the previous one"
fi
if [[ $step == all ]]; then
    # One token lifetime plus a little clock skew between creator and verifier.
    pause $((ttl + 5)) "TOKEN_TTL_SECONDS + 5, until every token of the previous key has expired"
fi
if [[ $step == close || $step == all ]]; then
    write_keys "$KEY" "" ""
    log "closed: only the new key is accepted; keep KEY=<new> for every compose command from now on"
fi
