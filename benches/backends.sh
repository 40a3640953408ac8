#!/usr/bin/env bash
# Backends: backup and restore throughput of the same tree into a local repository and into
# one on each server on loopback: a REST server (`rclone serve restic`), S3 twice — Ceph's
# RADOS Gateway (one monitor, one in-memory OSD: scripts/rgw.sh) and Swift's own `s3api` on a
# Swift all-in-one — and SFTP (an sshd of this machine); all from Debian's packages. Coffer
# and restic in the same run, with each server's time over local. (restic 0.14 uploads to S3
# with aws-chunked signing, which s3api refuses: no restic row for s3api.) Then
# `forget --keep-last 1 --prune` over N snapshots on the REST server.
#   [ROUNDS=3] benches/backends.sh [SIZE_MIB] [SNAPSHOTS] [split]     (defaults 512, 30)
# Backups run once each into a new repository; restores ROUNDS times, the backends taking
# turns, and the table shows the median.
# With `split`, the servers run on the last core and the clients (Coffer, restic, for the
# local repository too) on the first, as if the server were another machine: on two shared
# cores a loopback server's own CPU (Swift's Python proxy above all) is part of the figure.
# Prints a table; nothing here is asserted (tests never time anything).
source "$(dirname "$0")/../scripts/common.sh"
source "$(dirname "$0")/../scripts/rgw.sh"
install_packages
cd "$ROOT"
cargo build --release --locked -p coffer >/dev/null
COFFER="$CARGO_TARGET_DIR/release/coffer"
SIZE_MIB=${1:-512}
SNAPSHOTS=${2:-30}
ROUNDS=${ROUNDS:-3}
SERVER=(); CLIENT=()
if [ "${3:-}" = split ]; then
    last=$(( $(nproc) - 1 ))
    SERVER=(taskset -c "$last"); CLIENT=(taskset -c "0-$(( last > 0 ? last - 1 : 0 ))")
fi
W=${COFFER_BENCH_DIR:-/var/tmp/coffer-bench-backends}
rm -rf "$W"; mkdir -p "$W/tree" "$W/served" "$W/state"
export RESTIC_PASSWORD=bench COFFER_PASSWORD=bench COFFER_STATE_DIR="$W/state"
PORT=18642

echo "==> making a ${SIZE_MIB} MiB tree: 3/4 random, 1/4 text"
for i in $(seq 1 $((SIZE_MIB * 3 / 4 / 32))); do head -c 32M /dev/urandom > "$W/tree/blob$i"; done
for i in $(seq 1 $((SIZE_MIB / 4 / 32))); do
    # `yes` ends on SIGPIPE when head has enough: not a failure here.
    { yes "INSERT INTO instances VALUES ($i,'compute-$i','ACTIVE');" || true; } | head -c 32M > "$W/tree/dump$i.sql"
done
sync
bytes=$(du -sb "$W/tree" | cut -f1)

"${SERVER[@]}" rclone serve restic --addr "127.0.0.1:$PORT" "$W/served" >/dev/null 2>&1 &
RCLONE=$!
until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do sleep 0.1; done

