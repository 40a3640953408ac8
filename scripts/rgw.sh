# Sourced by the benches: a one-node Ceph cluster (a monitor and one in-memory OSD) with the
# RADOS Gateway in front of it, the S3 service most OpenStack deployments run. Debian's
# packages, started by hand on loopback under DIR; nothing outlives `rgw_down`.
#   rgw_up DIR MON_PORT RGW_PORT ACCESS_KEY SECRET_KEY [MEMORY_MIB] [PREFIX...]
# PREFIX runs before each daemon (e.g. `taskset -c 1`).

rgw_up() {
    local dir=$1 mon_port=$2 rgw_port=$3 access=$4 secret=$5 memory=${6:-4096}
    shift 6 || shift $#
    install_debs ceph-mon ceph-osd radosgw ceph-common
    rm -rf "$dir"; mkdir -p "$dir"/{run,log,mon.a,osd0}
    local fsid; fsid=$(cat /proc/sys/kernel/random/uuid)
    cat > "$dir/ceph.conf" <<CONF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon_port]
client mount timeout = 30
rados mon op timeout = 30
auth allow insecure global id reclaim = false
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon data avail warn = 1
mon data avail crit = 0
osd objectstore = memstore
memstore device bytes = $((memory << 20))
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
pid file = $dir/run/\$name.pid
keyring = $dir/keyring
osd data = $dir/osd\$id
mon data = $dir/mon.\$id
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
CONF
    local c=(-c "$dir/ceph.conf")
    ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-authtool "$dir/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
    ceph-authtool "$dir/keyring" --gen-key -n osd.0 --cap mon 'allow profile osd' --cap osd 'allow *' >/dev/null
    ceph-authtool "$dir/keyring" --gen-key -n client.rgw --cap mon 'allow rw' --cap osd 'allow rwx' >/dev/null
    monmaptool --create --addv a "[v2:127.0.0.1:$mon_port]" --fsid "$fsid" "$dir/monmap" >/dev/null
    ceph-mon "${c[@]}" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring"
    "$@" ceph-mon "${c[@]}" -i a
    timeout 60 ceph "${c[@]}" --connect-timeout 30 osd create >/dev/null
    ceph-osd "${c[@]}" -i 0 --mkfs >/dev/null 2>&1
    "$@" ceph-osd "${c[@]}" -i 0 >/dev/null 2>&1
    "$@" radosgw "${c[@]}" -n client.rgw
    local tries=0
    until curl -s -m 2 -o /dev/null "http://127.0.0.1:$rgw_port/"; do
        tries=$((tries + 1)); [ $tries -lt 240 ] || { echo "radosgw did not answer on port $rgw_port: see $dir/log" >&2; return 1; }
        sleep 0.5
    done
    timeout 60 radosgw-admin "${c[@]}" user create --uid=coffer --display-name=coffer \
        --access-key="$access" --secret-key="$secret" >/dev/null
}

rgw_down() {
    local dir=$1 f pids=() i
    for f in "$dir"/run/*.pid; do [ -e "$f" ] && pids+=("$(cat "$f")"); done
    [ ${#pids[@]} -gt 0 ] || return 0
    kill "${pids[@]}" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "${pids[@]}" 2>/dev/null || return 0; sleep 0.2; done
    kill -9 "${pids[@]}" 2>/dev/null || true
}
