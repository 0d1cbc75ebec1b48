#!/usr/bin/env bash
# Publish the three images to a registry: each tag is one OCI image index
# whose entries are a linux/amd64 and a linux/arm64 image, so one reference
# works on every node of a mixed-architecture cluster.
#
#   scripts/publish.sh REGISTRY[/NAMESPACE] [--tag TAG] [--kustomize DIR [--pull-secret SECRET]]
#                      [--sign-key cosign.key [--sign-password-file FILE]]
#   scripts/publish.sh --verify cosign.pub REF...
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
# --sign-key KEY signs what was pushed with a cosign key pair (`cosign
# generate-key-pair`, or `image-signer generate-key-pair`): each index and
# each platform manifest gets a cosign signature, REPO:sha256-<digest>.sig
# next to the image, which `cosign verify --key cosign.pub` and admission
# controllers check. The key's passphrase comes from COSIGN_PASSWORD or the
# first line of --sign-password-file FILE, never from an argument; a wrong
# one fails before anything is built. With --sign-key, each image also gets
# a signed provenance statement (in-toto, SLSA provenance v1: the commit,
# the build command, the digests of Cargo.lock, docker/Dockerfile and the
# builder image), as a cosign attestation at REPO:sha256-<digest>.att
# (`image-signer verify-attestation`, `cosign verify-attestation --type
# slsaprovenance1`). --verify cosign.pub REF... checks
# published images instead (an index and every platform manifest it lists);
# neither needs cosign: both use components/signer (built with cargo on
# first use, or IMAGE_SIGNER=/path/to/image-signer).
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
command_line=("$0" "$@") # for the provenance; never holds a secret (none is an argument)
started_on=$(date -u +%Y-%m-%dT%H:%M:%SZ)
cd "$(dirname "$0")/.."

VERSION=0.1.0 # the local tags scripts/build-images.sh writes
NAMES=(keycreator creator verifier)
PLATFORMS=(linux/amd64 linux/arm64)

log() { printf '[publish] %s\n' "$*" >&2; }
# Every failure is one line on stderr and a non-zero exit: 2 for a bad
# command line, 1 for everything else.
die() { printf 'publish.sh: error: %s\n' "$1" >&2; exit "${2:-1}"; }
usage_error() { die "$1 (usage: scripts/publish.sh REGISTRY[/NAMESPACE] [--tag TAG] [--kustomize DIR [--pull-secret SECRET]] [--sign-key KEY [--sign-password-file FILE]], or --verify KEY.pub REF...)" 2; }

# --- command line -------------------------------------------------------------------

prefix="" tag=$VERSION kustomize_dir="" pull_secret="" sign_key="" sign_password_file="" verify_key=""
verify_refs=()
set_option() {
    case "$1" in
        --tag) tag=$2 ;;
        --kustomize) kustomize_dir=$2 ;;
        --pull-secret) pull_secret=$2 ;;
        --sign-key) sign_key=$2 ;;
        --sign-password-file) sign_password_file=$2 ;;
        --verify) verify_key=$2 ;;
    esac
}
while [ $# -gt 0 ]; do
    case "$1" in
        --tag | --kustomize | --pull-secret | --sign-key | --sign-password-file | --verify)
            [ $# -ge 2 ] && [ -n "$2" ] && [[ "$2" != -* ]] || usage_error "$1 needs a value"
            set_option "$1" "$2"
            shift 2 ;;
        --tag=* | --kustomize=* | --pull-secret=* | --sign-key=* | --sign-password-file=* | --verify=*)
            value=${1#*=}
            [ -n "$value" ] || usage_error "${1%%=*} needs a value"
            set_option "${1%%=*}" "$value"
            shift ;;
        -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        -*) usage_error "unknown option $1" ;;
        *)
            if [ -n "$verify_key" ]; then
                verify_refs+=("$1")
            else
                [ -z "$prefix" ] || usage_error "one registry reference only (got '$prefix' and '$1')"
                prefix=$1
            fi
            shift ;;
    esac
