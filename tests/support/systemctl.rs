//! systemd cannot run here, so each test node gets a `systemctl` stand-in in its own
//! `/usr/local/sbin` that starts and stops the node's real servers (mariadbd, redis-server, corosync, pacemaker, the Swift servers), as
//! a plugin would on a real node. Everything it starts is the real Debian package's binary.

use super::nodes::Node;

const SYSTEMCTL: &str = r#"#!/bin/sh
# Test stand-in for systemd's systemctl: starts and stops this node's real mariadbd and
# redis-server, and keeps the one environment variable galera_new_cluster sets.
set -u
ping() { mariadb-admin ping >/dev/null 2>&1; }
case "$1 ${2:-}" in
"start mariadb")
    ping && exit 0
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    extra=$(sed -n 's/^_WSREP_NEW_CLUSTER=//p' /srv/db/systemd-env 2>/dev/null)
    setsid mariadbd --defaults-file=/srv/db/my.cnf $extra </dev/null >/dev/null 2>&1 &
    pid=$!
    if [ -e /srv/db/kill-next-start ]; then
        # A test's way to kill mariadbd in the middle of a restore: while it joins.
        rm -f /srv/db/kill-next-start; sleep 1; kill -9 "$pid"
    fi
    i=0; until ping; do
        kill -0 "$pid" 2>/dev/null || { echo "mariadbd exited; see /srv/db/error.log" >&2; exit 1; }
        i=$((i+1)); [ $i -lt 1200 ] || exit 1; sleep 0.1
    done ;;
"stop mariadb")
    [ -f /run/mysqld/mysqld.pid ] || exit 0
    pid=$(cat /run/mysqld/mysqld.pid)
    kill "$pid" 2>/dev/null || exit 0
    # As systemd after TimeoutStopSec: a Galera member can hang in shutdown when its
    # cluster broke under it (seen after a joiner was killed mid-SST).
    i=0; while kill -0 "$pid" 2>/dev/null; do
        i=$((i+1)); [ $i -lt 600 ] || { kill -9 "$pid"; echo "mariadbd did not stop; killed" >&2; }
        sleep 0.1
    done ;;
"restart mariadb") "$0" stop mariadb && "$0" start mariadb ;;
"set-environment "*) echo "$2" > /srv/db/systemd-env ;;
"is-active mariadb") ping ;;
"start redis-server")
    conf=/var/lib/redis/redis.conf
    addr=$(sed -n 's/^bind //p' $conf); port=$(sed -n 's/^port //p' $conf)
    redis-server $conf || exit 1
    i=0; until redis-cli -h "$addr" -p "$port" ping 2>/dev/null | grep -qE 'PONG|NOAUTH'; do
        i=$((i+1)); [ $i -lt 600 ] || exit 1; sleep 0.1
    done ;;
"stop redis-server")
    [ -f /var/lib/redis/redis.pid ] || exit 0
    pid=$(cat /var/lib/redis/redis.pid)
    kill "$pid" 2>/dev/null || exit 0
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done ;;
"start corosync")
    pgrep -x corosync >/dev/null && exit 0
    setsid corosync -f </dev/null >/var/lib/corosync/corosync.out 2>&1 & ;;
"start pacemaker")
    pgrep -x pacemakerd >/dev/null && exit 0
    setsid pacemakerd </dev/null >/var/lib/corosync/pacemakerd.out 2>&1 &
    i=0; until crm_mon -1 2>/dev/null | grep -q "partition with quorum"; do
        i=$((i+1)); [ $i -lt 1200 ] || exit 1; sleep 0.1
    done ;;
"stop pacemaker")
    pkill -x pacemakerd || exit 0
    while pgrep -f pacemaker-  >/dev/null || pgrep -x pacemakerd >/dev/null; do sleep 0.1; done ;;
"stop corosync")
    pkill -x corosync || exit 0
    while pgrep -x corosync >/dev/null; do sleep 0.1; done ;;
"start rabbitmq-server")
    rabbitmqctl -q status >/dev/null 2>&1 && exit 0
    cd /var/lib/rabbitmq && setsid rabbitmq-server </dev/null >/var/log/rabbitmq/server.out 2>&1 &
    i=0; until rabbitmqctl -q status >/dev/null 2>&1; do
        i=$((i+1)); [ $i -lt 240 ] || exit 1; sleep 0.5
    done ;;
"stop rabbitmq-server") rabbitmqctl -q stop >/dev/null 2>&1 || true ;;
"start swift-"*)
    name=${2#swift-}
    pgrep -f "swift-$name-server /etc/swift" >/dev/null && exit 0
    setsid swift-$name-server /etc/swift/$name-server.conf </dev/null >/var/cache/swift/$name.log 2>&1 &
    addr=$(sed -n 's/^bind_ip = //p' /etc/swift/$name-server.conf)
    port=$(sed -n 's/^bind_port = //p' /etc/swift/$name-server.conf)
    i=0; while curl -s -o /dev/null "http://$addr:$port/"; [ $? -eq 7 ]; do
        i=$((i+1)); [ $i -lt 600 ] || exit 1; sleep 0.1
    done ;;
"stop swift-"*)
    name=${2#swift-}
    pkill -f "swift-$name-server /etc/swift" || exit 0
    while pgrep -f "swift-$name-server /etc/swift" >/dev/null; do sleep 0.1; done ;;
*) echo "systemctl (test stand-in): unsupported: $*" >&2; exit 1 ;;
esac
"#;

/// Put the stand-in on `node` (idempotent).
pub fn install(node: &Node) {
    let sbin = node.own("/usr/local/sbin").join("systemctl");
    std::fs::write(&sbin, SYSTEMCTL).unwrap();
    super::sh(&format!("chmod 755 {}", sbin.display()));
}
