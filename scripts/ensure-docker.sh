#!/usr/bin/env bash
# Make sure a Docker engine answers `docker info`.
#
# If it does not and we are root, install Debian's docker.io (+ docker-compose)
# when missing and start dockerd in the background, logging to $DOCKERD_LOG.
# Safe to run repeatedly; exits non-zero with a clear message on failure.
#
# Note: a newer client in /usr/local/bin may shadow Debian's /usr/bin/docker;
# either one talks to the 20.10 daemon started here.
set -euo pipefail

log() { printf '[ensure-docker] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
WAIT_SECONDS=${DOCKERD_WAIT_SECONDS:-60}

if docker info >/dev/null 2>&1; then
    log "docker engine is up"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "docker engine not reachable and not root: start Docker yourself"

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
    missing+=(docker-compose)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if pgrep -x dockerd >/dev/null 2>&1; then
    log "dockerd already running, waiting for it"
else
    log "starting dockerd (log: $DOCKERD_LOG)"
    # setsid: detach from our process group so callers' job control can't stop it.
    # Close every other inherited descriptor first: a caller's lock (say
    # `flock /tmp/wasm-jwt-containers.lock scripts/test.sh`) would otherwise be
    # held by dockerd for as long as it runs, and the next caller would wait forever.
    (
        for fd in "/proc/$BASHPID/fd"/*; do
            fd=${fd##*/}
            [ "$fd" -gt 2 ] && eval "exec $fd>&-"
        done
        exec setsid dockerd >"$DOCKERD_LOG" 2>&1 </dev/null
    ) &
fi

for _ in $(seq "$WAIT_SECONDS"); do
    if docker info >/dev/null 2>&1; then
        log "docker engine is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
        exit 0
    fi
    sleep 1
done
tail -n 20 "$DOCKERD_LOG" >&2 || true
die "dockerd did not answer within ${WAIT_SECONDS}s (see $DOCKERD_LOG)"
