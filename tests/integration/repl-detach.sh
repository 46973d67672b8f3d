#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# A failing local disk on the primary (DESIGN.md write path 9,
# on-io-error = detach): the primary drops its disk and serves from the
# peer; no client sees an error the peer could have served.  The io engine
# fault injection (BLKMIRROR_FAULT) makes alpha's disk fail.
#  1. A client write that fails on alpha's disk succeeds (beta wrote it);
#     alpha goes diskless, beta starts a new generation with every block
#     marked for alpha's disk.
#  2. Diskless: reads are served by beta (also the data alpha never wrote),
#     writes reach beta only (alpha's disk keeps its old bytes), resync and
#     verify are refused.
#  3. The link goes down: alpha fails I/O with EIO (it has no data); back
#     up, it serves again with no resync.
# 3b. Still diskless, alpha reconnects to a beta whose disk was rolled back
#     to its state before the detach (same epoch): alpha refuses to serve
#     it (its current uuid is not the generation alpha served); beta's
#     real disk back, alpha serves again.
# 3c. beta promoted and written while alpha was away: alpha sees the higher
#     epoch, steps down (a diskless secondary) and cannot be promoted.
#  4. alpha restarted on its "repaired" disk: a full resync from beta.
#  5. on-io-error = pass-on: the client gets the error, the disk stays, the
#     range is marked out of sync and a reconnect settles it.
#  6. A failing activity-log write on alpha (metadata) detaches it too: the
#     write that waited for it completes on beta.
#  7. A failing write on the secondary: beta acknowledges the error, detaches
#     and leaves; alpha marks the range and goes on alone; beta cannot be
#     promoted; restarted, it is resynced.
#  8. protocol = async: the write that failed on the primary completes from
#     the peer all the same.
#  9. A failing read detaches too and is served by the peer; every read of
#     that region would fail locally, so "one disk error" proves none was
#     tried again.
# 10. protocol = async, a failing FLUSH (which async keeps local): after the
#     detach it goes to the peer, and the client's FLUSH succeeds.
# 11. pass-on and three failing activity-log writes: retried once a second
#     (not in a tight loop); the write that waited for them completes.
#     11b: an activity log that keeps failing fails the writes waiting
#     for it with EIO after 10 s (nothing of them written on either disk).
# 12. A resync write that the target's disk fails: the target detaches and
#     leaves instead of retrying the range for ever.
# 13. A promoted sync target (its resync paused): a read of an in-sync block
#     that its disk fails is served by the peer; a write its disk fails
#     completes through the peer and is marked, so the resync writes it
#     there again (read back locally afterwards).
# 14. A resync write that a promoted sync target's disk fails: it detaches
#     (diskless primary served by the peer), the source stops its resync,
#     and a restart brings the disk back with a full resync.
# Both disks end identical, and hold what the clients wrote.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"
requires qemu-io

M=$((1 << 20)) K=1024

# promote_paused_target: once alpha -> beta is a paused resync, make beta
# (the sync target) primary in alpha's place.
promote_paused_target()
{
	repl_wait 20 'a["replication"] == "paused-sync-source" and b["replication"] == "paused-sync-target"' \
	    "a paused resync alpha -> beta"
	bm alpha secondary
	bm beta primary
	repl_wait 20 'b["role"] == "primary" and a["peer"]["role"] == "primary"' "beta primary"
}

repl_setup 64M
size_bytes=$(stat -c %s "$FILE_alpha")
# Every write of alpha's into [16M, 20M) fails with EIO: a local write
# there after the detach would show in disk_errors.
repl_start alpha BLKMIRROR_FAULT="write:$((16 * M))-$((20 * M - 1)):5"
repl_start beta
repl_wait_connected 20
bm alpha primary --force
repl_wait_synced 60
size=$(st alpha size_bytes)

# beta's disk as it is now, for part 3b (beta stopped: nothing changes it).
repl_stop beta
dd if="$DISK_beta" of="$TESTDIR/beta-before.img" bs=1M iflag=direct status=none
repl_start beta
repl_wait_synced 30

