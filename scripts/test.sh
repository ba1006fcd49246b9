#!/usr/bin/env bash
# Runs pgsplit's tests, unit and integration, against a local primary and streaming replica.
#
#   scripts/test.sh [cargo test arguments...]     e.g. scripts/test.sh --test routing -- --nocapture
#
# Installs the Debian packages the build and the tests need (only those missing; needs root),
# starts the cluster with scripts/cluster.sh (left running afterwards), exports its variables
# (see `scripts/cluster.sh env`) and runs `cargo test`. The exit code is cargo's.
#
# Sourcing this file (as .ci/run does) only defines ensure_packages, ensure_drivers and ensure_cargo.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# libclang-dev: bindgen in the pg_query crate. pgbouncer: benchmarks compare against it.
# postgresql-15-postgis-3: the postgis extension in database app. prometheus: for promtool.
# chromium: tests/dashboard.rs renders the web dashboard headless.
# libpostgresql-jdbc-java: pgjdbc for tests/drivers.rs (Python and node drivers: ensure_drivers).
TEST_PACKAGES=(
    chromium
    libclang-dev
    libpostgresql-jdbc-java
    pgbouncer
    postgresql-15
    postgresql-contrib
    postgresql-15-postgis-3
    prometheus
)

is_installed() {
    # Captured first: `dpkg -s | grep -q` fails under pipefail when grep closes the pipe early.
    local status
    status=$(dpkg -s "$1" 2>/dev/null) || return 1
    grep -qx 'Status: install ok installed' <<<"$status"
}

# Installs whichever of TEST_PACKAGES (and a C compiler, for pg_query) is missing.
ensure_packages() {
    local missing=() pkg
    for pkg in "${TEST_PACKAGES[@]}"; do
        is_installed "$pkg" || missing+=("$pkg")
    done
    command -v cc >/dev/null 2>&1 || missing+=(build-essential)
    # The driver suite's interpreters, from Debian unless the machine already has them.
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    command -v javac >/dev/null 2>&1 || missing+=(default-jdk-headless)
    if ((${#missing[@]} == 0)); then
        echo "[test] packages present: ${TEST_PACKAGES[*]}"
        return 0
    fi
    echo "[test] installing: ${missing[*]}"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || {
            echo "[test] error: missing packages (${missing[*]}) and not root" >&2
            return 1
        }
        sudo=(sudo)
    fi
    (
        # Package scripts would start Debian's own PostgreSQL (5432), pgbouncer (6432) and
        # Prometheus (9090); a policy-rc.d answering 101 keeps them from starting services while
        # we install (one already there is kept).
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            trap '"${sudo[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
            printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
            "${sudo[@]}" chmod 0755 /usr/sbin/policy-rc.d
        fi
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get -o DPkg::Lock::Timeout=600 update -qq
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
            "${missing[@]}" </dev/null
    )
    for pkg in "${missing[@]}"; do
        [[ $pkg == build-essential ]] || is_installed "$pkg" || {
            echo "[test] error: $pkg did not install" >&2
            return 1
        }
    done
}

# The client drivers tests/drivers.rs runs, at the versions pinned in tests/drivers/: a venv
# (asyncpg, psycopg, psycopg2, SQLAlchemy) and node_modules (pg, pg-cursor, pg-copy-streams)
# under PGSPLIT_DRIVERS_DIR. Reinstalled only when the pins change.
DRIVERS_DIR=${PGSPLIT_DRIVERS_DIR:-/opt/pgsplit-drivers}
ensure_drivers() {
    local src=$REPO_ROOT/tests/drivers want have
    want=$({ cat "$src/requirements.txt" "$src/node/package-lock.json"; python3 --version; } | sha256sum | cut -d' ' -f1)
    have=$(cat "$DRIVERS_DIR/.installed" 2>/dev/null || true)
    if [[ $want == "$have" && -x $DRIVERS_DIR/venv/bin/python && -d $DRIVERS_DIR/node/node_modules/pg ]]; then
        echo "[test] drivers present in $DRIVERS_DIR"
        return 0
    fi
    echo "[test] installing drivers into $DRIVERS_DIR"
    mkdir -p "$DRIVERS_DIR"
    rm -rf -- "$DRIVERS_DIR/venv" "$DRIVERS_DIR/node" "$DRIVERS_DIR/.installed"
    python3 -m venv "$DRIVERS_DIR/venv"
    "$DRIVERS_DIR/venv/bin/pip" install -q --disable-pip-version-check --no-input \
        -r "$src/requirements.txt"
    mkdir -p "$DRIVERS_DIR/node"
    cp "$src/node/package.json" "$src/node/package-lock.json" "$DRIVERS_DIR/node/"
    (cd "$DRIVERS_DIR/node" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$DRIVERS_DIR/.installed"
}

# Makes sure cargo is on PATH (rustup's default place if the caller's PATH lacks it).
ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
        export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 || {
        echo "[test] error: cargo not found (install the Rust toolchain with rustup)" >&2
        return 1
    }
}

main() {
    cd "$REPO_ROOT"
    ensure_packages
    ensure_drivers
    ensure_cargo
    scripts/cluster.sh start
    local env_lines
    env_lines=$(scripts/cluster.sh env)
    eval "$env_lines"
    # PostgreSQL 15's psql and pgbench first; pgbouncer lives in /usr/sbin.
    export PATH="$PGSPLIT_PG_BINDIR:$PATH"
    [[ :$PATH: == *:/usr/sbin:* ]] || export PATH="$PATH:/usr/sbin"
    echo "[test] cargo test $*"
    cargo test "$@"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
