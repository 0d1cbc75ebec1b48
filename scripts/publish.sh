#!/usr/bin/env bash
# Publish the three images to a registry: each tag is one OCI image index
# whose entries are a linux/amd64 and a linux/arm64 image, so one reference
# works on every node of a mixed-architecture cluster.
#
#   scripts/publish.sh REGISTRY[/NAMESPACE] [--tag TAG] [--kustomize DIR [--pull-secret SECRET]]
#
#   scripts/publish.sh registry.example.com/team --tag 0.1.0
#     -> registry.example.com/team/{keycreator,creator,verifier}:0.1.0
#
# The images are built as scripts/build-images.sh builds them (the arm64 ones
# cross-compiled, no emulated rustc), copied from Docker into Podman's store,
# and pushed with `podman manifest push --all --format oci`, which pushes the
# platform images first and the index last: a push that fails leaves no index
# behind the tag. Before building, the registry is asked for each repository,
# so an unreachable registry or a refused login fails at once.
#
# Prints one line per image, `REGISTRY/NAMESPACE/NAME:TAG@sha256:...`, the
# index's digest (pin that reference to get exactly these bytes).
# --kustomize DIR writes DIR/kustomization.yaml (scripts/kustomize-overlay.sh):
# k8s/ with the three images pointed at the registry and pinned by digest,
# without the placeholder Secret, which you create first (`kubectl apply -k
# DIR`); --pull-secret SECRET gives the pods that image pull secret.
#
# Credentials: your existing login (`podman login` or `docker login`; the
# REGISTRY_AUTH_FILE, XDG_RUNTIME_DIR/containers/auth.json and
# ~/.docker/config.json that podman and skopeo read). Nothing here takes or
# writes a credential. TLS: a private CA goes where podman looks for it,
# /etc/containers/certs.d/HOST:PORT/ca.crt. Needs docker, podman and skopeo.
set -euo pipefail

caller_dir=$PWD # --kustomize DIR is relative to where the user is
cd "$(dirname "$0")/.."

VERSION=0.1.0 # the local tags scripts/build-images.sh writes
NAMES=(keycreator creator verifier)
PLATFORMS=(linux/amd64 linux/arm64)

log() { printf '[publish] %s\n' "$*" >&2; }
# Every failure is one line on stderr and a non-zero exit: 2 for a bad
# command line, 1 for everything else.
die() { printf 'publish.sh: error: %s\n' "$1" >&2; exit "${2:-1}"; }
usage_error() { die "$1 (usage: scripts/publish.sh REGISTRY[/NAMESPACE] [--tag TAG] [--kustomize DIR [--pull-secret SECRET]])" 2; }

# --- command line -------------------------------------------------------------------

prefix="" tag=$VERSION kustomize_dir="" pull_secret=""
set_option() {
    case "$1" in
        --tag) tag=$2 ;;
        --kustomize) kustomize_dir=$2 ;;
        --pull-secret) pull_secret=$2 ;;
    esac
}
while [ $# -gt 0 ]; do
    case "$1" in
        --tag | --kustomize | --pull-secret)
            [ $# -ge 2 ] && [ -n "$2" ] && [[ "$2" != -* ]] || usage_error "$1 needs a value"
            set_option "$1" "$2"
            shift 2 ;;
        --tag=* | --kustomize=* | --pull-secret=*)
            value=${1#*=}
            [ -n "$value" ] || usage_error "${1%%=*} needs a value"
            set_option "${1%%=*}" "$value"
            shift ;;
        -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        -*) usage_error "unknown option $1" ;;
        *)
            [ -z "$prefix" ] || usage_error "one registry reference only (got '$prefix' and '$1')"
            prefix=$1
            shift ;;
    esac
done
[ -n "$prefix" ] || usage_error "name the registry to publish to, e.g. registry.example.com/team"

# The grammar of docker/distribution's reference package. The first part must
# be a registry host (it has a dot or a port, or is localhost): a bare
# `team/creator` would silently mean Docker Hub.
host_part='(localhost|[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(:[0-9]+)?'
path_part='[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*'
if ! [[ "$prefix" =~ ^${host_part}(/${path_part})*$ ]]; then
    usage_error "'$prefix' is not a registry reference: expected HOST[:PORT][/NAMESPACE], lowercase, no scheme, tag or digest"