msg "== 1. a failing write on the primary completes from the peer"
qemu_io alpha -c 'write -P 0x11 0 8M'
assert_eq "$(st alpha disk)" uptodate "alpha's disk before the fault"
beta_uuid=$(st beta uuids.current)
qemu_io alpha -c 'write -P 0x22 16M 64k'
repl_wait1 alpha 10 's["disk"] == "diskless"' "alpha detached"
repl_log_has alpha "detaching the local disk" || fail "alpha's log does not say it detached"
assert_eq "$(st alpha detaches)" 1 "alpha's detaches"
assert_eq "$(st alpha disk_errors)" 1 "alpha's disk errors"
assert_eq "$(st alpha role)" primary "alpha's role after the detach"
repl_wait1 beta 10 "s['peer']['disk'] == 'diskless' and s['uuids']['current'] != '$beta_uuid'" \
    "beta starts a new generation"
# The old generation goes to the history, not to the bitmap uuid: alpha's
# disk comes back to a full resync (rule 60), whatever beta's bitmap says.
assert_eq "$(st beta uuids.history.0)" "$beta_uuid" "beta's newest history uuid"
assert_eq "$(st beta uuids.bitmap)" 0000000000000000 "beta's bitmap uuid"
assert_eq "$(st beta disk)" uptodate "beta's disk"

msg "== 2. diskless: reads from the peer, writes to the peer only"
qemu_io alpha -c 'write -P 0x33 32M 1M' -c 'write -P 0x44 4M 4k' -c 'write -P 0x55 40M 4k' \
    -c 'write -P 0x56 18M 4k'
r0=$(st alpha reads_from_peer)
qemu_io alpha -r -c 'read -P 0x22 16M 64k' -c 'read -P 0x33 32M 1M' -c 'read -P 0x44 4M 4k' \
    -c "read -P 0x11 $((4 * M + 4 * K)) 1M" -c 'read -P 0x55 40M 4k' -c 'read -P 0x56 18M 4k'
r1=$(st alpha reads_from_peer)
[ "$((r1 - r0))" -ge 5 ] || fail "alpha read only $((r1 - r0)) times from the peer"
# alpha's own disk was not written after the fault: old bytes there (and a
# write into [16M, 20M) would have failed: disk_errors below).
assert_eq "$(first_byte alpha $((32 * M)))" 00 "alpha's disk at 32M (written diskless)"
assert_eq "$(first_byte alpha $((4 * M)))" 11 "alpha's disk at 4M (rewritten diskless)"
assert_eq "$(first_byte beta $((4 * M)))" 44 "beta's disk at 4M"
assert_eq "$(st alpha disk_errors)" 1 "alpha's disk errors (no local I/O since)"
out=$(bm_fails alpha verify)
assert_match "$out" "detached" "verify on a diskless primary"
out=$(bm_fails beta resync)
assert_match "$out" "detached" "resync towards a diskless peer"
assert_eq "$(st alpha pending_writes)" 0 "alpha's pending writes"

msg "== 3. without the peer the diskless primary has no data"
shipped=$(st beta resync_bytes_shipped)
bm alpha disconnect
repl_wait1 alpha 10 's["connection"] != "connected"' "alpha sees the link down"
qemu_io_fails alpha -r -c 'read 0 4k' >/dev/null
qemu_io_fails alpha -c 'write -P 0x66 8M 4k' >/dev/null
[ "$(st alpha io_refused_no_data)" -ge 2 ] || fail "alpha did not count the refused I/O"
bm alpha connect
repl_wait 20 'a["replication"] == "established" and b["replication"] == "established"' \
    "reconnected"
qemu_io alpha -c 'write -P 0x66 8M 4k'
qemu_io alpha -r -c 'read -P 0x66 8M 4k' -c 'read -P 0x22 16M 64k'
assert_eq "$(st beta resync_bytes_shipped)" "$shipped" "resync bytes after the reconnect"
assert_eq "$(st alpha disk)" diskless "alpha's disk after the reconnect"

msg "== 3b. the peer's disk rolled back while the diskless primary was away: refused"
# beta's disk (data and metadata) as it was before the detach comes back:
# same epoch, an older generation.  alpha would serve old data.
exposed=$(st beta uuids.current)
repl_stop beta
dd if="$DISK_beta" of="$TESTDIR/beta-now.img" bs=1M iflag=direct status=none
dd if="$TESTDIR/beta-before.img" of="$DISK_beta" bs=1M oflag=direct conv=notrunc status=none
repl_start beta
repl_wait1 alpha 20 's["connection"] == "standalone"' "alpha refuses the rolled-back peer"
repl_log_has alpha "the peer's data is no longer the generation this node served \\($exposed" ||
    fail "alpha's log does not say why it refused"
