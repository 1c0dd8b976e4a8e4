# Shared by the scripts: checks and installs what the build needs, or says what is missing.
# shellcheck shell=bash

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

if [ -t 2 ]; then
    say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
else
    say() { printf '==> %s\n' "$*" >&2; }
fi
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_rust() {
    command -v cargo >/dev/null 2>&1 ||
        die "cargo is not installed. Install Rust with rustup (https://rustup.rs), then run this again."
    if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
        say "installing the wasm32-wasip2 Rust target (guests are built for it)"
        rustup target add wasm32-wasip2 ||
            die "could not add the wasm32-wasip2 target: run 'rustup target add wasm32-wasip2' by hand"
    fi
}

# Builds every Rust guest in the workspace (example components and test guests) as components,
# and copies the examples to dist/components/ where the example config expects them.
build_guests() {
    say "building guest components (wasm32-wasip2, release)"
    # Every workspace member is a guest except these native ones.
    cargo build --release --target wasm32-wasip2 --workspace \
        --exclude hostel --exclude hostel-tests --exclude native-hello
    mkdir -p dist/components
    local dir name
    for dir in components/*/; do
        name="$(basename "$dir")"
        cp "$TARGET_DIR/wasm32-wasip2/release/${name//-/_}.wasm" "dist/components/$name.wasm"
    done
}

# Test servers the suite starts itself (on free loopback ports, stopped afterwards).
need_test_servers() {
    command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && return
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing redis-server (Debian package) for the tests"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
        # The package starts a system service; the tests run their own servers.
        (service redis-server stop || systemctl stop redis-server) >/dev/null 2>&1 || true
    else
        die "redis-server is missing: install it (Debian/Ubuntu: sudo apt-get install redis-server)"
    fi
}