done

# Paths the user gave are relative to where the user is.
absolute() { if [[ "$1" == /* ]]; then printf '%s' "$1"; else printf '%s/%s' "$caller_dir" "$1"; fi; }

# The signer (components/signer, its own cargo workspace): IMAGE_SIGNER, or
# built here (a no-op when it is up to date).
signer=""
find_signer() {
    if [ -n "${IMAGE_SIGNER:-}" ]; then
        [ -x "$IMAGE_SIGNER" ] || die "IMAGE_SIGNER=$IMAGE_SIGNER is not an executable"
        signer=$IMAGE_SIGNER
        return
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo is needed to build the signer (components/signer), or set IMAGE_SIGNER"
    [ "${1:-}" = quiet ] || log "building the signer (components/signer)"
    cargo build --quiet --locked --release --manifest-path components/signer/Cargo.toml >&2 ||
        die "cannot build the signer: cargo build --release --manifest-path components/signer/Cargo.toml failed"
    local target=${CARGO_TARGET_DIR:-components/signer/target}
    signer=$(absolute_from_root "$target")/release/image-signer
    [ -x "$signer" ] || die "the signer was built but $signer is missing"
}
absolute_from_root() { if [[ "$1" == /* ]]; then printf '%s' "$1"; else printf '%s/%s' "$PWD" "$1"; fi; }

# run_signer WHAT ARGS...: the signer's progress lines go to stderr; a
# failure is its one line, as publish.sh's.
run_signer() {
    local what=$1 err
    shift
    err=$(mktemp)
    if ! "$signer" "$@" 2>"$err"; then
        local why
        why=$(grep -v '^[[:space:]]*$' "$err" | tail -n 1 | sed -E 's/^image-signer: error: //')
        rm -f "$err"
        die "$what: ${why:-the signer failed}"
    fi
    cat "$err" >&2
    rm -f "$err"
}

if [ -n "$verify_key" ]; then
    # `publish.sh REF --verify KEY.pub`: REF was read before --verify.
    [ -z "$prefix" ] || { verify_refs=("$prefix" "${verify_refs[@]}"); prefix=""; }
    [ -z "$prefix$sign_key$sign_password_file$kustomize_dir$pull_secret" ] && [ "$tag" = "$VERSION" ] ||
        usage_error "--verify KEY.pub REF... takes image references only, no other option"
    [ ${#verify_refs[@]} -gt 0 ] || usage_error "--verify needs the public key and at least one image reference"
    [ -r "$(absolute "$verify_key")" ] || die "cannot read the public key $verify_key"
    find_signer quiet
    run_signer "verifying" verify --key "$(absolute "$verify_key")" "${verify_refs[@]}"
    exit 0
fi

[ -n "$prefix" ] || usage_error "name the registry to publish to, e.g. registry.example.com/team"
if [ -n "$sign_password_file" ] && [ -z "$sign_key" ]; then
    usage_error "--sign-password-file is the passphrase of --sign-key: give --sign-key KEY too"
fi

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

# The key and its passphrase, before anything is built: decrypting it
# (`image-signer public-key`) fails at once on a wrong passphrase.
sign_args=()
if [ -n "$sign_key" ]; then
    sign_key=$(absolute "$sign_key")
    [ -r "$sign_key" ] || die "cannot read the signing key $sign_key"
    sign_args=(--key "$sign_key")
    if [ -n "$sign_password_file" ]; then
        sign_password_file=$(absolute "$sign_password_file")
        [ -r "$sign_password_file" ] || die "cannot read the password file $sign_password_file"
        sign_args+=(--password-file "$sign_password_file")
    elif [ -z "${COSIGN_PASSWORD+set}" ]; then
        die "--sign-key needs the key's passphrase: set COSIGN_PASSWORD or give --sign-password-file FILE"
    fi
    find_signer
    run_signer "the signing key" public-key "${sign_args[@]}" >/dev/null
    log "signing key $sign_key opens"
fi

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

# --- signatures ------------------------------------------------------------------

# Each index and the platform manifests it lists, by digest: what was pushed,
# not whatever the tag names by now.
if [ -n "$sign_key" ]; then
    for name in "${NAMES[@]}"; do
        pinned=$prefix/$name@${digests[$name]}
        log "signing $pinned and its platform manifests"
        run_signer "signing $pinned" sign "${sign_args[@]}" --recursive "$pinned"
    done
fi

# --- provenance ------------------------------------------------------------------

# What went into the build, as an SLSA provenance v1 predicate; the signer
# wraps it in an in-toto statement naming the index and its platform
# manifests, signs it with the same key and attaches it to each of them.
write_provenance() {
    local out=$1 image=$2 commit dirty builder_image builder_id builder_repo_digests
    commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
    if [ "$commit" = unknown ]; then dirty=unknown
    elif [ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then dirty=false
    else dirty=true; fi
    builder_image=$(sed -nE 's/^FROM (--platform=[^ ]+ )?([^ ]+) AS base$/\2/p' docker/Dockerfile)
    builder_id=$(docker image inspect -f '{{.Id}}' "$builder_image" 2>/dev/null || echo unknown)
    builder_repo_digests=$(docker image inspect -f '{{json .RepoDigests}}' "$builder_image" 2>/dev/null || echo '[]')
    python3 - "$out" "$image" "$commit" "$dirty" "$(sha256sum Cargo.lock | cut -d' ' -f1)" \
        "$(sha256sum docker/Dockerfile | cut -d' ' -f1)" "$builder_image" "$builder_id" "$builder_repo_digests" \
        "$started_on" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$platform_arg" "${command_line[@]}" <<'PY'
import json, sys
(out, image, commit, dirty, lock, dockerfile, builder_image, builder_id, repo_digests,
 started, finished, platforms), command = sys.argv[1:13], sys.argv[13:]
source = "git+https://example.invalid/wasm-jwt"  # [workspace.package] repository
predicate = {
    "buildDefinition": {
        "buildType": "https://example.invalid/wasm-jwt/docs/publish.md#provenance",
        "externalParameters": {
            "image": image,
            "command": command,
            "build": f"scripts/build-images.sh --platform {platforms}",
            "source": {"uri": source, "digest": {"gitCommit": commit}},
        },
        "internalParameters": {"workingTreeHadChanges": {"true": True, "false": False}.get(dirty, dirty)},
        "resolvedDependencies": [
            {"uri": f"{source}@{commit}", "digest": {"gitCommit": commit}},
            {"name": "Cargo.lock", "digest": {"sha256": lock}},
            {"name": "docker/Dockerfile", "digest": {"sha256": dockerfile}},
            {"uri": f"docker-image://{builder_image}",
             "digest": {"sha256": builder_id.removeprefix("sha256:")},
             "annotations": {"digestOf": "the image's config (docker image ID)",
                             "repoDigests": json.loads(repo_digests or "[]") or []}},
        ],
    },
    "runDetails": {
        "builder": {"id": "https://example.invalid/wasm-jwt/scripts/publish.sh"},
        "metadata": {"startedOn": started, "finishedOn": finished},
    },
}
with open(out, "w") as f:
    json.dump(predicate, f, indent=2)
PY
}

if [ -n "$sign_key" ]; then
    for name in "${NAMES[@]}"; do
        pinned=$prefix/$name@${digests[$name]}
        write_provenance "$work/$name.provenance.json" "$prefix/$name:$tag" ||
            die "cannot write the provenance of $pinned"
        run_signer "attesting the provenance of $pinned" attest "${sign_args[@]}" --recursive \
            --predicate "$work/$name.provenance.json" "$pinned"
    done
fi

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
