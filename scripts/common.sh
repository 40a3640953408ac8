# Shared by the setup, test and bench scripts: install what Coffer needs on Debian 12.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# A fixed target directory outside the checkout, so CI and repeated runs reuse the build.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/coffer-target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Install the Debian packages named that are not installed yet.
install_debs() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "==> installing Debian packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

install_packages() {
    local wanted=(tar acl attr python3 restic gcc openssh-client openssh-server util-linux podman runc busybox-static mariadb-server mariadb-client mariadb-backup galera-4 rsync iptables redis-server redis-tools pacemaker corosync pcs swift swift-proxy swift-account swift-container swift-object memcached python3-swiftclient python3-keystone python3-keystonemiddleware curl rabbitmq-server iproute2 procps sudo rclone docker.io time prometheus-node-exporter systemd ceph-mon ceph-osd radosgw ceph-common)
    install_debs "${wanted[@]}"
    for component in rustfmt clippy; do
        if ! rustup component list --installed | grep -q "^$component"; then
            echo "==> adding the $component Rust component"
            rustup component add "$component"
        fi
    done
    if ! rustup target list --installed | grep -qx wasm32-wasip2; then
        echo "==> adding the wasm32-wasip2 Rust target"
        rustup target add wasm32-wasip2
    fi
}