assert_eq "$(st alpha role)" primary "alpha's role after the refusal"
assert_eq "$(st alpha disk)" diskless "alpha's disk after the refusal"
qemu_io_fails alpha -r -c 'read 8M 4k' >/dev/null
# beta's disk as it was at the refusal comes back: served again, no resync.
repl_stop beta
dd if="$TESTDIR/beta-now.img" of="$DISK_beta" bs=1M oflag=direct conv=notrunc status=none
rm -f "$TESTDIR/beta-now.img" "$TESTDIR/beta-before.img"
repl_start beta
bm alpha connect
repl_wait 20 'a["replication"] == "established" and b["replication"] == "established"' \
    "reconnected to the same generation"
qemu_io alpha -r -c 'read -P 0x66 8M 4k'
assert_eq "$(st beta resync_bytes_shipped)" 0 "resync bytes after the reconnect"

msg "== 3c. the peer was promoted and written meanwhile: alpha steps down"
bm alpha disconnect
repl_wait 10 'a["connection"] != "connected" and b["connection"] != "connected"' "the link down"
bm beta primary
qemu_io beta -c 'write -P 0x67 44M 4k'
bm beta secondary
bm alpha connect
repl_wait1 alpha 20 's["connection"] == "standalone" and s["role"] == "secondary"' \
    "alpha steps down (the peer's higher epoch)"
repl_log_has alpha "the peer has a higher epoch" || fail "alpha's log does not say why"
assert_eq "$(st alpha disk)" diskless "alpha's disk after stepping down"
out=$(bm_fails alpha primary)
assert_match "$out" "detached" "promoting the diskless node again"
assert_eq "$(first_byte beta $((44 * M)))" 67 "beta's disk at 44M"

msg "== 4. alpha back on its repaired disk: a full resync from beta"
repl_stop alpha
repl_start alpha
repl_wait_synced 60
# (beta counts from its restart in 3b, which shipped nothing)
assert_ge "$(st beta resync_bytes_shipped)" "$size" "bytes beta resynced to alpha"
repl_compare
bm alpha primary
qemu_io alpha -r -c 'read -P 0x22 16M 64k' -c 'read -P 0x33 32M 1M' -c 'read -P 0x66 8M 4k' \
    -c 'read -P 0x67 44M 4k'

msg "== 5. on-io-error = pass-on: the error goes to the client"
repl_stop alpha
repl_stop beta
repl_conf "on-io-error = pass-on"
repl_start alpha BLKMIRROR_FAULT="write:$((16 * M))-$((20 * M - 1)):5:1"
repl_start beta
repl_wait_synced 30
bm alpha primary
qemu_io_fails alpha -c 'write -P 0x77 16M 64k' >/dev/null
assert_eq "$(st alpha disk)" uptodate "alpha's disk with pass-on"
assert_eq "$(st alpha detaches)" 0 "alpha's detaches with pass-on"
assert_eq "$(st alpha out_of_sync_bytes)" $((64 * K)) "alpha marks the failed range"
assert_eq "$(first_byte beta $((16 * M)))" 77 "beta's disk at 16M (it wrote the failed write)"
bm alpha disconnect
bm alpha connect
repl_wait_synced 30
# The primary's copy wins: the client was told the write failed.
qemu_io alpha -r -c 'read -P 0x22 16M 64k'
repl_compare

