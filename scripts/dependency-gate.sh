#!/usr/bin/env bash
# The dependency gate: fails when a crate in Cargo.lock has a known advisory
# (RustSec), a licence we cannot ship, or a source other than crates.io.
# It runs `cargo deny check advisories licenses sources bans` with deny.toml,
# offline, against a local copy of the RustSec advisory database.
#
#   scripts/dependency-gate.sh                      the workspace, fuzz/ and the image signer
#   scripts/dependency-gate.sh --manifest-path P    another Cargo workspace
#   ADVISORY_DB=/path/to/advisory-db scripts/dependency-gate.sh
#                                                   another copy or clone of the
#                                                   database (default:
#                                                   ../shared/advisory-db)
#   scripts/dependency-gate.sh --online             fetch the current database
#                                                   from its git repository
#
# The database the tools read must be a git repository; the snapshot in
# ../shared/advisory-db is plain files, so it is copied into
# target/dependency-gate/ (DEPENDENCY_GATE_CACHE) and committed there, once per
# snapshot. Nothing of it enters this repository. docs/security.md has more.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
# The cargo-deny version the config is written for; `cargo install --locked`
# builds it once (about five minutes) into ~/.cargo/bin.
cargo_deny_version="0.20.2"
# Past this age the gate still runs but says the database is old.
stale_days=90