fi
registry=${prefix%%/*}
if [[ "$registry" != *.* && "$registry" != *:* && "$registry" != localhost ]]; then
    usage_error "'$prefix' does not start with a registry host (one with a dot or a port, or localhost), e.g. docker.io/$prefix"
fi
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] ||
    usage_error "'$tag' is not a valid tag: letters, digits, '_', '.' and '-', at most 128, not starting with '.' or '-'"
if [ -n "$pull_secret" ]; then
    [ -n "$kustomize_dir" ] || usage_error "--pull-secret goes into the overlay: give --kustomize DIR too"
    [[ "$pull_secret" =~ ^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$ ]] ||
        usage_error "'$pull_secret' is not a Secret name: lowercase letters, digits, '-' and '.'"
fi

for tool in docker podman skopeo; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (on Debian: apt-get install $tool)"
done

work=$(mktemp -d)
lists=() pulled=()
cleanup() {
    local item
    for item in "${lists[@]}"; do podman manifest rm "$item" >/dev/null 2>&1 || true; done
    for item in "${pulled[@]}"; do podman rmi "$item" >/dev/null 2>&1 || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# reason FILE: the last line a podman/skopeo failure printed, as the cause,
# without logrus' time and level fields and skopeo's misleading "Error parsing
# image name" prefix (it says that for every failure to read the image).
reason() {
    grep -v '^[[:space:]]*$' "$1" | tail -n 1 |
        sed -E 's/^time="[^"]*" level=[a-z]+ msg="(.*)"$/\1/; s/^Error parsing image name \\"[^"]*\\": //; s/^Error: //; s/\\"/"/g'
}

# explain ACTION FILE: one line for a failed registry operation.
explain() {
    local why
    why=$(reason "$2")
    case "$why" in
        *unauthorized* | *"authentication required"* | *denied* | *"invalid username/password"*)
            die "$1: the registry refused the login (log in first: podman login $registry): $why" ;;
        *x509:* | *certificate*)
            die "$1: TLS verification failed (a private CA goes in /etc/containers/certs.d/$registry/ca.crt): $why" ;;
        *"connection refused"* | *"no such host"* | *timeout* | *"network is unreachable"* | *"pinging container registry"* | *dial*)
            die "$1: cannot reach the registry $registry: $why" ;;
        *) die "$1: $why" ;;
    esac
}

# --- the registry, before any work ------------------------------------------------

for name in "${NAMES[@]}"; do
    ref=$prefix/$name:$tag
    if ! timeout 60 skopeo inspect --raw "docker://$ref" >/dev/null 2>"$work/err"; then
        case "$(reason "$work/err")" in
            # A tag that does not exist yet is what a first publish expects;
            # some registries (Docker Hub) deny reading a repository that does
            # not exist yet: the push itself tells whether the login may push.
            *"manifest unknown"* | *"not found"* | *denied*) ;;
            *) explain "checking $ref" "$work/err" ;;
        esac
    fi
done
log "registry $registry answers and accepts the login"

# --- build both platforms ----------------------------------------------------------

host_platform=linux/$(docker version -f '{{.Server.Arch}}')
# The host's platform last: scripts/build-images.sh leaves the plain local tags
# on the last one, and local use (compose, tests) wants this machine's images.
ordered=()
for platform in "${PLATFORMS[@]}"; do [ "$platform" = "$host_platform" ] || ordered+=("$platform"); done
for platform in "${PLATFORMS[@]}"; do [ "$platform" != "$host_platform" ] || ordered+=("$platform"); done
platform_arg=$(IFS=,; echo "${ordered[*]}")
log "building $platform_arg"
scripts/build-images.sh --platform "$platform_arg" >&2 || die "scripts/build-images.sh --platform $platform_arg failed"

# --- one manifest list per image, then push -----------------------------------------

declare -A digests
for name in "${NAMES[@]}"; do
    ref=$prefix/$name:$tag
    list=localhost/wasm-jwt-publish/$name:$tag-$$
    podman manifest rm "$list" >/dev/null 2>&1 || true
    podman manifest create "$list" >/dev/null 2>"$work/err" || explain "creating the manifest list for $name" "$work/err"
    lists+=("$list")
    for platform in "${PLATFORMS[@]}"; do
        arch=${platform#linux/}
        local_image=wasm-jwt/$name:$VERSION-$arch
        # The same image ID in both stores (the config's digest); remove it from
        # Podman's afterwards only if this copy brought it there.
        id=$(docker image inspect -f '{{.Id}}' "$local_image" 2>"$work/err") ||
            explain "finding $local_image in Docker" "$work/err"
        id=${id#sha256:}
        podman image exists "$id" || pulled+=("$id")
        podman pull -q --arch "$arch" "docker-daemon:$local_image" >/dev/null 2>"$work/err" ||
            explain "copying $local_image from Docker to Podman" "$work/err"
        podman manifest add --os linux --arch "$arch" "$list" "containers-storage:$id" >/dev/null 2>"$work/err" ||
            explain "adding $local_image to the manifest list" "$work/err"
    done
    log "pushing $ref (linux/amd64, linux/arm64)"
    podman manifest push --all --format oci --quiet --digestfile "$work/$name.digest" \
        "$list" "docker://$ref" >/dev/null 2>"$work/err" || explain "pushing $ref" "$work/err"
    digests[$name]=$(cat "$work/$name.digest")
    [[ "${digests[$name]}" =~ ^sha256:[0-9a-f]{64}$ ]] || die "pushing $ref: podman reported no digest"
done

for name in "${NAMES[@]}"; do
    printf '%s/%s:%s@%s\n' "$prefix" "$name" "$tag" "${digests[$name]}"
done

# --- optional kustomize overlay ----------------------------------------------------

if [ -n "$kustomize_dir" ]; then
    [[ "$kustomize_dir" == /* ]] || kustomize_dir=$caller_dir/$kustomize_dir
    overlay_args=("$kustomize_dir" "$prefix" --tag "$tag")
    for name in "${NAMES[@]}"; do overlay_args+=(--digest "$name=${digests[$name]}"); done
    [ -z "$pull_secret" ] || overlay_args+=(--pull-secret "$pull_secret")
    scripts/kustomize-overlay.sh "${overlay_args[@]}" || die "cannot write the overlay in $kustomize_dir"
    log "wrote $kustomize_dir/kustomization.yaml (no Secret: create signing-key before applying it)"
fi
