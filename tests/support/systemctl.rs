//! systemd cannot run here, so each test node gets a `systemctl` stand-in in its own
//! `/usr/local/sbin` that starts and stops the node's real servers (mariadbd, redis-server,
//! corosync, pacemaker, rabbitmq-server, the Swift servers, and containers as TripleO's
//! `tripleo_*` units run them), as a plugin would on a real node.
//! Everything it starts is the real Debian package's binary.
//!
//! It follows systemd's model, not one release's scripts: unit names with or without
//! `.service` and Debian's aliases, `restart`, the manager environment (`set-environment`) and
//! each Debian unit's `EnvironmentFile=` — so both the `galera_new_cluster` of MariaDB before
//! 10.11.19 (`set-environment _WSREP_NEW_CLUSTER=…` then `start mariadb`) and the one after it
//! (writes `/run/mariadb-wsrep-new-cluster`, then `restart mariadb.service`) bootstrap a
//! cluster. A verb, option or unit it does not know fails, naming it.

use super::nodes::Node;

const SYSTEMCTL: &str = r#"#!/bin/sh
# Test stand-in for systemd's systemctl. It follows systemd's model rather than any one
# script that calls it: unit names with or without `.service` (and the Debian aliases),
# the verbs start, stop, restart, try-restart, is-active, set-environment,
# unset-environment and show-environment, the manager environment passed to every unit, and
# the EnvironmentFile= each Debian unit reads. Every server it starts is the Debian package's
# real binary. An unknown verb or unit fails loudly, naming it.
set -u
# The manager environment (`systemctl set-environment`), kept per node beside the stand-in.
MANAGER_ENV=/usr/local/sbin/.systemctl-environment

die() { echo "systemctl (test stand-in): $*" >&2; exit 1; }

