#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# A resync target writes (or compares) a range only once the range's bits
# are on its own disk (docs/replication.md, "Resync"): when the range is
# done the target clears its bits and the source clears its own, so a
# crash of the target that loses the resynced data from a volatile cache
# (page cache, disk cache) must still find the range marked on its disk.
# beta's bitmap writes are held by the io engine's "stall" fault:
#  1. initial full sync: a full sync sets every bit of beta's bitmap in
#     memory; while none of it can reach the disk, nothing is resynced
#     (beta receives and writes nothing, alpha clears nothing); released,
#     the full sync completes.
#  2. beta disconnected, alpha writes alone, beta reconnects: alpha's bits,
#     merged into beta's bitmap, are not on beta's disk while its bitmap
#     writes stall, and nothing is resynced; released, exactly the dirty
#     bytes ship.
# The data areas end identical.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"
requires qemu-io

K=1024

# held_resync WHAT: once beta says a range waits for its bitmap (its
# resync_bitmap_waits above WAITS0), for 2 s nothing is resynced into beta
# (its received counter stays at RECEIVED0) and alpha's out_of_sync_bytes
# stays at OOS0.
held_resync()
{
	repl_wait1 beta 20 's["resync_bitmap_waits"] >= '"$((WAITS0 + 1))" \
	    "a range waiting for beta's bitmap ($1)"
	sleep 2
	assert_eq "$(st beta resync_bytes_received)" "$RECEIVED0" \
	    "bytes beta received and wrote while its bitmap writes stall ($1)"
	assert_eq "$(st alpha out_of_sync_bytes)" "$OOS0" \
	    "alpha's out_of_sync_bytes while beta's bitmap writes stall ($1)"
	assert_eq "$(st beta replication)" sync-target "beta's replication state ($1)"
}

# ko-count 100: resync requests left unanswered while the stall lasts
# must not take the link down (timeout x ko-count) on a slow machine.
repl_setup 64M "ko-count = 100"
dump=$("$BLKMIRRORCTL" -c "$CONF" -n beta dump-md) || fail "dump-md beta failed"
bm_off=$(sed -n 's/^bitmap-offset: //p' <<<"$dump")
bm_bytes=$(sed -n 's/^bitmap-bytes: //p' <<<"$dump")
[ -n "$bm_off" ] && [ -n "$bm_bytes" ] || fail "dump-md shows no bitmap layout: $dump"
STALL="write:$bm_off-$((bm_off + bm_bytes - 1)):stall"

repl_start alpha
repl_start beta BLKMIRROR_FAULT_FILE="$TESTDIR/fault.beta"
repl_wait_connected 20

msg "== 1. initial full sync, beta's bitmap writes stalled"
repl_fault beta "$STALL"
size=$(st alpha size_bytes)
RECEIVED0=$(st beta resync_bytes_received)
WAITS0=$(st beta resync_bitmap_waits)
OOS0=$size
bm alpha primary --force
repl_wait 20 'a["out_of_sync_bytes"] == '"$size"' and b["replication"] == "sync-target"' \
    "the full sync started"
held_resync "full sync"
repl_fault beta ""
repl_wait_synced 60
assert_eq "$(($(st beta resync_bytes_received) - RECEIVED0))" "$size" \
    "bytes of the full sync"
repl_compare

msg "== 2. an incremental resync, beta's bitmap writes stalled"
qemu_io alpha -c flush
bm beta disconnect
repl_wait 20 'a["connection"] != "connected" and b["connection"] == "standalone"' \
    "beta standalone"
qemu_io alpha -c 'write -P 0x51 1M 4k' -c 'write -P 0x52 17M 8k' -c 'write -P 0x53 40M 4k'
OOS0=$((16 * K))
assert_eq "$(st alpha out_of_sync_bytes)" "$OOS0" "alpha's out_of_sync_bytes"
repl_fault beta "$STALL"
RECEIVED0=$(st beta resync_bytes_received)
WAITS0=$(st beta resync_bitmap_waits)
bm beta connect
repl_wait 20 'b["replication"] == "sync-target"' "beta a sync target"
held_resync "incremental"
repl_fault beta ""
repl_wait_synced 30
assert_eq "$(($(st beta resync_bytes_received) - RECEIVED0))" "$OOS0" \
    "bytes of the incremental resync"
repl_compare
msg "ok"
