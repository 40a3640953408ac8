#!/usr/bin/env bash
# Backends: backup and restore throughput of the same tree into a local repository and into
# one on a REST server on loopback (`rclone serve restic`), Coffer and restic in the same run,
# with the REST/local ratio of each. Then `forget --keep-last 1 --prune` over N snapshots.
#   benches/backends.sh [SIZE_MIB] [SNAPSHOTS]     (defaults 512, 30)
# Prints a table; nothing here is asserted (tests never time anything).
source "$(dirname "$0")/../scripts/common.sh"
install_packages
cd "$ROOT"
cargo build --release --locked -p coffer >/dev/null
COFFER="$CARGO_TARGET_DIR/release/coffer"
SIZE_MIB=${1:-512}
SNAPSHOTS=${2:-30}
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

rclone serve restic --addr "127.0.0.1:$PORT" "$W/served" >/dev/null 2>&1 &
RCLONE=$!
trap 'kill $RCLONE 2>/dev/null; rm -rf "$W"' EXIT
until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do sleep 0.1; done

deployment() {
    cat > "$W/$1.toml" <<TOML
name = "bench"
[repository]
path = "$2"
[[node]]
name = "local"
address = "local"
[plugin.filesystem.settings]
paths = ["$W/tree"]
TOML
}
deployment local "$W/local-repo"
deployment rest "rest:http://127.0.0.1:$PORT/coffer"

now() { date +%s.%N; }
declare -A t
timed() { local k=$1; shift; local a b; a=$(now); "$@" >/dev/null 2>&1 || { echo "FAILED: $*"; exit 1; }; b=$(now); t[$k]=$(python3 -c "print($b-$a)"); }

for where in local rest; do
    "$COFFER" -c "$W/$where.toml" init >/dev/null
    timed "coffer-backup-$where" "$COFFER" -c "$W/$where.toml" backup
    rm -rf "$W/tree.restored"; mkdir -p "$W/tree.restored"
    timed "coffer-restore-$where" "$COFFER" -c "$W/$where.toml" restore latest --target "$W/tree.restored"
done
restic -r "$W/restic-local" init >/dev/null 2>&1
restic -r "rest:http://127.0.0.1:$PORT/restic" init >/dev/null 2>&1
for where in local rest; do
    repo="$W/restic-local"; [ "$where" = rest ] && repo="rest:http://127.0.0.1:$PORT/restic"
    timed "restic-backup-$where" restic -r "$repo" backup -q "$W/tree"
    rm -rf "$W/tree.restored"; mkdir -p "$W/tree.restored"
    timed "restic-restore-$where" restic -r "$repo" restore latest -q --target "$W/tree.restored"
done

echo "==> $SNAPSHOTS more small backups on the REST repository, then forget --keep-last 1 --prune"
echo small > "$W/small"; sed -i "s|paths = \[\"$W/tree\"\]|paths = [\"$W/small\"]|" "$W/rest.toml"
for i in $(seq 1 "$SNAPSHOTS"); do echo "$i" >> "$W/small"; "$COFFER" -c "$W/rest.toml" backup >/dev/null 2>&1; done
a=$(now)
/usr/bin/time -f "%M" -o "$W/rss" "$COFFER" -c "$W/rest.toml" forget --keep-last 1 --prune >/dev/null 2>&1
b=$(now)

echo
echo "tree: $((bytes / 1048576)) MiB; $(nproc) cores; restic $(restic version | cut -d' ' -f2); rclone $(rclone version | head -1 | cut -d' ' -f2)"
python3 - "$bytes" <<PY
import sys
b = int(sys.argv[1])
t = {$(for k in "${!t[@]}"; do printf '"%s": %s, ' "$k" "${t[$k]}"; done)}
for tool in ("coffer", "restic"):
    for op in ("backup", "restore"):
        l, r = t[f"{tool}-{op}-local"], t[f"{tool}-{op}-rest"]
        print(f"{tool:7} {op:8} local {b/l/1e6:7.1f} MB/s ({l:5.1f} s)   REST {b/r/1e6:7.1f} MB/s ({r:5.1f} s)   REST/local time {r/l:4.2f}x")
PY
echo "forget --keep-last 1 --prune of $((SNAPSHOTS + 1)) snapshots on REST: $(python3 -c "print(round($b-$a,1))") s, peak RSS $(( $(cat "$W/rss") / 1024 )) MiB"
