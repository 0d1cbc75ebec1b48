#!/usr/bin/env bash
# Build the three service images from docker/Dockerfile:
#   wasm-jwt/keycreator:0.1.0  wasm-jwt/creator:0.1.0  wasm-jwt/verifier:0.1.0
# (the names compose.yaml and k8s/ use). The Rust build stage is shared, so the
# second and third builds are cache hits. Uses whatever builder `docker build`
# selects (BuildKit where available, else the legacy builder).
set -euo pipefail

cd "$(dirname "$0")/.."

VERSION=0.1.0
TARGETS=(keycreator creator verifier)

log() { printf '[build-images] %s\n' "$*" >&2; }

scripts/ensure-docker.sh
scripts/builder-image.sh

for target in "${TARGETS[@]}"; do
    image=wasm-jwt/$target:$VERSION
    log "building $image"
    start=$SECONDS
    docker build --file docker/Dockerfile --target "$target" --tag "$image" .
    log "built $image in $((SECONDS - start))s"
done

for target in "${TARGETS[@]}"; do
    image=wasm-jwt/$target:$VERSION
    size=$(docker image inspect --format '{{.Size}}' "$image")
    printf '%-28s %8s bytes (%s)\n' "$image" "$size" "$(numfmt --to=iec-i --suffix=B "$size")"
done
