#!/usr/bin/env bash
# Backup and restore throughput: Coffer against restic, borg and raw `tar | zstd` on the same
# 2 GiB tree, in the same run. First backup, then a second one after 1% of the tree changed, then a
# whole-tree restore of that snapshot into an empty directory (Coffer with its validation, as an
# operator runs it, and with `--no-validate`, which restic's restore is like).
#   benches/backup.sh [SIZE_MIB]     (default 2048)
# Prints a table; nothing here is asserted (tests never time anything).
source "$(dirname "$0")/../scripts/common.sh"
install_packages
install_debs borgbackup zstd
cd "$ROOT"
cargo build --release --locked -p coffer >/dev/null
COFFER="$CARGO_TARGET_DIR/release/coffer"
SIZE_MIB=${1:-2048}
W=${COFFER_BENCH_DIR:-/var/tmp/coffer-bench}
rm -rf "$W"; mkdir -p "$W/tree"
export RESTIC_PASSWORD=bench COFFER_PASSWORD=bench BORG_PASSPHRASE=bench

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
declare -A result took
# run KEY COMMAND...: time it into result[KEY] (a rate) and took[KEY] (seconds).
run() {
    local key=$1; shift
    local a b; a=$(now); "$@" >/dev/null 2>&1 || { echo "FAILED: $*"; exit 1; }; b=$(now)
    result[$key]=$(rate "$a" "$b"); took[$key]=$(python3 -c "print($b-$a)")
}

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
# borg's defaults: encrypted (authenticated blake2), lz4.
borg init --encryption=repokey-blake2 "$W/borg-repo" >/dev/null 2>&1

run coffer1 "$COFFER" backup
run restic1 restic -r "$W/restic-repo" backup -q "$W/tree"
run borg1 borg create "$W/borg-repo::first" "$W/tree"
if command -v zstd >/dev/null; then
    run tarzstd sh -c "tar -C '$W' -cf - tree | zstd -q -T0 -3 > '$W/tree.tar.zst'"
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
run coffer2 "$COFFER" backup
run restic2 restic -r "$W/restic-repo" backup -q "$W/tree"
run borg2 borg create "$W/borg-repo::second" "$W/tree"
coffer_size2=$(du -sb "$W/coffer-repo" | cut -f1); restic_size2=$(du -sb "$W/restic-repo" | cut -f1)
mib() { echo $(( $1 / 1048576 )); }

echo "==> restoring the whole tree"
restored() { rm -rf "$W/restored"; mkdir -p "$W/restored"; sync; run "$@"; }
restored coffer-restore "$COFFER" restore latest --target "$W/restored"
restored coffer-restore-nv "$COFFER" restore latest --target "$W/restored" --no-validate
restored restic-restore restic -r "$W/restic-repo" restore latest -q --target "$W/restored"
restored borg-restore sh -c "cd '$W/restored' && borg extract '$W/borg-repo::second'"
if [ -e "$W/tree.tar.zst" ]; then
    restored tarzstd-x sh -c "zstd -qdc '$W/tree.tar.zst' | tar -C '$W/restored' -xf -"
fi
rm -rf "$W/restored"

echo
echo "tree: $(mib "$bytes") MiB; $(nproc) cores; restic $(restic version | cut -d' ' -f2)"
printf '%-26s %s\n' "coffer backup, first" "${result[coffer1]}"
printf '%-26s %s\n' "restic backup, first" "${result[restic1]}"
printf '%-26s %s\n' "borg create, first" "${result[borg1]}"
[ -n "${result[tarzstd]:-}" ] && printf '%-26s %s\n' "tar | zstd -3 > file" "${result[tarzstd]}"
printf '%-26s %s\n' "coffer backup, 1% changed" "${result[coffer2]}"
printf '%-26s %s\n' "restic backup, 1% changed" "${result[restic2]}"
printf '%-26s %s\n' "borg create, 1% changed" "${result[borg2]}"
printf '%-26s %s\n' "coffer restore (validated)" "${result[coffer-restore]}"
printf '%-26s %s\n' "coffer restore, no validate" "${result[coffer-restore-nv]}"
printf '%-26s %s\n' "restic restore" "${result[restic-restore]}"
printf '%-26s %s\n' "borg extract" "${result[borg-restore]}"
[ -n "${result[tarzstd-x]:-}" ] && printf '%-26s %s\n' "zstd -d | tar -x" "${result[tarzstd-x]}"
python3 - <<PY
t = {$(for k in "${!took[@]}"; do printf '"%s": %s, ' "$k" "${took[$k]}"; done)}
print("coffer against restic, same run:")
print(f"  first backup throughput   {t['restic1']/t['coffer1']:.2f}x restic's (borg {t['restic1']/t['borg1']:.2f}x)")
print(f"  1%-changed re-run time    {t['coffer2']/t['restic2']:.2f}x restic's (borg {t['borg2']/t['restic2']:.2f}x)")
print(f"  restore throughput        {t['restic-restore']/t['coffer-restore-nv']:.2f}x restic's without validation, {t['restic-restore']/t['coffer-restore']:.2f}x with it (borg {t['restic-restore']/t['borg-restore']:.2f}x)")
PY
echo "repository: coffer $(mib "$coffer_size1") MiB -> $(mib "$coffer_size2") MiB; restic $(mib "$restic_size1") MiB -> $(mib "$restic_size2") MiB"
rm -rf "$W"
