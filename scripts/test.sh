#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: it installs what the
# tests need first (Rust targets, Python test packages; Docker and Podman are
# installed by the end-to-end tests themselves when missing and run as root).
#
#   scripts/test.sh            everything
#   scripts/test.sh --rust     format, lint and Rust tests only (no containers)
set -euo pipefail
cd "$(dirname "$0")/.."

only_rust=false
[[ "${1:-}" == "--rust" ]] && only_rust=true

step() { printf '\n==> %s\n' "$*"; }

step "toolchain: wasm32-wasip2 and musl targets, rustfmt, clippy"
rustup target add wasm32-wasip2 x86_64-unknown-linux-musl
rustup component add rustfmt clippy

# Before anything is built: no crate with a known advisory, a licence we
# cannot ship or a source other than crates.io (deny.toml, docs/security.md).
# Offline, against ../shared/advisory-db; seconds once cargo-deny is installed.
step "dependency gate: advisories, licences, sources (scripts/dependency-gate.sh)"
scripts/dependency-gate.sh

step "format"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo fmt --manifest-path components/signer/Cargo.toml -- --check

step "lint (host, wasm32-wasip2, and the compiler-less runner the images ship)"
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo clippy --locked --target wasm32-wasip2 -p creator -p verifier -p misbehaving-guest -- -D warnings
cargo clippy --locked --target wasm32-wasip2 -p creator -p verifier \
    --features creator/spin-variables,verifier/spin-variables -- -D warnings
cargo clippy --locked -p runner --no-default-features -- -D warnings
# The fuzz crate is a workspace of its own (cargo fuzz builds it with
# coverage flags); checked in the main target directory, whose dependencies
# it shares.
CARGO_TARGET_DIR=target cargo clippy --locked --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings
# The image signer is a workspace of its own too (the sigstore crate's ~350
# crates stay out of the services' Cargo.lock); the release profile, which
# its tests and publish.sh build with.
cargo clippy --locked --release --manifest-path components/signer/Cargo.toml --all-targets -- -D warnings

step "build the components the tests serve"
cargo build --locked --release --target wasm32-wasip2 -p creator -p verifier -p misbehaving-guest
# What `spin build` makes (spin.toml): settings from Spin variables.
cargo build --locked --profile spin --target wasm32-wasip2 -p creator -p verifier \
    --features creator/spin-variables,verifier/spin-variables

step "Python test dependencies (PyJWT, jwcrypto and joserfc for interop, pytest and friends for e2e, OpenAPI checks, bcrypt for the test registry's htpasswd, requests and cryptography to read and check image signatures, the official OTLP protobuf definitions for the trace receiver)"
python3 -m pip install --quiet --disable-pip-version-check \
    "pyjwt[crypto]>=2.8,<3" "jwcrypto>=1.5,<2" "joserfc>=1.1,<2" pytest pyyaml kubernetes-validate prometheus-client bcrypt \
    "openapi-spec-validator>=0.7,<1" "schemathesis>=4.32,<5" "opentelemetry-proto>=1.30,<2" \
    requests cryptography

step "Rust unit and integration tests"
cargo test --locked --workspace
# Release: the same dependency builds as publish.sh's and tests/registry's.
cargo test --locked --release --manifest-path components/signer/Cargo.toml

step "fuzzing: every target for a bounded time, failing on any finding (scripts/fuzz.sh)"
scripts/fuzz.sh --seconds "${FUZZ_SECONDS:-45}"

if ! $only_rust; then
    step "API description against the live services; containers: images, docker compose, Kubernetes manifests and pods"
    python3 -m pytest -ra tests/
fi
