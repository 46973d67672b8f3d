#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Online verify: three 4 KiB blocks of the secondary's disk are changed
# behind its back (daemon stopped, dd on the disk).  The nodes reconnect
# without a resync (their metadata knows nothing), 'verify' on the primary
# compares the whole device and reports exactly 3 x 4096 differing bytes,
# marked out of sync; 'resync' repairs them and the disks end identical.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"
requires fio

repl_setup 96M
dd if=/dev/urandom of="$DISK_alpha" bs=1M count=90 oflag=direct status=none ||
    fail "cannot fill alpha's disk"
repl_start alpha
repl_start beta
repl_wait_connected 20
bm alpha primary --force
repl_wait_synced 60
repl_compare

msg "== three blocks changed behind beta's back"
repl_stop beta
# Offsets in 4 KiB blocks: in three different MiB, one at the very start.
blocks=(0 4099 17000)
for b in "${blocks[@]}"; do
	dd if=/dev/urandom of="$DISK_beta" bs=4096 seek="$b" count=1 \
	    oflag=direct conv=notrunc status=none || fail "dd on beta's disk"
done
repl_start beta
repl_events alpha
repl_wait_synced 30
if repl_tool compare "$DISK_alpha" "$DISK_beta" "$(st alpha size_bytes)" \
    >/dev/null 2>&1; then
	fail "the disks are identical after dd: the test changed nothing"
fi
bm alpha verify
repl_wait 60 '(not a["resync"]["verify_running"]) and a["replication"] == "established"' \
    "verify done"
diff=$(st alpha resync.verify_diff_bytes)
msg "verify: alpha reports $diff differing bytes"
repl_log_has alpha "verify done" || fail "no 'verify done' line in alpha's log"
grep -q '"verify-done"' "$TESTDIR/events.alpha" || fail "no verify-done event on alpha"
assert_eq "$diff" $((3 * 4096)) "bytes verify found different"
assert_eq "$(st alpha out_of_sync_bytes)" $((3 * 4096)) "alpha's out_of_sync_bytes after verify"
shipped0=$(st alpha resync_bytes_shipped)
bm alpha resync
repl_wait_synced 30
shipped=$(( $(st alpha resync_bytes_shipped) - shipped0 ))
assert_eq "$shipped" $((3 * 4096)) "bytes shipped by the resync after verify"
repl_compare

msg "== a second verify finds nothing"
bm alpha verify
repl_wait 60 '(not a["resync"]["verify_running"]) and a["replication"] == "established"' \
    "second verify done"
assert_eq "$(st alpha resync.verify_diff_bytes)" 0 "bytes the second verify found different"
assert_eq "$(st alpha out_of_sync_bytes)" 0 "out_of_sync_bytes after the second verify"
repl_compare

msg "== verify started on the secondary while the primary writes"
# beta holds each chunk it compares; alpha's writes to it wait on beta.
# alpha's verify reads must not wait behind those writes (a deadlock that
# only ko-count would break, dropping the link).
c0=$(st alpha connects)
repl_fio_bg alpha --rw=randwrite --bs=4k --size=16M --iodepth=8 --time_based --runtime=8 \
    --rate_iops=500 --randseed=7
sleep 1
bm beta verify
repl_wait 60 '(not b["resync"]["verify_running"]) and b["replication"] == "established"' \
    "verify on beta done"
repl_fio_wait
assert_eq "$(st alpha connects)" "$c0" "link connects during the verify (the link never dropped)"
msg "verify on beta under writes: $(st beta resync.verify_diff_bytes) bytes marked (writes in flight)"
if [ "$(st alpha out_of_sync_bytes)" != 0 ] || [ "$(st beta out_of_sync_bytes)" != 0 ]; then
	bm alpha resync
fi
repl_wait_synced 30
repl_compare
msg "PASS"
