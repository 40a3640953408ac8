#!/usr/bin/env bash
# Quick start, step 2: the whole test suite (what CI runs). Needs root: the tests chown files,
# set ACLs and mount a tmpfs.
source "$(dirname "$0")/common.sh"
install_packages
cd "$ROOT"
echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "==> cargo test"
# Every test binary runs even when one fails, and cargo lists each failing one at the end:
# a failing CI run shows the whole damage, not only the first.
cargo test --locked --workspace --no-fail-fast
