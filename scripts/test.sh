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
cargo test --locked --workspace
