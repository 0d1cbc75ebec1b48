#!/usr/bin/env bash
# Build the three service images from docker/Dockerfile:
#   wasm-jwt/keycreator:0.1.0  wasm-jwt/creator:0.1.0  wasm-jwt/verifier:0.1.0
# (the names compose.yaml and k8s/ use). The Rust build stages are shared, so the
# second and third builds are cache hits. Uses whatever builder `docker build`
# selects (BuildKit where available, else the legacy builder).
#
#   scripts/build-images.sh                                   this machine's architecture
#   scripts/build-images.sh --platform linux/arm64            another one (cross-compiled)
#   scripts/build-images.sh --platform linux/amd64,linux/arm64
#
# A local image store holds one platform per tag, so with several platforms
# each is also tagged with its architecture (wasm-jwt/creator:0.1.0-arm64, ...)
# and the plain tag is left on the last platform listed. Without --platform, or
# with one, only the plain tags are written.
set -euo pipefail

cd "$(dirname "$0")/.."

VERSION=0.1.0
TARGETS=(keycreator creator verifier)

log() { printf '[build-images] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

host_arch() {
    case "$(uname -m)" in
        x86_64 | amd64) echo amd64 ;;
        aarch64 | arm64) echo arm64 ;;
        *) die "unsupported build machine architecture $(uname -m)" ;;
    esac
}

platforms=""
while [ $# -gt 0 ]; do
    case "$1" in
        --platform) [ $# -ge 2 ] || die "--platform needs a value"; platforms=$2; shift 2 ;;
        --platform=*) platforms=${1#--platform=}; shift ;;
        -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[ -n "$platforms" ] || platforms=linux/$(host_arch)

IFS=, read -r -a platform_list <<<"$platforms"
for platform in "${platform_list[@]}"; do
    case "$platform" in
        linux/amd64 | linux/arm64) ;;
        *) die "unsupported platform $platform (linux/amd64 or linux/arm64)" ;;
    esac
done

# BuildKit builds for another platform by itself (`--platform`). Docker 20.10's
# legacy builder cannot: with `--platform linux/arm64`, every COPY into the build
# stages, which run on this machine's platform, fails ("image ... does not match
# the specified platform"), and without it the images say this machine's
# architecture. So there we build without `--platform` (TARGETARCH picks the Rust
# target) and then write the right architecture into the image's config; the
# files inside are the same either way.
uses_buildkit() {
    case "${DOCKER_BUILDKIT:-}" in
        1 | true) return 0 ;;
        0 | false) return 1 ;;
    esac
    # Docker 23+ clients build with BuildKit when the buildx plugin is there.
    local major
    major=$(docker version -f '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)
    docker buildx version >/dev/null 2>&1 && [ "${major:-0}" -ge 23 ]
}

# set_architecture ARCH REF...: rewrite the config of the image that the tags REF
# name to say linux/ARCH, through `docker save | docker load` (the tags move to it).
set_architecture() {
    local arch=$1
    shift
    docker save "$@" | python3 -c '
import hashlib, io, json, sys, tarfile
arch = sys.argv[1]
src = tarfile.open(fileobj=io.BytesIO(sys.stdin.buffer.read()))
files = {m.name: (m, src.extractfile(m).read() if m.isfile() else None) for m in src.getmembers()}
manifest = json.loads(files["manifest.json"][1])
for entry in manifest:
    member, data = files.pop(entry["Config"])
    config = json.loads(data)
    config["architecture"] = arch
    config.pop("variant", None)
    data = json.dumps(config, separators=(",", ":")).encode()
    name = hashlib.sha256(data).hexdigest() + ".json"
    files[name] = (tarfile.TarInfo(name), data)
    entry["Config"] = name
files["manifest.json"] = (files["manifest.json"][0], json.dumps(manifest).encode())
out = tarfile.open(fileobj=sys.stdout.buffer, mode="w|")
for name, (member, data) in files.items():
    if data is not None:
        member.size = len(data)
        out.addfile(member, io.BytesIO(data))
    else:
        out.addfile(member)
out.close()
' "$arch" | docker load -q >/dev/null
}

scripts/ensure-docker.sh
scripts/builder-image.sh

buildkit=false
uses_buildkit && buildkit=true
# The SBOMs' timestamp (and, with BuildKit, the images'): the commit's time, so
# that two builds of one commit are the same bytes (docs/supply-chain.md).
source_date_epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
log "builder: $($buildkit && echo BuildKit || echo legacy)"

for platform in "${platform_list[@]}"; do
    arch=${platform#linux/}
    for target in "${TARGETS[@]}"; do
        image=wasm-jwt/$target:$VERSION
        refs=("$image")
        [ "${#platform_list[@]}" -eq 1 ] || refs+=("$image-$arch")
        tags=()
        for ref in "${refs[@]}"; do tags+=(--tag "$ref"); done
        log "building $image for $platform"
        start=$SECONDS
        # TARGETARCH: BuildKit derives it from --platform; the legacy builder
        # does not, and the Dockerfile needs it to pick the Rust target.
        platform_arg=()
        $buildkit && platform_arg=(--platform "$platform")
        docker build --file docker/Dockerfile --target "$target" "${platform_arg[@]}" \
            --build-arg "TARGETARCH=$arch" --build-arg "SOURCE_DATE_EPOCH=$source_date_epoch" "${tags[@]}" .
        built=$(docker image inspect -f '{{.Os}}/{{.Architecture}}' "$image")
        if [ "$built" != "$platform" ] && ! $buildkit; then
            set_architecture "$arch" "${refs[@]}"
            built=$(docker image inspect -f '{{.Os}}/{{.Architecture}}' "$image")
        fi
        [ "$built" = "$platform" ] || die "$image was built as $built, not $platform"
        log "built $image for $platform in $((SECONDS - start))s"
    done
done

for target in "${TARGETS[@]}"; do
    image=wasm-jwt/$target:$VERSION
    info=$(docker image inspect --format '{{.Size}} {{.Architecture}}' "$image")
    size=${info% *}
    printf '%-28s %-6s %8s bytes (%s)\n' "$image" "${info#* }" "$size" \
        "$(numfmt --to=iec-i --suffix=B "$size")"
done
