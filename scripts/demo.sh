#!/usr/bin/env bash
# Quick start, step 1: install what is needed, build coffer, and run its main job on a demo
# deployment of this machine: back up a demo tree (xattrs, ACLs, owners, hardlinks, a sparse
# file), wipe it, restore it in place, and validate it against the snapshot.
source "$(dirname "$0")/common.sh"
install_packages

echo "==> building coffer (release; the first build takes several minutes)"
cargo build --release --locked -p coffer
COFFER="$CARGO_TARGET_DIR/release/coffer"

DEMO=${COFFER_DEMO_DIR:-/var/tmp/coffer-demo}
rm -rf "$DEMO"
mkdir -p "$DEMO/etc/swift" "$DEMO/srv/node/d1" "$DEMO/home/stack/empty"
echo "[swift-hash]" > "$DEMO/etc/swift/swift.conf"
setfacl -m u:65534:r "$DEMO/etc/swift/swift.conf"
echo "object" > "$DEMO/srv/node/d1/object.data"
setfattr -n user.swift.metadata -v "0sgAN9cQAoWA==" "$DEMO/srv/node/d1/object.data"
head -c 4M /dev/urandom > "$DEMO/home/stack/overcloudrc.bin"
ln "$DEMO/home/stack/overcloudrc.bin" "$DEMO/home/stack/hardlink"
ln -s ../etc/swift/swift.conf "$DEMO/home/stack/swift.conf"
truncate -s 1G "$DEMO/srv/sparse.img"
chown 160:160 "$DEMO/srv/node/d1/object.data"
(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DEMO/password")
cat > "$DEMO/deployment.toml" <<TOML
# A demo deployment: this machine as an undercloud, backing up the demo tree.
name = "demo"

[repository]
path = "$DEMO/repo"
password-file = "$DEMO/password"

[[node]]
name = "undercloud"
address = "local"
roles = ["undercloud"]

[plugin.filesystem.settings]
paths = ["$DEMO/etc", "$DEMO/srv", "$DEMO/home"]
TOML
export COFFER_CONFIG="$DEMO/deployment.toml"
snapshot_listing() { (cd "$DEMO" && find etc srv home -printf '%p %m %U:%G %s %T@ %l\n' | sort; getfattr -R -d -m - etc srv home 2>/dev/null | sort; getfacl -R etc 2>/dev/null | sort); }
before=$(snapshot_listing)

echo "==> coffer init";     "$COFFER" init
echo "==> coffer backup";   "$COFFER" backup
echo "==> wiping the demo tree"
rm -rf "$DEMO/etc" "$DEMO/srv" "$DEMO/home"
echo "==> coffer restore latest (in place, then validate)"; "$COFFER" restore latest
echo "==> coffer validate"; "$COFFER" validate
echo "==> coffer check --read-data"; "$COFFER" check --read-data
echo "==> coffer snapshots"; "$COFFER" snapshots
after=$(snapshot_listing)
if [ "$before" != "$after" ]; then
    diff <(echo "$before") <(echo "$after") || true
    echo "DEMO FAILED: the restored tree differs" >&2
    exit 1
fi
echo "==> demo done: every file, owner, mode, time, xattr and ACL came back ($DEMO)"