# Print the value of VAR from the manager environment, then from each environment file
# (later wins, as systemd does: EnvironmentFile= overrides the manager's environment).
unit_env() {
    var=$1; shift; value=
    for f in "$MANAGER_ENV" "$@"; do
        [ -r "$f" ] || continue
        v=$(sed -n "s/^$var=//p" "$f" | tail -n 1)
        [ -n "$v" ] && value=$v
    done
    # Quotes as a unit's environment file may write them: VAR='value' or VAR="value".
    value=${value#\'}; value=${value%\'}; value=${value#\"}; value=${value%\"}
    printf '%s' "$value"
}

# --- mariadb.service (aliases mysql, mysqld) ---------------------------------------------
mariadb_active() { mariadb-admin ping >/dev/null 2>&1; }
mariadb_start() {
    mariadb_active && return 0
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    # Debian's unit: EnvironmentFile=-/run/mariadb-wsrep-new-cluster (galera_new_cluster of
    # 10.11.19 and later); older galera_new_cluster used `systemctl set-environment`.
    extra=$(unit_env _WSREP_NEW_CLUSTER /run/mariadb-wsrep-new-cluster)
    opts=$(unit_env MYSQLD_OPTS)
    setsid mariadbd --defaults-file=/srv/db/my.cnf $opts $extra </dev/null >/dev/null 2>&1 &
    pid=$!
    if [ -e /srv/db/kill-next-start ]; then
        # A test's way to kill mariadbd in the middle of a restore: while it joins.
        rm -f /srv/db/kill-next-start; sleep 1; kill -9 "$pid"
    fi
    i=0; until mariadb_active; do
        kill -0 "$pid" 2>/dev/null || die "mariadbd exited; see /srv/db/error.log"
        i=$((i+1)); [ $i -lt 1200 ] || die "mariadbd did not answer within 120 s"; sleep 0.1
    done
}
mariadb_stop() {
    [ -f /run/mysqld/mysqld.pid ] || return 0
    pid=$(cat /run/mysqld/mysqld.pid)
    kill "$pid" 2>/dev/null || return 0
    # As systemd after TimeoutStopSec: a Galera member can hang in shutdown when its
    # cluster broke under it (seen after a joiner was killed mid-SST).
    i=0; while kill -0 "$pid" 2>/dev/null; do
        i=$((i+1)); [ $i -lt 600 ] || { kill -9 "$pid"; echo "mariadbd did not stop; killed" >&2; }
        sleep 0.1
    done
}

# --- redis-server.service (alias redis) --------------------------------------------------
redis_conf=/var/lib/redis/redis.conf
redis_active() {
    addr=$(sed -n 's/^bind //p' $redis_conf); port=$(sed -n 's/^port //p' $redis_conf)
    redis-cli -h "$addr" -p "$port" ping 2>/dev/null | grep -qE 'PONG|NOAUTH'
}
redis_start() {
    redis_active && return 0
    redis-server $redis_conf || die "redis-server did not start"
    i=0; until redis_active; do
        i=$((i+1)); [ $i -lt 600 ] || die "redis-server did not answer within 60 s"; sleep 0.1
    done
}
redis_stop() {
    [ -f /var/lib/redis/redis.pid ] || return 0
    pid=$(cat /var/lib/redis/redis.pid)
    kill "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

# --- corosync.service, pacemaker.service -------------------------------------------------
corosync_active() { pgrep -x corosync >/dev/null; }
corosync_start() {
    corosync_active && return 0
    setsid corosync -f </dev/null >/var/lib/corosync/corosync.out 2>&1 &
}
corosync_stop() {
    pkill -x corosync || return 0
    while corosync_active; do sleep 0.1; done
}
pacemaker_active() { pgrep -x pacemakerd >/dev/null; }
pacemaker_start() {
    pacemaker_active && return 0
    setsid pacemakerd </dev/null >/var/lib/corosync/pacemakerd.out 2>&1 &
    i=0; until crm_mon -1 2>/dev/null | grep -q "partition with quorum"; do
        i=$((i+1)); [ $i -lt 1200 ] || die "pacemaker reached no quorum within 120 s"; sleep 0.1
    done
}
pacemaker_stop() {
    pkill -x pacemakerd || return 0
    while pgrep -f pacemaker- >/dev/null || pacemaker_active; do sleep 0.1; done
}

# --- rabbitmq-server.service -------------------------------------------------------------
rabbitmq_active() { rabbitmqctl -q status >/dev/null 2>&1; }
rabbitmq_start() {
    rabbitmq_active && return 0
    (cd /var/lib/rabbitmq && setsid rabbitmq-server </dev/null >/var/log/rabbitmq/server.out 2>&1 &)
    i=0; until rabbitmq_active; do
        i=$((i+1)); [ $i -lt 240 ] || die "rabbitmq-server did not answer within 120 s"; sleep 0.5
    done
}
rabbitmq_stop() { rabbitmqctl -q stop >/dev/null 2>&1 || true; }

# --- swift-<server>.service (proxy, account, container, object) --------------------------
swift_active() { pgrep -f "swift-$swift-server /etc/swift" >/dev/null; }
swift_start() {
    swift_active && return 0
    setsid swift-$swift-server /etc/swift/$swift-server.conf </dev/null >/var/cache/swift/$swift.log 2>&1 &
    addr=$(sed -n 's/^bind_ip = //p' /etc/swift/$swift-server.conf)
    port=$(sed -n 's/^bind_port = //p' /etc/swift/$swift-server.conf)
    i=0; while curl -s -o /dev/null "http://$addr:$port/"; [ $? -eq 7 ]; do
        i=$((i+1)); [ $i -lt 600 ] || die "swift-$swift did not listen within 60 s"; sleep 0.1
    done
}
swift_stop() {
    pkill -f "swift-$swift-server /etc/swift" || return 0
    while swift_active; do sleep 0.1; done
}

# --- container units, as TripleO's tripleo_<name>.service: ExecStart=RUNTIME start NAME,
# Restart=always. A file CONTAINER_UNITS/UNIT holds "RUNTIME NAME". While the unit is active, a
# supervisor starts the container again within a second whenever it is not running, as
# systemd's Restart=always does, and appends a line to CONTAINER_UNITS/UNIT.restarts each time.
CONTAINER_UNITS=/usr/local/sbin/.container-units
container_active() { [ -e "$CONTAINER_UNITS/$unit.active" ]; }
container_start() {
    container_active && return 0
    read -r rt name < "$CONTAINER_UNITS/$unit"
    $rt start "$name" >/dev/null || die "$unit: $rt start $name failed"
    touch "$CONTAINER_UNITS/$unit.active"
    setsid sh -c 'while :; do
        sleep 1
        [ "$($1 inspect -f "{{.State.Running}}" "$2" 2>/dev/null)" = true ] && continue
        echo "$2 restarted" >> "$3.restarts"; $1 start "$2" >/dev/null 2>&1
    done' supervisor "$rt" "$name" "$CONTAINER_UNITS/$unit" </dev/null >/dev/null 2>&1 &
    echo $! > "$CONTAINER_UNITS/$unit.supervisor"
}
container_stop() {
    container_active || return 0
    read -r rt name < "$CONTAINER_UNITS/$unit"
    pid=$(cat "$CONTAINER_UNITS/$unit.supervisor")
    kill "$pid" 2>/dev/null; while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    rm -f "$CONTAINER_UNITS/$unit.active"
    $rt stop -t 120 "$name" >/dev/null || die "$unit: $rt stop $name failed"
}

# Which functions serve a unit: its name without `.service`, Debian's aliases resolved.
unit_impl() {
    case "${1%.service}" in
    mariadb|mysql|mysqld) echo mariadb ;;
    redis-server|redis) echo redis ;;
    corosync) echo corosync ;;
    pacemaker) echo pacemaker ;;
    rabbitmq-server) echo rabbitmq ;;
    swift-proxy|swift-account|swift-container|swift-object)
        swift=${1%.service}; swift=${swift#swift-}; echo swift ;;
    *) [ -f "$CONTAINER_UNITS/${1%.service}" ] && echo container && return
       die "unsupported unit: $1 (verb ${verb:-?})" ;;
    esac
}

