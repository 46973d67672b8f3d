#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Checksum-based resync (csums = xxh3): the target sends digests, the source
# ships data only where they differ.
#  1. A forced full sync between two disks that already hold the same data
#     ships nothing: every range is found equal (resync.same_bytes = size).
#  2. Two blocks of the secondary are changed behind its back, then
#     'invalidate' on it re-fetches the whole device: only the two ranges
#     around the changed blocks are shipped; the disks end identical.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"
requires fio

repl_setup 96M "csums = xxh3"
# The same data on both disks (the metadata at the end is not touched).
dd if=/dev/urandom of="$TESTDIR/data" bs=1M count=80 status=none ||
    fail "cannot make the data"
for n in alpha beta; do
	d=DISK_$n
	dd if="$TESTDIR/data" of="${!d}" bs=1M oflag=direct status=none ||
	    fail "cannot write $n's disk"
done
rm -f "$TESTDIR/data"

msg "== full sync between identical disks"
repl_start alpha
repl_start beta
repl_wait_connected 20
bm alpha primary --force
repl_wait_synced 60
size=$(st alpha size_bytes)
msg "full csums sync: shipped $(st alpha resync.shipped_bytes), same $(st alpha resync.same_bytes) of $size"
assert_eq "$(st alpha resync.total_bytes)" "$size" "resync.total_bytes of the full sync"
assert_eq "$(st alpha resync.same_bytes)" "$size" "resync.same_bytes (all equal)"
assert_eq "$(st alpha resync_bytes_shipped)" 0 "resync_bytes_shipped between identical disks"
assert_eq "$(st beta resync_bytes_received)" 0 "beta's resync_bytes_received"
repl_compare

msg "== invalidate after two blocks changed behind beta's back"
repl_fio alpha --rw=randwrite --bs=4k --offset=50M --size=2M --iodepth=8 \
    --verify=crc32c --randseed=2
repl_wait_synced 30
repl_stop beta
for b in 1000 20000; do
	dd if=/dev/urandom of="$DISK_beta" bs=4096 seek="$b" count=1 \
	    oflag=direct conv=notrunc status=none || fail "dd on beta's disk"
done
repl_start beta
repl_wait_synced 30
shipped0=$(st alpha resync_bytes_shipped)
bm beta invalidate
repl_wait 20 'b["replication"] in ("sync-target", "established") and
    (b["replication"] == "sync-target" or b["resync"]["done_bytes"] > 0)' "invalidate started"
repl_wait_synced 60
shipped=$(( $(st alpha resync_bytes_shipped) - shipped0 ))
same=$(st alpha resync.same_bytes)
msg "invalidate with csums: shipped $shipped, same $same of $size"
assert_eq "$(st alpha resync.total_bytes)" "$size" "resync.total_bytes of invalidate"
# Each changed block costs at most one resync range (256 KiB).
assert_ge "$shipped" $((2 * 4096)) "bytes shipped for the two changed blocks"
[ "$shipped" -le $((2 * (256 << 10))) ] ||
    fail "invalidate with csums shipped $shipped bytes for two changed blocks"
assert_eq "$same" $((size - shipped)) "resync.same_bytes of invalidate"
repl_compare
msg "PASS"
