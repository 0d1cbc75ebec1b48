#!/usr/bin/env bash
# Write a kustomize overlay of k8s/ for images in a registry:
#
#   scripts/kustomize-overlay.sh DIR REGISTRY[/NAMESPACE] [--tag TAG]
#       [--digest NAME=sha256:...]... [--pull-secret SECRET]
#
#   scripts/kustomize-overlay.sh deploy/prod registry.example.com/team --tag 0.1.0 --pull-secret regcred
#   kubectl apply -k deploy/prod
#
# DIR/kustomization.yaml points the three images (keycreator, creator,
# verifier) at REGISTRY/NAMESPACE/NAME, by tag, or by digest for each NAME
# given with --digest (scripts/publish.sh --kustomize pins all three).
#
# The overlay never deploys the Secret: k8s/10-secret.yaml holds a placeholder
# KEY printed in this repository, which would sign tokens anyone can forge, and
# re-applying it would reset a real key. Create the Secret yourself first
# (README, "Deploying from a registry"). --pull-secret names an image pull
# secret (`kubectl create secret docker-registry SECRET -n wasm-jwt ...`) that
# every pod gets as imagePullSecrets, so pods pull from a private registry
# from their first start.
#
# Bad arguments: one line on stderr, exit 2.
set -euo pipefail

usage="usage: scripts/kustomize-overlay.sh DIR REGISTRY[/NAMESPACE] [--tag TAG] [--digest NAME=sha256:...]... [--pull-secret SECRET]"
die() { printf 'kustomize-overlay.sh: error: %s (%s)\n' "$1" "$usage" >&2; exit 2; }

NAMES=(keycreator creator verifier)
dir="" prefix="" tag=0.1.0 pull_secret=""
declare -A digests=()
while [ $# -gt 0 ]; do
    case "$1" in
        --tag | --digest | --pull-secret)
            [ $# -ge 2 ] && [ -n "$2" ] && [[ "$2" != -* ]] || die "$1 needs a value"
            option=$1 value=$2
            shift 2 ;;
        --tag=* | --digest=* | --pull-secret=*)
            option=${1%%=*} value=${1#*=}
            [ -n "$value" ] || die "$option needs a value"
            shift ;;
        -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        -*) die "unknown option $1" ;;
        *)
            if [ -z "$dir" ]; then dir=$1
            elif [ -z "$prefix" ]; then prefix=$1
            else die "unexpected argument '$1'"
            fi
            shift; continue ;;
    esac
    case "$option" in
        --tag)
            [[ "$value" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "'$value' is not a valid tag"
            tag=$value ;;
        --digest)
            name=${value%%=*} digest=${value#*=}
            [[ " ${NAMES[*]} " == *" $name "* ]] || die "--digest $value: NAME must be one of ${NAMES[*]}"
            [[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || die "--digest $value: expected sha256: and 64 lowercase hex digits"
            digests[$name]=$digest ;;
        --pull-secret)
            # A Kubernetes object name (RFC 1123 subdomain).
            [[ "$value" =~ ^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$ ]] ||
                die "'$value' is not a Secret name: lowercase letters, digits, '-' and '.'"
            pull_secret=$value ;;
    esac
done
[ -n "$dir" ] && [ -n "$prefix" ] || die "name the overlay's directory and the registry"
[[ "$prefix" =~ ^[a-zA-Z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*$ ]] ||
    die "'$prefix' is not a registry reference: expected HOST[:PORT][/NAMESPACE]"

root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$dir" || die "cannot create $dir"
base=$(realpath --relative-to="$dir" "$root/k8s")
{
    printf '# Written by scripts/kustomize-overlay.sh: k8s/ with the images of %s,\n' "$prefix"
    printf '# without the placeholder Secret. Create namespace and Secret first, then:\n'
    printf '#   kubectl apply -k %s\n' "$dir"
    printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n'
    printf 'resources:\n  - %s\n' "$base"
    printf 'images:\n'
    for name in "${NAMES[@]}"; do
        if [ -n "${digests[$name]:-}" ]; then
            # The digest alone: some runtimes refuse a reference with both.
            printf '  - name: wasm-jwt/%s # %s/%s:%s\n    newName: %s/%s\n    digest: %s\n' \
                "$name" "$prefix" "$name" "$tag" "$prefix" "$name" "${digests[$name]}"
        else
            printf '  - name: wasm-jwt/%s\n    newName: %s/%s\n    newTag: "%s"\n' \
                "$name" "$prefix" "$name" "$tag"
        fi
    done
    printf 'patches:\n'
    printf '  # The placeholder key must never reach a real cluster: the operator\n'
    printf '  # creates the Secret signing-key before applying this overlay.\n'
    printf '  - patch: |-\n'
    printf '      $patch: delete\n      apiVersion: v1\n      kind: Secret\n'
    printf '      metadata:\n        name: signing-key\n        namespace: wasm-jwt\n'
    if [ -n "$pull_secret" ]; then
        printf '  # Pull from the private registry from the first start.\n'
        printf '  - target:\n      kind: Deployment\n    patch: |-\n'
        printf '      - op: add\n        path: /spec/template/spec/imagePullSecrets\n'
        printf '        value:\n          - name: %s\n' "$pull_secret"
    fi
} >"$dir/kustomization.yaml"