config="$root/deny.toml"
manifests=()
online=false
while [[ $# -gt 0 ]]; do
    case "$1" in
        --manifest-path) [[ $# -ge 2 ]] || { echo "dependency gate: --manifest-path needs a value" >&2; exit 2; }
                         manifests+=("$2"); shift 2 ;;
        --config)        [[ $# -ge 2 ]] || { echo "dependency gate: --config needs a value" >&2; exit 2; }
                         config="$2"; shift 2 ;;
        --online)        online=true; shift ;;
        -h|--help)       sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *)               echo "dependency gate: unknown argument: $1" >&2; exit 2 ;;
    esac
done
if [[ ${#manifests[@]} -eq 0 ]]; then
    # The fuzz crate is a workspace of its own; its crates are checked too
    # (they are not shipped, but a git source or a yanked crate there is a
    # supply-chain problem all the same).
    manifests=("$root/Cargo.toml" "$root/fuzz/Cargo.toml" "$root/components/signer/Cargo.toml")
fi

fail() { printf 'dependency gate: FAILED: %s\n' "$*" >&2; exit 1; }

# --- cargo-deny -------------------------------------------------------------
if ! cargo deny --version 2>/dev/null | grep -qx "cargo-deny $cargo_deny_version"; then
    echo "dependency gate: installing cargo-deny $cargo_deny_version (once; it compiles for a few minutes)"
    cargo install --locked --quiet cargo-deny --version "$cargo_deny_version" \
        || fail "could not install cargo-deny $cargo_deny_version"
fi

# --- the advisory database ---------------------------------------------------
cache="${DEPENDENCY_GATE_CACHE:-$root/target/dependency-gate}"
# cargo-deny keeps one directory per database URL under its db-path, named
# after the URL's last segment and a hash of it (cargo-deny's
# `url_to_db_path`): this is the one for deny.toml's db-urls entry.
db_dir_name="advisory-db-3157b0e258782691"
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

if $online; then
    # cargo-deny fetches (git) into a root of its own, so that the copied
    # snapshot is never overwritten by a fetch.
    export DEPENDENCY_GATE_DB_ROOT="$cache/online"
    offline_flag=()
    echo "dependency gate: advisory database: fetched now from https://github.com/rustsec/advisory-db"
else
    source_db="${ADVISORY_DB:-$root/../shared/advisory-db}"
    [[ -d "$source_db/crates" ]] \
        || fail "no advisory database at $source_db (expected its crates/ folder); set ADVISORY_DB to a copy or clone of github.com/rustsec/advisory-db, or use --online"
    source_db="$(cd "$source_db" && pwd)"
    export DEPENDENCY_GATE_DB_ROOT="$cache/offline"
    db="$DEPENDENCY_GATE_DB_ROOT/$db_dir_name"

    # What identifies the source's content: the commit of a clone, or the
    # SNAPSHOT file of a copy (and, for either, the path it came from).
    if [[ -e "$source_db/.git" ]]; then
        snapshot_id="git $(git -C "$source_db" rev-parse HEAD)"
        snapshot_date="$(git -C "$source_db" show -s --format=%cI HEAD)"
    elif [[ -f "$source_db/SNAPSHOT" ]]; then
        snapshot_id="$(grep -m1 -i 'commit' "$source_db/SNAPSHOT" || head -n 1 "$source_db/SNAPSHOT")"
        snapshot_date="$(grep -oE '[0-9]{4}-[0-9]{2}-[0-9]{2}' "$source_db/SNAPSHOT" | tail -n 1 || true)"
    else
        # A copy without either: its newest advisory file dates it.
        snapshot_id="files $(find "$source_db/crates" -type f -printf '%T@ %p\n' | sort | sha256sum | cut -c1-16)"
        snapshot_date="$(date -u -d "@$(find "$source_db/crates" -type f -printf '%T@\n' | sort -n | tail -n 1 | cut -d. -f1)" +%F)"
    fi
    stamp="$source_db $snapshot_id $(stat -c %Y "$source_db/SNAPSHOT" 2>/dev/null || true)"
    if [[ ! -d "$db/.git" || "$(cat "$DEPENDENCY_GATE_DB_ROOT/.source" 2>/dev/null)" != "$stamp" ]]; then
        echo "dependency gate: preparing the advisory database from $source_db"
        rm -rf "$DEPENDENCY_GATE_DB_ROOT"
        mkdir -p "$db"
        # Data only: a clone's own .git is not needed.
        (cd "$source_db" && tar --exclude=./.git -cf - .) | tar -xf - -C "$db"
        git -C "$db" init --quiet --initial-branch=main
        git -C "$db" add --all
        # Committed with the snapshot's date, so that the repository tells how
        # old its data is.
        commit_date="$(date -u -d "${snapshot_date:-now}" +%Y-%m-%dT%H:%M:%SZ)"
        GIT_AUTHOR_DATE="$commit_date" GIT_COMMITTER_DATE="$commit_date" \
            git -C "$db" -c user.name="dependency gate" -c user.email="dependency-gate@localhost" \
            -c commit.gpgsign=false commit --quiet -m "advisory-db: $snapshot_id"
        printf '%s' "$stamp" >"$DEPENDENCY_GATE_DB_ROOT/.source"
    fi
    echo "dependency gate: advisory database: $source_db ($snapshot_id)"
    if [[ -n "$snapshot_date" ]]; then
        age_days=$(( ($(date -u +%s) - $(date -u -d "$snapshot_date" +%s)) / 86400 ))
        echo "dependency gate: its data is from $snapshot_date, $age_days days ago"
        if (( age_days > stale_days )); then
            echo "dependency gate: WARNING: the advisory database is more than $stale_days days old;" \
                 "advisories published since are not checked (docs/security.md: refreshing it)" >&2
        fi
    fi
    offline_flag=(--offline)
fi

# --- the checks --------------------------------------------------------------
# `--allow duplicate`: two versions of one crate are a warning in deny.toml,
# left out here (thousands of lines of graphs); `cargo deny check bans` with
# DEPENDENCY_GATE_DB_ROOT set, or `cargo tree -d`, lists them.
status=0
for manifest in "${manifests[@]}"; do
    echo "dependency gate: cargo deny check advisories licenses sources bans: $manifest"
    # cargo-deny reads `cargo metadata`, which needs every crate's manifest:
    # download what Cargo.lock names (from crates.io, as any build does)
    # before cargo-deny runs offline.
    if ! $online; then
        cargo fetch --locked --quiet --manifest-path "$manifest" \
            || fail "cargo fetch failed for $manifest (is Cargo.lock up to date?)"
    fi
    if ! cargo deny "${offline_flag[@]}" --locked --manifest-path "$manifest" --workspace \
            --config "$config" check --allow duplicate advisories licenses sources bans; then
        status=1
        echo "dependency gate: FAILED for $manifest: cargo deny refused a crate above (an advisory," \
             "a licence or a source; fix it by updating or replacing the crate, or accept it with a" \
             "reason in deny.toml), or could not run (its error is above)" >&2
    fi
done
if [[ $status -ne 0 ]]; then
    exit 1
fi
echo "dependency gate: passed"