msg "== 6. a failing activity-log write detaches the disk too"
repl_stop alpha
repl_stop beta
repl_conf
al=$("$BLKMIRRORCTL" -c "$CONF" -n alpha dump-md | awk '/^al-offset:/ {print $2}')
sb=$("$BLKMIRRORCTL" -c "$CONF" -n alpha dump-md | awk '/^sb-offsets:/ {print $2}')
[ -n "$al" ] && [ -n "$sb" ] || fail "dump-md shows no al-offset/sb-offsets"
repl_start alpha BLKMIRROR_FAULT="write:$al-$((sb - 1)):5:1"
repl_start beta
repl_wait_synced 30
bm alpha primary
qemu_io alpha -c 'write -P 0x88 48M 64k'
repl_wait1 alpha 10 's["disk"] == "diskless"' "alpha detached after the AL write failed"
repl_log_has alpha "activity log write failed" || fail "alpha's log shows no failed AL write"
qemu_io alpha -r -c 'read -P 0x88 48M 64k'
assert_eq "$(first_byte beta $((48 * M)))" 88 "beta's disk at 48M"
repl_stop alpha
repl_start alpha
repl_wait_synced 60
repl_compare

msg "== 7. a failing write on the secondary"
repl_stop alpha
repl_stop beta
repl_start alpha
repl_start beta BLKMIRROR_FAULT="write:$((24 * M))-$((28 * M - 1)):5:1"
repl_wait_synced 30
bm alpha primary
alpha_uuid=$(st alpha uuids.current)
qemu_io alpha -c 'write -P 0x99 24M 64k'
repl_wait1 beta 10 's["disk"] == "diskless" and s["connection"] == "standalone"' \
    "beta detached and left"
repl_log_has alpha "the peer failed .*WRITE_ACK" || fail "alpha did not get beta's error"
repl_log_has alpha "link down: peer disconnected: the disk failed and is detached" ||
    fail "alpha's log does not say why beta left"
qemu_io alpha -c 'write -P 0x9a 28M 64k'
assert_ge "$(st alpha out_of_sync_bytes)" $((128 * K)) "alpha's out-of-sync bytes"
[ "$(st alpha uuids.current)" != "$alpha_uuid" ] || fail "alpha kept its generation"
out=$(bm_fails beta primary)
assert_match "$out" "detached" "promoting beta with its disk detached"
repl_stop beta
repl_start beta
repl_wait_synced 60
qemu_io alpha -r -c 'read -P 0x99 24M 64k' -c 'read -P 0x9a 28M 64k'
assert_eq "$(first_byte beta $((24 * M)))" 99 "beta's disk at 24M (its failed write, resynced)"
repl_compare

msg "== 8. protocol async: the failed write completes from the peer"
repl_stop alpha
repl_stop beta
repl_conf "protocol = async"
repl_start alpha BLKMIRROR_FAULT="write:$((16 * M))-$((20 * M - 1)):5:1"
repl_start beta
repl_wait_synced 30
bm alpha primary
qemu_io alpha -c 'write -P 0xaa 16M 64k'
repl_wait1 alpha 10 's["disk"] == "diskless"' "alpha detached (async)"
qemu_io alpha -c 'write -P 0xab 20M 64k'
qemu_io alpha -r -c 'read -P 0xaa 16M 64k' -c 'read -P 0xab 20M 64k'
repl_wait1 alpha 10 's["pending_writes"] == 0 and s["lag_bytes"] == 0' "alpha's queue drained"
repl_stop alpha
repl_start alpha
repl_wait_synced 60
assert_eq "$(first_byte alpha $((16 * M)))$(first_byte alpha $((20 * M)))" aaab \
    "alpha's disk at 16M and 20M after the resync"
repl_compare

msg "== 9. a failing read: served by the peer, the disk detached"
repl_stop alpha
repl_stop beta
repl_conf
# Every read of alpha's in [16M, 20M) fails.
repl_start alpha BLKMIRROR_FAULT="read:$((16 * M))-$((20 * M - 1)):5"
repl_start beta
repl_wait_synced 30
bm beta primary
qemu_io beta -c 'write -P 0xc1 16M 1M'
repl_wait_synced 30
bm beta secondary
bm alpha primary
r0=$(st alpha reads_from_peer)
qemu_io alpha -r -c 'read -P 0xc1 16M 64k'
repl_wait1 alpha 10 's["disk"] == "diskless"' "alpha detached after a failed read"
qemu_io alpha -r -c "read -P 0xc1 $((16 * M + 512 * K)) 64k" -c 'read -P 0xc1 16M 1M'
[ "$(st alpha reads_from_peer)" -ge $((r0 + 3)) ] || fail "alpha's reads did not go to the peer"
assert_eq "$(st alpha disk_errors)" 1 "alpha's disk errors (no local read was tried again)"
repl_stop alpha
repl_start alpha
repl_wait_synced 60
repl_compare

