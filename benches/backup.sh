#!/usr/bin/env bash
# Backup throughput: Coffer against restic (and raw `tar | zstd`) on the same 2 GiB tree, in the
# same run. First backup, then a second one after 1% of the tree changed.
#   benches/backup.sh [SIZE_MIB]     (default 2048)
# Prints a table; nothing here is asserted (tests never time anything).
source "$(dirname "$0")/../scripts/common.sh"
install_packages
cd "$ROOT"
cargo build --release --locked -p coffer >/dev/null
COFFER="$CARGO_TARGET_DIR/release/coffer"
SIZE_MIB=${1:-2048}
W=${COFFER_BENCH_DIR:-/var/tmp/coffer-bench}
rm -rf "$W"; mkdir -p "$W/tree"
export RESTIC_PASSWORD=bench COFFER_PASSWORD=bench

echo "==> making a ${SIZE_MIB} MiB tree: 3/4 random (incompressible), 1/4 SQL-like text"
rand_files=$((SIZE_MIB * 3 / 4 / 64)); text_files=$((SIZE_MIB / 4 / 64))
for i in $(seq 1 "$rand_files"); do head -c 64M /dev/urandom > "$W/tree/blob$i"; done
python3 - "$W/tree" "$text_files" <<'PY'
import random, sys
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(7)
for f in range(n):
    with open(f"{root}/dump{f}.sql", "w") as out:
        size = 0
        while size < 64 << 20:
            line = f"INSERT INTO `instances` VALUES ({rnd.randint(1, 10**9)},'{rnd.getrandbits(64):x}','host-{rnd.randint(1, 500)}','ACTIVE',{rnd.random():.6f});\n"
            out.write(line); size += len(line)
PY
sync
bytes=$(du -sb "$W/tree" | cut -f1)
now() { date +%s.%N; }
rate() { python3 -c "print(f'{$bytes/($2-$1)/1e6:8.1f} MB/s  ({$2-$1:6.1f} s)')"; }

cat > "$W/deployment.toml" <<TOML
name = "bench"
[repository]
path = "$W/coffer-repo"
[[node]]
name = "local"
address = "local"
[plugin.filesystem.settings]
paths = ["$W/tree"]
TOML
export COFFER_CONFIG="$W/deployment.toml"
"$COFFER" init >/dev/null
restic -r "$W/restic-repo" init >/dev/null 2>&1

declare -A result
t0=$(now); "$COFFER" backup >/dev/null 2>&1; t1=$(now); result[coffer1]=$(rate "$t0" "$t1")
t0=$(now); restic -r "$W/restic-repo" backup -q "$W/tree" >/dev/null; t1=$(now); result[restic1]=$(rate "$t0" "$t1")
if command -v zstd >/dev/null; then
    t0=$(now); tar -C "$W" -cf - tree | zstd -q -T0 -3 > /dev/null; t1=$(now); result[tarzstd]=$(rate "$t0" "$t1")
fi
coffer_size1=$(du -sb "$W/coffer-repo" | cut -f1); restic_size1=$(du -sb "$W/restic-repo" | cut -f1)

echo "==> changing 1% of the tree"
python3 - "$W/tree" "$bytes" <<'PY'
import os, sys
root, total = sys.argv[1], int(sys.argv[2])
files = sorted(os.listdir(root)); budget = total // 100; i = 0
while budget > 0:
    p = os.path.join(root, files[(i * 7) % len(files)]); n = min(budget, 4 << 20)
    with open(p, "r+b") as f:
        f.seek((i * 5 << 20) % (60 << 20)); f.write(os.urandom(n))
    budget -= n; i += 1
PY
t0=$(now); "$COFFER" backup >/dev/null 2>&1; t1=$(now); result[coffer2]=$(rate "$t0" "$t1")
t0=$(now); restic -r "$W/restic-repo" backup -q "$W/tree" >/dev/null; t1=$(now); result[restic2]=$(rate "$t0" "$t1")
coffer_size2=$(du -sb "$W/coffer-repo" | cut -f1); restic_size2=$(du -sb "$W/restic-repo" | cut -f1)
mib() { echo $(( $1 / 1048576 )); }

echo
echo "tree: $(mib "$bytes") MiB; $(nproc) cores; restic $(restic version | cut -d' ' -f2)"
printf '%-26s %s\n' "coffer backup, first" "${result[coffer1]}"
printf '%-26s %s\n' "restic backup, first" "${result[restic1]}"
[ -n "${result[tarzstd]:-}" ] && printf '%-26s %s\n' "tar | zstd -3 (no store)" "${result[tarzstd]}"
printf '%-26s %s\n' "coffer backup, 1% changed" "${result[coffer2]}"
printf '%-26s %s\n' "restic backup, 1% changed" "${result[restic2]}"
echo "repository: coffer $(mib "$coffer_size1") MiB -> $(mib "$coffer_size2") MiB; restic $(mib "$restic_size1") MiB -> $(mib "$restic_size2") MiB"
rm -rf "$W"