echo "==> a Swift all-in-one on 127.0.0.1 (s3api, tempauth) and an sshd for SFTP"
S=$W/swift; mkdir -p "$S/node/d1" "$S/run"
for pair in account:16202 container:16201 object:16200; do
    name=${pair%%:*}; port=${pair##*:}
    cat > "$S/$name-server.conf" <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $port
devices = $S/node
mount_check = false
workers = 1
swift_dir = $S
user = root
[pipeline:main]
pipeline = $name-server
[app:$name-server]
use = egg:swift#$name
CONF
    (cd "$S" && swift-ring-builder $name.builder create 4 1 1 >/dev/null &&
        swift-ring-builder $name.builder add r1z1-127.0.0.1:$port/d1 100 >/dev/null &&
        swift-ring-builder $name.builder rebalance >/dev/null)
done
cat > "$S/proxy-server.conf" <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = 18643
workers = 1
swift_dir = $S
user = root
[pipeline:main]
pipeline = catch_errors cache s3api tempauth proxy-server
[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
[filter:s3api]
use = egg:swift#s3api
[filter:tempauth]
use = egg:swift#tempauth
user_bench_coffer = benchkey .admin
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:18644
[filter:catch_errors]
use = egg:swift#catch_errors
CONF
"${SERVER[@]}" memcached -u memcache -l 127.0.0.1 -p 18644 -d -P "$S/run/memcached.pid"
for name in account container object proxy; do
    "${SERVER[@]}" setsid swift-$name-server "$S/$name-server.conf" </dev/null >"$S/$name.log" 2>&1 &
    echo $! > "$S/run/$name.pid"
done
# Each S3 server has its own keys: `creds WHERE` prefixes a command with them.
creds() {
    case $1 in
        s3) echo env AWS_ACCESS_KEY_ID=bench:coffer AWS_SECRET_ACCESS_KEY=benchkey ;;
        rgw) echo env AWS_ACCESS_KEY_ID=rgwkey AWS_SECRET_ACCESS_KEY=rgwsecret ;;
        *) echo env ;;
    esac
}

echo "==> a one-node Ceph cluster with the RADOS Gateway on 127.0.0.1"
rgw_up "$W/ceph" 18646 18647 rgwkey rgwsecret 4096 "${SERVER[@]}"

D=$W/sshd; mkdir -p "$D"
ssh-keygen -q -t ed25519 -N '' -f "$D/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$D/client_key"
cp "$D/client_key.pub" "$D/authorized_keys"
echo "[127.0.0.1]:18645 $(cut -d' ' -f1,2 "$D/host_key.pub")" > "$D/known_hosts"
cat > "$D/sshd_config" <<CONF
ListenAddress 127.0.0.1:18645
HostKey $D/host_key
PidFile $D/sshd.pid
AuthorizedKeysFile $D/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
CONF
mkdir -p /run/sshd
"${SERVER[@]}" /usr/sbin/sshd -f "$D/sshd_config"
trap 'kill $RCLONE 2>/dev/null; for f in "$S"/run/*.pid "$D/sshd.pid"; do kill "$(cat "$f")" 2>/dev/null; done; rgw_down "$W/ceph"; rm -rf "$W"' EXIT
until (exec 3<>"/dev/tcp/127.0.0.1/18643") 2>/dev/null; do sleep 0.2; done

deployment() {
    cat > "$W/$1.toml" <<TOML
name = "bench"
[ssh]
known-hosts = "$D/known_hosts"
[repository]
path = "$2"
key = "$D/client_key"
[[node]]
name = "local"
address = "local"
[plugin.filesystem.settings]
paths = ["$W/tree"]
TOML
}
deployment local "$W/local-repo"
deployment rest "rest:http://127.0.0.1:$PORT/coffer"
deployment s3 "s3:http://127.0.0.1:18643/coffer/bench"
deployment rgw "s3:http://127.0.0.1:18647/coffer/bench"
deployment sftp "sftp://root@127.0.0.1:18645/$W/sftp-repo"

now() { date +%s.%N; }
declare -A t
# Each key keeps every time measured for it; the table takes the median.
timed() { local k=$1; shift; local a b; a=$(now); "${CLIENT[@]}" "$@" >/dev/null 2>&1 || { echo "FAILED: $*"; exit 1; }; b=$(now); t[$k]+="$(python3 -c "print($b-$a)"),"; }

for where in local rest rgw s3 sftp; do
    $(creds $where) "$COFFER" -c "$W/$where.toml" init >/dev/null
    timed "coffer-backup-$where" $(creds $where) "$COFFER" -c "$W/$where.toml" backup
done
# Restores read the same snapshot again: ROUNDS of them, the backends taking turns.
for round in $(seq 1 "$ROUNDS"); do
    for where in local rest rgw s3 sftp; do
        rm -rf "$W/tree.restored"; mkdir -p "$W/tree.restored"
        timed "coffer-restore-$where" $(creds $where) "$COFFER" -c "$W/$where.toml" restore latest --target "$W/tree.restored"
    done