msg "== 10. protocol async: a failing FLUSH goes to the peer"
repl_stop alpha
repl_stop beta
repl_conf "protocol = async"
repl_start alpha BLKMIRROR_FAULT="flush:*:5:1"
repl_start beta
repl_wait_synced 30
bm alpha primary
qemu_io alpha -c 'write -P 0xd1 8M 64k' -c 'flush'
repl_wait1 alpha 10 's["disk"] == "diskless"' "alpha detached after a failed flush"
repl_log_has alpha "flush at offset 0 length 0 failed: .*detaching" ||
    fail "alpha's log does not show the flush that detached it"
qemu_io alpha -r -c 'read -P 0xd1 8M 64k'
repl_stop alpha
repl_start alpha
repl_wait_synced 60
repl_compare

# write_waits_3_retries PATTERN OFFSET WHAT ERRORS_BEFORE: a write on alpha
# waits for WHAT, whose metadata write fails three times, retried a second
# apart, and then succeeds.
write_waits_3_retries()
{
	local t0 ms
	t0=$(date +%s%N)
	qemu_io alpha -c "write -P $1 $2 64k"
	ms=$((($(date +%s%N) - t0) / 1000000))
	msg "the write waited $ms ms for $3"
	[ "$ms" -ge 1800 ] || fail "three failed metadata writes retried within $ms ms (no back-off)"
	assert_eq "$(($(st alpha metadata_write_errors) - $4))" 3 "alpha's failed metadata writes"
}

msg "== 11. pass-on: a failing activity-log write is retried every second"
repl_stop alpha
repl_stop beta
repl_conf "on-io-error = pass-on"
repl_start alpha BLKMIRROR_FAULT="write:$al-$((sb - 1)):5:3"
repl_start beta
repl_wait_synced 30
bm alpha primary
write_waits_3_retries 0xe1 52M "its activity-log transaction" 0
assert_eq "$(st alpha disk)" uptodate "alpha's disk with pass-on"
repl_log_has alpha "retrying the failed write in 1 s" || fail "alpha's log has no retry line"
qemu_io alpha -r -c 'read -P 0xe1 52M 64k'
repl_wait_synced 30
repl_compare

# write_fails_after_10s PATTERN OFFSET KIND: a write on alpha that waits for
# metadata writes of KIND that keep failing fails with EIO after 10 s.
write_fails_after_10s()
{
	local t0 out ms
	t0=$(date +%s%N)
	out=$(qemu_io_fails alpha -c "write -P $1 $2 64k")
	ms=$((($(date +%s%N) - t0) / 1000000))
	msg "the write failed after $ms ms"
	assert_match "$out" "Input/output error" "the failed write's error"
	[ "$ms" -ge 9000 ] && [ "$ms" -le 20000 ] ||
	    fail "the write failed after $ms ms (want 10-12 s)"
	assert_eq "$(st alpha metadata_failed_writes)" 1 "alpha's writes failed for their metadata"
	repl_log_has alpha "$3 writes have failed for 10 s or more: 1 waiting writes fail" ||
	    fail "alpha's log does not say why the write failed"
}

msg "== 11b. pass-on, an activity log that keeps failing: the writes fail after 10 s"
repl_stop alpha
repl_start alpha BLKMIRROR_FAULT="write:$al-$((sb - 1)):5"
repl_wait_synced 30
bm alpha primary
write_fails_after_10s 0xe2 12M "activity log"
[ "$(st alpha metadata_write_errors)" -ge 10 ] || fail "fewer than 10 failed AL writes"
# Still failing: the next write fails at the next retry, within a second.
t0=$(date +%s%N)
qemu_io_fails alpha -c 'write -P 0xe2 12M 64k' >/dev/null
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$ms" -le 5000 ] || fail "the second write failed after $ms ms"
assert_eq "$(st alpha metadata_failed_writes)" 2 "alpha's writes failed for their metadata"
assert_eq "$(st alpha disk)" uptodate "alpha's disk with pass-on"
# Nothing of them was written, on either disk; the disk mended, writes go on.
assert_eq "$(first_byte alpha $((12 * M)))" "$(first_byte beta $((12 * M)))" \
    "the failed write's block on both disks"
