# Shared by the scripts: checks and installs what the build needs, or says what is missing.
# shellcheck shell=bash

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
# The packages the test suite builds and runs: the runtime, the CLI, the guest tools, the
# end-to-end tests and the Rust guest SDK.
TEST_PACKAGES="-p hostel -p hostel-cli -p hostel-guest-tools -p hostel-tests -p hostel-guest"

if [ -t 2 ]; then
    say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
else
    say() { printf '==> %s\n' "$*" >&2; }
fi
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The channel rust-toolchain.toml pins.
toolchain_channel() {
    sed -n 's/^channel = "\(.*\)"/\1/p' "$ROOT/rust-toolchain.toml"
}

need_rust() {
    command -v cargo >/dev/null 2>&1 ||
        die "cargo is not installed. Install Rust with rustup (https://rustup.rs), then run this again."
    command -v rustup >/dev/null 2>&1 ||
        die "rustup is not installed: Hostel builds with the toolchain rust-toolchain.toml names. Install rustup (https://rustup.rs), then run this again."
    # The toolchain pinned in rust-toolchain.toml, with its components and the guests' target
    # (rustup reads the file; `rustup toolchain install` adds whatever of it is missing).
    if ! { rustup run "$(toolchain_channel)" rustc --version &&
        rustup run "$(toolchain_channel)" cargo clippy --version &&
        rustup run "$(toolchain_channel)" rustfmt --version &&
        rustup target list --installed --toolchain "$(toolchain_channel)" | grep -qx wasm32-wasip2
    } >/dev/null 2>&1; then
        say "installing Rust $(toolchain_channel) with clippy, rustfmt and wasm32-wasip2 (pinned in rust-toolchain.toml)"
        rustup toolchain install ||
            die "could not install Rust $(toolchain_channel): run 'rustup toolchain install' in $ROOT by hand"
    fi
}

# Builds every Rust guest in the workspace (example components and test guests) as components,
# and copies the examples to dist/components/ where the example config expects them.
build_guests() {
    say "building guest components (wasm32-wasip2, release)"
    # Every workspace member is a guest except these native ones.
    cargo build --release --target wasm32-wasip2 --workspace \
        --exclude hostel --exclude hostel-cli --exclude hostel-guest-tools --exclude hostel-tests \
        --exclude native-hello --exclude pg-reset
    mkdir -p dist/components
    local dir name
    for dir in components/*/; do
        [ -f "$dir/Cargo.toml" ] || continue
        name="$(basename "$dir")"
        cp "$TARGET_DIR/wasm32-wasip2/release/${name//-/_}.wasm" "dist/components/$name.wasm"
    done
}

# The PostgreSQL server programs (initdb, postgres): on PATH, at `pg_config --bindir`, or where
# Debian puts them (/usr/lib/postgresql/VERSION/bin). tests/support/postgres.rs looks the same way.
have_postgres_server() {
    local dir
    command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1 && return 0
    dir="$(pg_config --bindir 2>/dev/null || true)"
    [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ] && return 0
    for dir in /usr/lib/postgresql/*/bin; do
        [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ] && return 0
    done
    return 1
}

# Guest toolchains for languages other than Rust, kept out of the repository.
GUEST_TOOLS="${HOSTEL_GUEST_TOOLS:-$HOME/.cache/hostel/guest-tools}"
# `hostel build` (and the tests that run it) install into the same place.
export HOSTEL_GUEST_TOOLS="$GUEST_TOOLS"

# Builds every guest in a language other than Rust — components/LANGUAGE/NAME/ (app.py,
# app.js, app.c) and the test guests in tests/guests-LANGUAGE/NAME/ — with `hostel build`, which
# installs the language's toolchain when missing; the examples are copied to
# dist/components/LANGUAGE/. `$1` is the hostel binary to use.
build_other_guests() {
    local hostel="$1" dir name language
    for dir in components/python/*/ components/js/*/ components/c/*/ tests/guests-python/*/ tests/guests-c/*/; do
        [ -d "$dir" ] || continue
        dir="${dir%/}"
        name="$(basename "$dir")"
        "$hostel" build "$dir" >/dev/null
        case "$dir" in
            components/*)
                language="$(basename "$(dirname "$dir")")"
                mkdir -p "dist/components/$language"
                cp "$dir/build/$name.wasm" "dist/components/$language/$name.wasm"
                ;;
        esac
    done
}

# Test servers the suite starts itself (on free loopback ports, stopped afterwards): Redis,
# PostgreSQL, Prometheus, HAProxy and NATS (with JetStream). Installs the missing ones when root
# on Debian; otherwise says what to install.
need_test_servers() {
    local missing=() package
    { command -v redis-server && command -v redis-cli; } >/dev/null 2>&1 || missing+=(redis-server)
    have_postgres_server || missing+=(postgresql)
    { command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
    # Debian puts it in /usr/sbin, which is not on every PATH; tests/support/haproxy.rs looks
    # there too.
    { command -v haproxy || [ -x /usr/sbin/haproxy ]; } >/dev/null 2>&1 || missing+=(haproxy)
    # nats-server too (tests/support/nats.rs looks there).
    { command -v nats-server || [ -x /usr/sbin/nats-server ]; } >/dev/null 2>&1 || missing+=(nats-server)
    [ "${#missing[@]}" -eq 0 ] && return
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing ${missing[*]} (Debian packages) for the tests"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        # The packages start system services; the tests run their own servers.
        for package in "${missing[@]}"; do
            (service "$package" stop || systemctl stop "$package") >/dev/null 2>&1 || true
        done
    else
        die "test servers missing: ${missing[*]}. Install them (Debian/Ubuntu: sudo apt-get install ${missing[*]}); the PostgreSQL tests need the server programs initdb and postgres"
    fi
    need_recent_nats_server
}

# Clustered JetStream keeps compare-and-set writes serialisable from nats-server 2.10.19 on
# (nats-server#4320, #5794); Hostel refuses older clustered servers. Debian 12 ships 2.9.10,
# so on Debian 12 this installs Debian 13's package (a static Go binary; it needs only libc6
# >= 2.34, which Debian 12 has) — fetched with a source list of its own, leaving the system's
# sources as they are.
NATS_MIN_VERSION=2.10.19
need_recent_nats_server() {
    local binary version lists
    binary="$(command -v nats-server || echo /usr/sbin/nats-server)"
    version="$("$binary" --version 2>/dev/null | sed -n 's/^nats-server: v//p')"
    if [ -n "$version" ] && [ "$(printf '%s\n%s\n' "$NATS_MIN_VERSION" "$version" | sort -V | head -1)" = "$NATS_MIN_VERSION" ]; then
        return
    fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        die "nats-server ${version:-(none)} is older than $NATS_MIN_VERSION, which clustered JetStream needs for serialisable compare-and-set (nats-server#4320): install a newer one (Debian 13: apt-get install nats-server)"
    fi
    say "installing nats-server from Debian 13 (trixie): ${version:-none} is older than $NATS_MIN_VERSION"
    lists="$(mktemp -d)"
    mkdir -p "$lists/lists/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" >"$lists/sources.list"
    local options=(-o "Dir::Etc::SourceList=$lists/sources.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$lists/lists" -o APT::Sandbox::User=root)
    apt-get "${options[@]}" update -qq >/dev/null
    (cd "$lists" && apt-get "${options[@]}" download -qq nats-server/trixie >/dev/null)
    DEBIAN_FRONTEND=noninteractive dpkg -i "$lists"/nats-server_*.deb >/dev/null
    (service nats-server stop || systemctl stop nats-server) >/dev/null 2>&1 || true
    rm -rf "$lists"
}
