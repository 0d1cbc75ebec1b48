#!/usr/bin/env bash
# Provide the Rust builder image `rust:1.95.0-slim-bookworm` used by docker/Dockerfile.
#
#   1. already present locally      -> done (unless it is an outdated stand-in
#                                       made by an earlier version of this script)
#   2. `docker pull` (short timeout) -> done
#   3. air-gapped fallback: build an equivalent image from
#        - a `debootstrap --variant=minbase bookworm` rootfs with the packages the
#          official slim image installs that our build needs (gcc, libc6-dev,
#          ca-certificates) plus musl-tools (wasmtime's build script compiles a
#          C file for the musl target),
#        - the host's rustup toolchain for rustc $RUST_VERSION (with the
#          wasm32-wasip2, x86_64- and aarch64-unknown-linux-musl targets, without
#          docs),
#          laid out like the official image (RUSTUP_HOME=/usr/local/rustup,
#          CARGO_HOME=/usr/local/cargo, proxies in /usr/local/cargo/bin),
#        - the host CA bundle (it may hold a re-signing CA needed for crates.io),
#      and `docker import` it under the same tag, labelled with $STANDIN_LABEL.
#
# The label's value says what the stand-in contains; bump STANDIN_VERSION when
# that changes, so machines that kept an older stand-in (CI caches) rebuild it.
# An image without the label that is not a stand-in (the official one) is kept:
# the Dockerfile adds what it lacks.
#
# Idempotent. Needs root (debootstrap) only for step 3.
set -euo pipefail

