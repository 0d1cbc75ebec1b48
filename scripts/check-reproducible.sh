#!/usr/bin/env bash
# Are the images' files reproducible? Builds docker/Dockerfile's `build` and
# `sbom` stages twice from this checkout, the second time with --no-cache (a
# clean build directory: nothing from the first build is reused, crates are
# fetched again), and compares what the images ship byte for byte: keycreator,
# the runner, the precompiled components and the SBOMs. The first round may
# come from the layer cache (an earlier build of the same inputs); the second
# builds every stage anew.
#
#   scripts/check-reproducible.sh                        this machine's architecture
#   scripts/check-reproducible.sh --platform linux/arm64 the cross-compiled build
#   scripts/check-reproducible.sh --keep DIR             keep both copies of what differs
#
# Prints one line per file (same / DIFFERENT, with both SHA-256) and exits 1
# if any differs. Takes as long as a full build (~15 min on 2 cores).
# Results: docs/supply-chain.md.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[check-reproducible] %s\n' "$*" >&2; }
die() { printf 'check-reproducible.sh: error: %s\n' "$*" >&2; exit 2; }

arch=$(docker version -f '{{.Server.Arch}}')
keep=""
while [ $# -gt 0 ]; do
    case "$1" in
        --platform) [ $# -ge 2 ] || die "--platform needs a value"; arch=${2#linux/}; shift 2 ;;
        --keep) [ $# -ge 2 ] || die "--keep needs a directory"; keep=$2; shift 2 ;;
        *) die "unknown argument $1 (see the comment at the top)" ;;
    esac
done
case "$arch" in amd64 | arm64) ;; *) die "unsupported platform linux/$arch" ;; esac

scripts/ensure-docker.sh
scripts/builder-image.sh
epoch=$(git log -1 --format=%ct)
work=$(mktemp -d)
trap 'rm -rf "$work"; docker image rm -f wasm-jwt-repro/build:1 wasm-jwt-repro/build:2 wasm-jwt-repro/sbom:1 wasm-jwt-repro/sbom:2 >/dev/null 2>&1 || true' EXIT

for round in 1 2; do
    cache=()
    [ "$round" = 1 ] || cache=(--no-cache)
    # sbom first: it needs only the base stage, so its clean build is short.
    for stage in sbom build; do
        log "round $round: stage $stage for linux/$arch ${cache[*]}"
        docker build --file docker/Dockerfile --target "$stage" "${cache[@]}" \
            --build-arg "TARGETARCH=$arch" --build-arg "SOURCE_DATE_EPOCH=$epoch" \
            --tag "wasm-jwt-repro/$stage:$round" . >"$work/build-$stage-$round.log" 2>&1 ||
            { tail -n 30 "$work/build-$stage-$round.log" >&2; die "round $round: building $stage failed"; }
        cid=$(docker create "wasm-jwt-repro/$stage:$round" /bin/true)
        docker cp "$cid:/$([ "$stage" = build ] && echo out || echo sbom)" "$work/$stage-$round"
        docker rm "$cid" >/dev/null
    done
done

status=0
for file in build-1/keycreator build-1/runner build-1/creator.cwasm build-1/verifier.cwasm \
    sbom-1/keycreator.cdx.json.gz sbom-1/runner.cdx.json.gz sbom-1/creator.cdx.json.gz \
    sbom-1/verifier.cdx.json.gz; do
    other=${file/-1\//-2/}
    one=$(sha256sum <"$work/$file" | cut -c1-64)
    two=$(sha256sum <"$work/$other" | cut -c1-64)
    if [ "$one" = "$two" ]; then
        printf 'same       %-24s %s\n' "${file#*/}" "$one"
    else
        printf 'DIFFERENT  %-24s %s %s\n' "${file#*/}" "$one" "$two"
        status=1
        if [ -n "$keep" ]; then
            mkdir -p "$keep"
            cp "$work/$file" "$keep/${file#*/}.1"
            cp "$work/$other" "$keep/${file#*/}.2"
        fi
    fi
done
exit "$status"
