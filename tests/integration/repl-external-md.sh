#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# External metadata (meta-disk = PATH) with a bitmap granularity and an
# activity-log size other than the defaults (bitmap-granularity = 1M, the
# largest, larger than one resync request; al-extents = 67).
#  1. create-md writes the metadata into its own file (created, sized to
#     fit) and refuses to overwrite it without --force; dump-md shows the
#     layout; the whole data disk is exported (nothing reserved at its end).
#  2. Initial full sync; a fio verify workload replicated.
#  3. The secondary is stopped, the primary writes alone: the bitmap counts
#     1 MiB granules (a 4 KiB write marks 1 MiB) and the resync ships
#     exactly those granules, each as a whole.
#  4. The primary dies under writes: its activity log (in the external
#     file) brings back the extents it had active, and only those (4 MiB
#     each) are resynced.
# The data areas (the whole disks) end identical.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"
requires fio qemu-io

M=$((1 << 20))

# compare_disks: both whole disks identical (external metadata: the data
# area is the whole disk).
compare_disks()
{
	local out
	out=$(repl_tool compare "$DISK_alpha" "$DISK_beta" "$disk_bytes" 2>&1) ||
	    fail "the disks differ: $out"
	msg "$out"
}

repl_setup 64M "bitmap-granularity = 1M" "al-extents = 67"
disk_bytes=$(blockdev --getsize64 "$DISK_alpha")
for n in alpha beta; do
	sed -i "/^\[node $n\]\$/a meta-disk = $TESTDIR/$n.md" "$CONF"
done
assert_eq "$(grep -c '^meta-disk = ' "$CONF")" 2 "meta-disk lines in $CONF"

msg "== 1. create-md on an external file"
for n in alpha beta; do
	repl_create_md "$n"
	[ -s "$TESTDIR/$n.md" ] || fail "create-md did not write $TESTDIR/$n.md"
done
out=$("$BLKMIRRORCTL" -c "$CONF" -n alpha create-md 2>&1) &&
    fail "create-md overwrote existing external metadata without --force: $out"
assert_match "$out" "exist|--force" "create-md over existing external metadata"
repl_create_md alpha --force
dump=$("$BLKMIRRORCTL" -c "$CONF" -n alpha dump-md) || fail "dump-md alpha failed"
for want in "meta-disk: external" "data-bytes: $disk_bytes" "bitmap-granularity: 1048576" \
    "al-extents: 67"; do
	grep -qx "$want" <<<"$dump" || fail "dump-md has no '$want': $dump"
done

repl_start alpha
repl_start beta
repl_wait_connected 20
assert_eq "$(st alpha size_bytes)" "$disk_bytes" "exported size (the whole disk)"
# A second daemon on another disk but alpha's meta-disk is refused (exit
# 69) before it reads or writes that metadata.
sed "s|^disk = $DISK_alpha\$|disk = $TESTDIR/other.img|" "$CONF" >"$TESTDIR/other.conf"
grep -q "^disk = $TESTDIR/other.img\$" "$TESTDIR/other.conf" || fail "no other disk in other.conf"
truncate -s "$disk_bytes" "$TESTDIR/other.img"
timeout 20 "$BLKMIRRORD" -c "$TESTDIR/other.conf" -n alpha -f >"$TESTDIR/other.out" 2>&1
assert_refused $? 69 "$(cat "$TESTDIR/other.out")" "a second daemon on alpha's meta-disk"
assert_match "$(cat "$TESTDIR/other.out")" "meta-disk $TESTDIR/alpha.md is in use by another blkmirrord" \
    "a second daemon on alpha's meta-disk"
bm alpha primary --force
repl_wait_synced 60
compare_disks

msg "== 2. replicated writes"
repl_fio alpha --rw=randwrite --bs=4k --size=32M --iodepth=16 --verify=crc32c --randseed=21
repl_wait_synced 30
compare_disks

msg "== 3. writing alone: 1 MiB granules"
# A FLUSH first: fio's last writes, acknowledged but not yet flushed by
# beta, would be marked too when the link goes (docs/replication.md).
qemu_io alpha -c flush
repl_stop beta
# Four 4 KiB writes in four distinct granules, two 4 KiB writes in one more.
qemu_io alpha -c 'write -P 0x71 1M 4k' -c 'write -P 0x72 3M 4k' -c 'write -P 0x73 5M 4k' \
    -c 'write -P 0x74 7M 4k' -c 'write -P 0x75 9M 4k' -c 'write -P 0x76 9220k 4k'
assert_eq "$(st alpha out_of_sync_bytes)" $((5 * M)) "alpha's out_of_sync_bytes"
shipped0=$(st alpha resync_bytes_shipped)
repl_start beta
repl_wait_synced 30
assert_eq "$(($(st alpha resync_bytes_shipped) - shipped0))" $((5 * M)) \
    "bytes resynced (five granules)"
compare_disks

msg "== 4. the primary dies: the external activity log"
received0=$(st beta resync_bytes_received)
repl_crash_primary 16M 22
n_ext=$CRASH_AL_EXTENTS
received=$(($(st beta resync_bytes_received) - received0))
msg "AL-based resync: beta received $received bytes"
assert_eq "$received" $((n_ext * 4 * M)) "bytes of the AL-based resync"
compare_disks
msg "ok ($disk_bytes-byte disks, external metadata)"