done
restic -r "$W/restic-local" init >/dev/null 2>&1
restic -r "rest:http://127.0.0.1:$PORT/restic" init >/dev/null 2>&1
$(creds rgw) restic -r "s3:http://127.0.0.1:18647/restic" init >/dev/null 2>&1
SFTP_CMD="ssh -i $D/client_key -p 18645 -o UserKnownHostsFile=$D/known_hosts root@127.0.0.1 -s sftp"
restic -r "sftp:root@127.0.0.1:$W/restic-sftp" -o sftp.command="$SFTP_CMD" init >/dev/null 2>&1
restic_repo() {
    repo="$W/restic-local"; opts=()
    [ "$1" = rest ] && repo="rest:http://127.0.0.1:$PORT/restic"
    [ "$1" = rgw ] && repo="s3:http://127.0.0.1:18647/restic"
    [ "$1" = sftp ] && { repo="sftp:root@127.0.0.1:$W/restic-sftp"; opts=(-o "sftp.command=$SFTP_CMD"); }
    return 0
}
for where in local rest rgw sftp; do
    restic_repo "$where"
    timed "restic-backup-$where" $(creds $where) restic -r "$repo" "${opts[@]}" backup -q "$W/tree"
done
for round in $(seq 1 "$ROUNDS"); do
    for where in local rest rgw sftp; do
        restic_repo "$where"
        rm -rf "$W/tree.restored"; mkdir -p "$W/tree.restored"
        timed "restic-restore-$where" $(creds $where) restic -r "$repo" "${opts[@]}" restore latest -q --target "$W/tree.restored"
    done
done

echo "==> $SNAPSHOTS more small backups on the REST repository, then forget --keep-last 1 --prune"
echo small > "$W/small"; sed -i "s|paths = \[\"$W/tree\"\]|paths = [\"$W/small\"]|" "$W/rest.toml"
for i in $(seq 1 "$SNAPSHOTS"); do echo "$i" >> "$W/small"; "$COFFER" -c "$W/rest.toml" backup >/dev/null 2>&1; done
a=$(now)
/usr/bin/time -f "%M" -o "$W/rss" "$COFFER" -c "$W/rest.toml" forget --keep-last 1 --prune >/dev/null 2>&1
b=$(now)

echo
echo "tree: $((bytes / 1048576)) MiB; restores: median of $ROUNDS; (Nx) = time over local's, same tool; $(nproc) cores${SERVER:+ (servers on core ${SERVER[2]}, clients on ${CLIENT[2]})}; restic $(restic version | cut -d' ' -f2); rclone $(rclone version | head -1 | cut -d' ' -f2)"
python3 - "$bytes" <<PY
import statistics, sys
b = int(sys.argv[1])
t = {$(for k in "${!t[@]}"; do printf '"%s": statistics.median([%s]), ' "$k" "${t[$k]}"; done)}
label = {"rest": "REST", "rgw": "S3/RGW", "s3": "S3/s3api", "sftp": "SFTP"}
for tool, servers in (("coffer", ("rest", "rgw", "s3", "sftp")), ("restic", ("rest", "rgw", "sftp"))):
    for op in ("backup", "restore"):
        l = t[f"{tool}-{op}-local"]
        row = f"{tool:7} {op:8} local {b/l/1e6:6.1f} MB/s"
        for srv in servers:
            r = t[f"{tool}-{op}-{srv}"]
            row += f"   {label[srv]} {b/r/1e6:6.1f} MB/s ({r/l:4.2f}x)"
        print(row)
PY
echo "forget --keep-last 1 --prune of $((SNAPSHOTS + 1)) snapshots on REST: $(python3 -c "print(round($b-$a,1))") s, peak RSS $(( $(cat "$W/rss") / 1024 )) MiB"