[ "$(first_byte beta $((12 * M)))" != e2 ] || fail "beta wrote the failed write"
repl_stop alpha
repl_start alpha
repl_wait_synced 30
bm alpha primary
qemu_io alpha -c 'write -P 0xe2 12M 64k'
repl_wait_synced 30
repl_compare

msg "== 11c. pass-on: the superblock of a new generation fails, retried every second"
# Armed at run time (SIGUSR1 re-reads BLKMIRROR_FAULT_FILE), after beta is
# gone and alpha settled: only the rotation's superblock writes fail.
repl_stop alpha
repl_start alpha BLKMIRROR_FAULT_FILE="$TESTDIR/fault.alpha"
repl_wait_synced 30
bm alpha primary
repl_stop beta
repl_wait1 alpha 10 's["connection"] != "connected"' "alpha noticed beta's stop"
gen0=$(st alpha uuids.current)
errs0=$(st alpha metadata_write_errors)
repl_fault alpha "write:$sb-$((sb + 8191)):5:3"
write_waits_3_retries 0xe3 20M "the superblock of its new generation" "$errs0"
repl_log_has alpha "the new generation uuid could not be written; retrying" ||
    fail "alpha's log does not show the retried generation"
[ "$(st alpha uuids.current)" != "$gen0" ] || fail "alpha took no new generation"
assert_eq "$(st alpha uuids.bitmap)" "$gen0" "alpha's bitmap uuid (the old generation)"
assert_eq "$(st alpha metadata_failed_writes)" 0 "writes failed for their metadata"
qemu_io alpha -r -c 'read -P 0xe3 20M 64k'
repl_start beta
repl_wait_synced 30
repl_compare

msg "== 11d. pass-on, a superblock that keeps failing: the writes fail after 10 s"
repl_stop beta
repl_wait1 alpha 10 's["connection"] != "connected"' "alpha noticed beta's stop"
repl_fault alpha "write:$sb-$((sb + 8191)):5"
write_fails_after_10s 0xe4 24M superblock
[ "$(first_byte alpha $((24 * M)))" != e4 ] || fail "alpha wrote the failed write"
# The disk mended: the generation is written at the next retry, writes go on.
repl_fault alpha ""
qemu_io alpha -c 'write -P 0xe4 24M 64k'
[ "$(st alpha uuids.current)" != "$(st alpha uuids.bitmap)" ] || fail "no new generation"
repl_start beta
repl_wait_synced 30
assert_eq "$(first_byte beta $((24 * M)))" e4 "beta's disk at 24M after the resync"
repl_compare

msg "== 12. a failing resync write detaches the target"
repl_stop alpha
repl_stop beta
repl_conf
repl_start alpha
repl_start beta BLKMIRROR_FAULT="write:$((36 * M))-$((40 * M - 1)):5:1"
repl_wait_synced 30
bm alpha primary
bm beta invalidate
repl_wait1 beta 30 's["disk"] == "diskless" and s["connection"] == "standalone"' \
    "beta detached during its resync"
repl_log_has beta "write at offset [0-9]+ length [0-9]+ failed: .*detaching" ||
    fail "beta's log does not show the resync write that detached it"
assert_eq "$(st alpha disk)" uptodate "alpha's disk"
qemu_io alpha -c 'write -P 0xf1 36M 64k'
out=$(bm_fails beta primary)
assert_match "$out" "detached" "promoting beta with its disk detached"
repl_stop beta
repl_start beta
repl_wait_synced 60
qemu_io alpha -r -c 'read -P 0xf1 36M 64k'
repl_compare

msg "== 13. errors on a promoted sync target go to the peer"
repl_stop alpha
repl_stop beta
repl_start alpha
repl_start beta BLKMIRROR_FAULT="read:$((44 * M))-$((48 * M - 1)):5"
repl_wait_synced 30
bm alpha primary
qemu_io alpha -c 'write -P 0x31 44M 1M'
repl_wait_synced 30
bm alpha disconnect
repl_wait1 beta 20 's["connection"] != "connected"' "beta sees the link down"
qemu_io alpha -c 'write -P 0x32 56M 64k'
bm alpha pause-sync
bm alpha connect
promote_paused_target
r0=$(st beta reads_from_peer)
qemu_io beta -r -c 'read -P 0x31 44M 64k' -c 'read -P 0x32 56M 64k'
[ "$(st beta reads_from_peer)" -ge $((r0 + 2)) ] ||
    fail "beta's failed in-sync read was not served by the peer"