RUST_VERSION=${RUST_VERSION:-1.95.0}
IMAGE=${BUILDER_IMAGE:-rust:${RUST_VERSION}-slim-bookworm}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PULL_TIMEOUT=${PULL_TIMEOUT:-30}
# aarch64 musl: the arm64 images are cross-compiled (docker/Dockerfile).
TARGETS=(wasm32-wasip2 x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
STANDIN_LABEL=org.wasm-jwt.builder-image
# 1: wasm32-wasip2 + x86_64 musl. 2: + aarch64 musl.
STANDIN_VERSION=2
HOST_TRIPLE=x86_64-unknown-linux-gnu
TOOLCHAIN_NAME=${RUST_VERSION}-${HOST_TRIPLE}
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

log() { printf '[builder-image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    labels=$(docker image inspect -f '{{json .Config.Labels}}' "$IMAGE")
    version=$(printf '%s' "$labels" | grep -o "\"$STANDIN_LABEL\":\"[^\"]*\"" | cut -d'"' -f4 || true)
    comment=$(docker image inspect -f '{{.Comment}}' "$IMAGE")
    if [ "$version" = "$STANDIN_VERSION" ] || { [ -z "$version" ] && [[ "$comment" != "local stand-in for "* ]]; }; then
        log "$IMAGE is present locally"
        exit 0
    fi
    log "$IMAGE is an outdated local stand-in (version ${version:-1}, want $STANDIN_VERSION): rebuilding it"
else
    log "trying: docker pull $IMAGE (timeout ${PULL_TIMEOUT}s)"
    if timeout "$PULL_TIMEOUT" docker pull -q "$IMAGE" >/dev/null 2>&1; then
        log "pulled $IMAGE"
        exit 0
    fi
    log "pull failed"
fi
log "building $IMAGE locally from debootstrap + the host toolchain"

[ "$(id -u)" -eq 0 ] || die "building the image needs root (debootstrap)"

# --- host toolchain ---------------------------------------------------------
command -v rustup >/dev/null 2>&1 || die "rustup not found on the host"
toolchain=""
for tc in "$RUST_VERSION" "$(rustup default 2>/dev/null | cut -d' ' -f1)"; do
    [ -n "$tc" ] || continue
    if rustc "+$tc" --version 2>/dev/null | grep -q "^rustc $RUST_VERSION "; then
        toolchain=$tc
        break
    fi
done
[ -n "$toolchain" ] || die "no host rustup toolchain with rustc $RUST_VERSION (see: rustup toolchain list)"
log "host toolchain: $toolchain ($(rustc "+$toolchain" --version))"
rustup target add --toolchain "$toolchain" "${TARGETS[@]}"
sysroot=$(readlink -f "$(rustc "+$toolchain" --print sysroot)")
rustup_bin=$(readlink -f "$(command -v rustup)")

# --- debootstrap -------------------------------------------------------------
if ! command -v debootstrap >/dev/null 2>&1 || [ ! -e /usr/share/keyrings/debian-archive-keyring.gpg ]; then
    log "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends debootstrap debian-archive-keyring >/dev/null
fi

workdir=$(mktemp -d /var/tmp/builder-image.XXXXXX)
rootfs=$workdir/rootfs
cleanup() {
    # debootstrap mounts /proc etc. inside the rootfs; never rm -rf through a mount.
    findmnt -rn -o TARGET | grep -F "$workdir/" | sort -r | xargs -r umount -l || true
    rm -rf --one-file-system "$workdir"
}
trap cleanup EXIT

log "debootstrap $SUITE from $MIRROR (takes a few minutes)"
debootstrap --variant=minbase --include=ca-certificates,gcc,libc6-dev,musl-tools \
    "$SUITE" "$rootfs" "$MIRROR" >"$workdir/debootstrap.log" 2>&1 ||
    { tail -n 30 "$workdir/debootstrap.log" >&2; die "debootstrap failed"; }

# Slim it down like debian:*-slim: no docs/man/locales now or on later installs.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$rootfs"/usr/share/{man,info}/* "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/var/log/* "$rootfs"/tmp/*
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
# debootstrap leaves the host's name resolution config behind; docker manages these.
: >"$rootfs/etc/resolv.conf"
: >"$rootfs/etc/hostname"
printf 'deb %s %s main\ndeb %s %s-updates main\n' "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" \
    >"$rootfs/etc/apt/sources.list"

# Host CA bundle (includes any re-signing proxy CA).
cp "$HOST_CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"

# --- Rust, laid out like the official image -----------------------------------
log "copying toolchain from $sysroot (without docs)"
rustup_home=$rootfs/usr/local/rustup
cargo_home=$rootfs/usr/local/cargo
tc_dir=$rustup_home/toolchains/$TOOLCHAIN_NAME
mkdir -p "$tc_dir" "$cargo_home/bin"
tar -C "$sysroot" --exclude=./share/doc/rust/html -cf - . | tar -C "$tc_dir" -xf -
# Unregister rust-docs so rustup's bookkeeping matches the files we copied.
rustlib=$tc_dir/lib/rustlib
rm -f "$rustlib"/manifest-rust-docs-*
sed -i '/^rust-docs-/d' "$rustlib/components"
awk 'BEGIN { RS = ""; ORS = "\n\n" } !/pkg = "rust-docs"/' "$rustlib/multirust-config.toml" \
    >"$workdir/multirust-config.toml"
mv "$workdir/multirust-config.toml" "$rustlib/multirust-config.toml"

cat >"$rustup_home/settings.toml" <<EOF
version = "12"
default_toolchain = "$TOOLCHAIN_NAME"
profile = "minimal"

[overrides]
EOF
install -m 0755 "$rustup_bin" "$cargo_home/bin/rustup"
for proxy in cargo cargo-clippy cargo-fmt cargo-miri clippy-driver rls rust-analyzer \
    rust-gdb rust-gdbgui rust-lldb rustc rustdoc rustfmt; do
    ln "$cargo_home/bin/rustup" "$cargo_home/bin/$proxy"
done
chmod -R a+w "$rustup_home" "$cargo_home"

# --- import ------------------------------------------------------------------
log "importing as $IMAGE"
tar --numeric-owner -C "$rootfs" -cf - . | docker import \
    --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV RUST_VERSION=$RUST_VERSION" \
    --change 'CMD ["bash"]' \
    --change "LABEL $STANDIN_LABEL=$STANDIN_VERSION" \
    --message "local stand-in for $IMAGE (debootstrap $SUITE + host rustup toolchain)" \
    - "$IMAGE" >/dev/null

log "checking the image offline"
docker run --rm --network none "$IMAGE" sh -ec \
    "rustup target add ${TARGETS[*]} && rustc --version && cargo --version && musl-gcc --version | head -n1" >&2
log "done: $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
