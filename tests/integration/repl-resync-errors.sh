#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Resync ranges that fail (docs/replication.md, Resync, "Errors"): a range
# the source cannot read, or the target cannot write, keeps its bits; the
# source finishes its pass over the bitmap and goes over the failed ranges
# again after 1 s, 2 s, 4 s ... (at most 60 s), not in a tight loop.
#  1. Three resync reads fail on the source, then the disk reads again:
#     one pass 1 s later finishes the resync; the event and the status
#     counters say what failed.
#  2. The source's reads of a region fail for good: the resync stays
#     running with the target inconsistent, the passes come at growing
#     intervals (a handful of failed ranges in 5 s, not thousands); a
#     client write over the region (primary, sync) clears its bits and the
#     resync ends at once, not at the next pass.
#  3. on-io-error = pass-on: two resync writes fail on the secondary, which
#     answers with the error and keeps its disk; the next pass writes them.
#  4. The same on a promoted sync target (pass-on): it stays primary with
#     its disk, and the passes 1 s and 2 s later write the range.
# Both disks end identical.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"
requires qemu-io

M=$((1 << 20))

# dirty_alpha PATTERN OFFSET: beta stopped, alpha writes 1 MiB alone, then
# alpha stops too (the resync starts when both are back).
dirty_alpha()
{
	repl_stop beta
	qemu_io alpha -c "write -P $1 $2 1M"
	repl_stop alpha
}

repl_up 64M
size_bytes=$(st alpha size_bytes)

msg "== 1. three failed resync reads, then a pass 1 s later"
dirty_alpha 0x51 16M
# The first three reads in [16M, 17M) fail: 3 of the 4 resync ranges of
# 256 KiB.
repl_start alpha BLKMIRROR_FAULT="read:$((16 * M))-$((17 * M - 1)):5:3"
repl_events alpha
repl_start beta
repl_wait_synced 30
assert_eq "$(st alpha resync.failed_ranges)" 3 "alpha's failed resync ranges"
assert_eq "$(st alpha resync.failed_bytes)" $((768 * 1024)) "alpha's failed resync bytes"
assert_eq "$(st beta resync.failed_ranges)" 3 "beta's ranges the source could not read"
grep -q "resync-retry" "$TESTDIR/events.alpha" || fail "no resync-retry event on alpha"
repl_log_has alpha "next pass in 1 s" || fail "alpha's log has no retry line"
repl_compare

msg "== 2. reads that fail for good: passes at growing intervals"
bm alpha primary
dirty_alpha 0x52 24M
repl_start alpha BLKMIRROR_FAULT="read:$((24 * M))-$((25 * M - 1)):5"
repl_start beta
repl_wait1 alpha 20 's["resync"]["failed_ranges"] >= 4' "the first pass failed"
sleep 5
n=$(st alpha resync.failed_ranges)
msg "failed resync ranges after 5 more seconds: $n"
# Passes at 0, 1, 3 and 7 s: at most 4 x 4 ranges by now.
[ "$n" -le 16 ] || fail "$n failed ranges in about 5 s: the failed ranges are retried too fast"
[ "$n" -ge 8 ] || fail "only $n failed ranges: no second pass after 1 s"
assert_eq "$(st alpha replication)/$(st beta disk)" sync-source/inconsistent \
    "the resync runs on, the target stays inconsistent"
repl_log_has alpha "next pass in 2 s" || fail "the delay did not grow"
# A client write over the whole failing region clears its bits (the peer
# wrote the same data): the source then ends the resync at once instead of
# waiting for its next pass.
bm alpha primary
repl_wait1 alpha 20 's["resync"]["next_pass_in_ms"] > 7000' "a wait of more than 7 s"
qemu_io alpha -c 'write -P 0x55 24M 1M'
repl_wait_synced 5
assert_eq "$(st alpha replication)" established "alpha after the write"
repl_compare
bm alpha secondary

msg "== 3. pass-on: resync writes that fail on the secondary"
repl_stop alpha
repl_start alpha
repl_wait_synced 30
bm alpha primary
dirty_alpha 0x53 40M
repl_conf "on-io-error = pass-on"
repl_start alpha
repl_start beta BLKMIRROR_FAULT="write:$((40 * M))-$((41 * M - 1)):5:2"
repl_wait_synced 30
assert_eq "$(st alpha resync.failed_ranges)" 2 "ranges beta could not write"
assert_eq "$(st beta detaches)/$(st beta disk)" 0/uptodate "beta keeps its disk (pass-on)"
repl_log_has alpha "next pass in 1 s" || fail "alpha's log has no retry line"
bm alpha primary
qemu_io alpha -r -c 'read -P 0x51 16M 1M' -c 'read -P 0x55 24M 1M' -c 'read -P 0x53 40M 1M'
repl_compare

msg "== 4. pass-on: resync writes that fail on a promoted sync target"
bm alpha disconnect
repl_wait1 beta 20 's["connection"] != "connected"' "beta sees the link down"
qemu_io alpha -c 'write -P 0x54 8M 64k'
bm alpha pause-sync
repl_stop beta
repl_start beta BLKMIRROR_FAULT="write:$((8 * M))-$((9 * M - 1)):5:2"
bm alpha connect
repl_wait 20 'a["replication"] == "paused-sync-source" and b["replication"] == "paused-sync-target"' \
    "a paused resync alpha -> beta"
bm alpha secondary
bm beta primary
repl_wait 20 'b["role"] == "primary" and a["peer"]["role"] == "primary"' "beta primary"
bm alpha resume-sync
repl_wait_synced 30
assert_eq "$(st alpha resync.failed_ranges)" 2 "ranges beta could not write"
assert_eq "$(st beta detaches)/$(st beta role)" 0/primary "beta keeps its disk and its role"
assert_eq "$(st beta resync.failed_ranges)" 2 "beta's failed resync writes"
qemu_io beta -r -c 'read -P 0x54 8M 64k'
assert_eq "$(st beta reads_from_peer)" 0 "beta's reads from the peer after the resync"
repl_compare
msg "ok ($size_bytes-byte disks)"