assert_eq "$(st beta disk_errors)" 1 "beta's disk errors"
assert_eq "$(st beta detaches)/$(st beta disk)" 0/inconsistent "beta keeps its disk"
repl_stop beta
repl_start beta BLKMIRROR_FAULT="write:$((60 * M))-$((62 * M - 1)):5:1"
repl_wait 20 'b["replication"] == "paused-sync-target"' "beta a paused sync target again"
bm beta primary
repl_wait 20 'b["role"] == "primary" and a["peer"]["role"] == "primary"' "beta primary"
qemu_io beta -c 'write -P 0x33 60M 64k'
assert_eq "$(st beta disk_errors)" 1 "beta's disk errors (the write)"
bm alpha resume-sync
repl_wait_synced 60
# Read locally now that beta is uptodate: the resync rewrote the block.
qemu_io beta -r -c 'read -P 0x33 60M 64k' -c 'read -P 0x32 56M 64k' -c 'read -P 0x31 44M 1M'
assert_eq "$(st beta reads_from_peer)" 0 "beta's reads from the peer after the resync"
repl_compare

msg "== 14. a failing resync write on a promoted sync target detaches it"
bm beta secondary
bm alpha primary
bm alpha disconnect
repl_wait1 beta 20 's["connection"] != "connected"' "beta sees the link down"
qemu_io alpha -c 'write -P 0x34 8M 64k'
bm alpha pause-sync
repl_stop beta
repl_start beta BLKMIRROR_FAULT="write:$((8 * M))-$((9 * M - 1)):5:1"
bm alpha connect
promote_paused_target
bm alpha resume-sync
repl_wait 20 'b["disk"] == "diskless" and b["replication"] == "established"
    and a["replication"] == "established"' "beta detached, alpha's resync stopped"
repl_log_has beta "write at offset $((8 * M)) length [0-9]+ failed: .*detaching" ||
    fail "beta's log does not show the resync write that detached it"
qemu_io beta -r -c 'read -P 0x34 8M 64k'
qemu_io beta -c 'write -P 0x35 12M 4k'
qemu_io beta -r -c 'read -P 0x35 12M 4k'
bm beta secondary
repl_stop beta
repl_start beta
repl_wait_synced 60
repl_compare

msg "== 14b. the promoted target's disk dies whole: the peer's new generation forces a full resync"
# All of beta's writes fail from the resync on, its superblock's too: only
# alpha's record (a new generation, the old ones in its history) can tell
# that beta's disk lacks what beta wrote while diskless.
bm alpha primary
bm alpha disconnect
repl_wait1 beta 20 's["connection"] != "connected"' "beta sees the link down"
qemu_io alpha -c 'write -P 0x36 8M 64k'
bm alpha pause-sync
repl_stop beta
repl_start beta BLKMIRROR_FAULT_FILE="$TESTDIR/fault.beta"
bm alpha connect
promote_paused_target
repl_fault beta "write:0-$((1 << 40)):5"
bm alpha resume-sync
repl_wait 20 'b["disk"] == "diskless" and b["replication"] == "established"
    and a["replication"] == "established"' "beta detached, alpha's resync stopped"
assert_eq "$(st alpha uuids.bitmap)" 0000000000000000 "alpha's bitmap uuid after beta's detach"
qemu_io beta -c 'write -P 0x37 12M 4k'
bm beta secondary
repl_stop beta
repl_start beta
repl_wait_synced 60
repl_log_has beta "sync-target-full" || fail "beta's repaired disk got no full resync"
assert_eq "$(first_byte beta $((12 * M)))" 37 "beta's disk at 12M (written while diskless)"
assert_eq "$(first_byte beta $((8 * M)))" 36 "beta's disk at 8M"
repl_compare
msg "ok ($size_bytes-byte disks)"