# Each unit named on the command line, in order (systemctl takes several).
each_unit() {
    action=$1; shift
    [ $# -gt 0 ] || die "$verb needs a unit"
    for u in "$@"; do
        impl=$(unit_impl "$u") || exit 1
        case $impl in
        swift) swift=${u%.service}; swift=${swift#swift-} ;;
        container) unit=${u%.service} ;;
        esac
        case $action in
        start) ${impl}_start || exit 1 ;;
        stop) ${impl}_stop || exit 1 ;;
        restart) ${impl}_stop && ${impl}_start || exit 1 ;;
        try-restart) if ${impl}_active; then ${impl}_stop && ${impl}_start || exit 1; fi ;;
        is-active) if ${impl}_active; then echo active; else echo inactive; exit 3; fi ;;
        esac
    done
}

# Options systemctl scripts pass that change nothing here.
while [ $# -gt 0 ]; do
    case $1 in
    -q|--quiet|--no-block|--no-pager|--no-ask-password|--system) shift ;;
    -*) die "unsupported option: $1" ;;
    *) break ;;
    esac
done
verb=${1:-}
[ $# -gt 0 ] && shift
case $verb in
start|stop|restart|try-restart|is-active) each_unit "$verb" "$@" ;;
reload-or-restart) each_unit restart "$@" ;;
set-environment)
    for assignment in "$@"; do
        name=${assignment%%=*}
        [ "$name" != "$assignment" ] || die "set-environment needs NAME=VALUE, got: $assignment"
        { grep -v "^$name=" "$MANAGER_ENV" 2>/dev/null; echo "$assignment"; } > "$MANAGER_ENV.new"
        mv "$MANAGER_ENV.new" "$MANAGER_ENV"
    done ;;
unset-environment)
    for name in "$@"; do
        name=${name%%=*}
        { grep -v "^$name=" "$MANAGER_ENV" 2>/dev/null || true; } > "$MANAGER_ENV.new"
        mv "$MANAGER_ENV.new" "$MANAGER_ENV"
    done ;;
show-environment) cat "$MANAGER_ENV" 2>/dev/null || true ;;
daemon-reload) ;;
*) die "unsupported verb: ${verb:-(none)} $*" ;;
esac
"#;

/// A unit on `node` that runs container `name` of `runtime`, as TripleO's
/// `tripleo_<name>.service` does (`Restart=always`: see the stand-in); its restarts are
/// counted by [`container_unit_restarts`].
pub fn container_unit(node: &Node, unit: &str, runtime: &str, name: &str) {
    install(node);
    let dir = node.own("/usr/local/sbin").join(".container-units");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(unit), format!("{runtime} {name}\n")).unwrap();
}

/// How many times the unit's supervisor has started its container again.
pub fn container_unit_restarts(node: &Node, unit: &str) -> usize {
    let log = node
        .own("/usr/local/sbin")
        .join(".container-units")
        .join(format!("{unit}.restarts"));
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .count()
}

/// Put the stand-in on `node` (idempotent).
pub fn install(node: &Node) {
    let sbin = node.own("/usr/local/sbin").join("systemctl");
    std::fs::write(&sbin, SYSTEMCTL).unwrap();
    super::sh(&format!("chmod 755 {}", sbin.display()));
}
