#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# A sync target made primary (issue 3, point 5): its blocks still out of
# sync are read from the peer, its writes reach both disks, and the resync
# that goes on beneath never overwrites them.
#  1. alpha writes while beta is away; the resync back to beta is paused;
#     alpha steps down and beta, a paused sync target, is promoted without
#     --force.  Reads on beta of blocks still out of sync return alpha's
#     data (reads_from_peer counts them), in-sync blocks are read locally;
#     a write on beta into an out-of-sync region reads back at once.
#  2. The link goes down: beta, primary with an inconsistent disk, fails
#     reads of out-of-sync blocks and every write with EIO (it has no good
#     copy and no peer) -- also overlapping writes that were waiting behind
#     one the peer never acknowledged -- without a new generation UUID, but
#     still serves blocks in sync; after the reconnect the resync resumes
#     towards beta, which stays primary.
#  3. The same promotion with the resync running and a verified random
#     write workload on the new primary over the out-of-sync region.
# Both disks end identical.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"
requires fio qemu-io nbdcopy

repl_up 64M
M=$((1 << 20)) K=1024

# beta_primary_alone CONF_LINE: both daemons restarted with CONF_LINE, in
# sync; beta made primary and disconnected (alpha sees the link down).
beta_primary_alone()
{
	repl_stop alpha
	repl_stop beta
	repl_conf "$1"
	repl_start alpha
	repl_start beta
	repl_wait_synced 30
	bm beta primary
	bm beta disconnect
	repl_wait1 alpha 20 's["connection"] != "connected"' "alpha sees the link down"
}

msg "== 1. promote a paused sync target"
qemu_io alpha -c 'write -P 0x11 0 16M'
repl_wait_synced 30
bm alpha disconnect
repl_wait1 beta 20 's["connection"] != "connected"' "beta sees the link down"
# While beta is away: 1 MiB at 4 MiB, one block at 8 MiB, 64 KiB at 12 MiB.
qemu_io alpha -c 'write -P 0x22 4M 1M' -c 'write -P 0x23 8M 4k' -c 'write -P 0x24 12M 64k'
oos=$(st alpha out_of_sync_bytes)
assert_eq "$oos" $(((1024 + 4 + 64) << 10)) "alpha's out-of-sync bytes"
bm alpha pause-sync
bm alpha connect
repl_wait 20 'a["replication"] == "paused-sync-source" and b["replication"] == "paused-sync-target"' \
    "a paused resync alpha -> beta"
assert_eq "$(st beta disk)" inconsistent "beta's disk as a paused sync target"
bm alpha secondary
bm beta primary
repl_wait 20 'b["role"] == "primary" and a["peer"]["role"] == "primary"' "beta primary"
assert_eq "$(st beta replication)" paused-sync-target "beta still a sync target"
assert_eq "$(st beta out_of_sync_bytes)" "$oos" "beta's out-of-sync bytes"

r0=$(st beta reads_from_peer)
qemu_io beta -r -c 'read -P 0x22 4M 1M' -c 'read -P 0x23 8M 4k' -c 'read -P 0x24 12M 64k' \
    -c "read -P 0x11 $((4*M-4*K)) 4k" -c "read -P 0x11 $((8*M+4*K)) 1M"
# A read that spans in-sync and out-of-sync blocks.
qemu_io beta -r -c "read -P 0x11 $((12*M-8*K)) 8k" -c 'read -P 0x24 12M 8k'
r1=$(st beta reads_from_peer)
msg "reads served by alpha: $((r1 - r0)); alpha served $(st alpha reads_for_peer)"
[ "$((r1 - r0))" -ge 4 ] || fail "beta read only $((r1 - r0)) times from the peer"
[ "$((r1 - r0))" -le 20 ] || fail "beta read in-sync blocks from the peer too ($((r1 - r0)) reads)"
# A local read of beta's disk shows the stale data is really still there.
stale=$(dd if="$DISK_beta" bs=4k skip=$((4 << 8)) count=1 iflag=direct status=none | od -An -tx1 -N1)
assert_eq "${stale// /}" 11 "beta's own copy at 4 MiB (not yet resynced)"

# Writes on the promoted target: part of an out-of-sync block range.
qemu_io beta -c "write -P 0x33 $((4*M+8*K)) 4k" -c "write -P 0x34 $((12*M+60*K)) 8k"
qemu_io beta -r -c 'read -P 0x22 4M 8k' -c "read -P 0x33 $((4*M+8*K)) 4k" -c "read -P 0x22 $((4*M+12*K)) 1012k" \
    -c 'read -P 0x24 12M 60k' -c "read -P 0x34 $((12*M+60*K)) 8k" -c "read -P 0x11 $((12*M+68*K)) 4k"

bm alpha resume-sync
repl_wait_synced 60
assert_eq "$(st beta role)/$(st alpha role)" "primary/secondary" "roles after the resync"
qemu_io beta -r -c 'read -P 0x22 4M 8k' -c "read -P 0x33 $((4*M+8*K)) 4k" -c 'read -P 0x24 12M 60k' \
    -c "read -P 0x34 $((12*M+60*K)) 8k"
repl_compare

msg "== 2. the promoted target loses the peer"
bm beta secondary
bm alpha primary
bm alpha disconnect
repl_wait1 beta 20 's["connection"] != "connected"' "beta sees the link down"
qemu_io alpha -c 'write -P 0x44 20M 256k'
bm alpha pause-sync
bm alpha connect
repl_wait 20 'a["replication"] == "paused-sync-source" and b["replication"] == "paused-sync-target"' \
    "a paused resync alpha -> beta again"
bm alpha secondary
bm beta primary
qemu_io beta -r -c 'read -P 0x44 20M 256k'
# Writes waiting behind a write the peer never acknowledges when the link
# goes: they must fail too, before any metadata step (no new generation on
# a disk that is not uptodate), not complete on the local disk alone.
uuid0=$(st beta uuids.current)
repl_partition
out=$(qemu_io_fails beta -c "aio_write -P 0x71 $((24*M)) 64k" \
    -c "aio_write -P 0x72 $((24*M)) 64k" -c "aio_write -P 0x73 $((24*M+32*K)) 64k" -c aio_flush)
nfail=$(grep -c "aio_write failed" <<<"$out")
msg "overlapping writes while the link went: $nfail of 3 failed"
assert_eq "$nfail" 3 "overlapping writes failed when the peer went away"
assert_eq "$(st beta uuids.current)" "$uuid0" "beta's current uuid (no new generation)"
repl_heal
repl_wait 30 'a["replication"] == "paused-sync-source" and b["replication"] == "paused-sync-target"' \
    "the paused resync back after the heal"
repl_kill alpha
repl_wait1 beta 20 's["connection"] != "connected"' "beta sees alpha gone"
assert_eq "$(st beta role)/$(st beta disk)" "primary/inconsistent" "beta without its peer"
n0=$(st beta io_refused_no_data)
out=$(qemu_io_fails beta -r -c 'read 20M 4k')
msg "read of an out-of-sync block without the peer: $(head -n 1 <<<"$out")"
out=$(qemu_io_fails beta -c 'write -P 0x55 30M 4k')
msg "write without the peer: $(head -n 1 <<<"$out")"
qemu_io beta -r -c 'read -P 0x11 0 4M'		# in sync: served locally
[ "$(st beta io_refused_no_data)" -ge $((n0 + 2)) ] || fail "io_refused_no_data did not count"
repl_start alpha
repl_wait_synced 60
assert_eq "$(st beta role)/$(st alpha role)" "primary/secondary" "roles after the reconnect"
qemu_io beta -r -c 'read -P 0x44 20M 256k' -c 'read -P 0x00 30M 4k'
repl_compare

msg "== 3. promote a running sync target under a verified workload"
bm beta secondary
beta_primary_alone "resync-rate = 512K"
# Scattered 4 KiB blocks written on beta while alpha is away.
repl_fio beta --rw=randwrite --bs=4k --offset=32M --size=16M --io_size=6M --randseed=9
oos=$(st beta out_of_sync_bytes)
msg "beta wrote $oos bytes alpha does not have"
bm beta secondary
bm beta connect
repl_wait 20 'a["replication"] == "sync-target" and b["replication"] == "sync-source"' \
    "resync beta -> alpha"
# The bitmaps must be exchanged before the target may serve clients.
for i in $(seq 50); do
	_bm_run alpha primary >/dev/null 2>&1 && break
	sleep 0.1
done
assert_eq "$(st alpha role)" primary "alpha promoted while a sync target"
left=$(st alpha out_of_sync_bytes)
msg "alpha promoted with $left bytes still out of sync"
[ "$left" -gt $((1 << 20)) ] || fail "the resync was nearly over before the promotion ($left bytes left)"
r0=$(st alpha reads_from_peer)
# Read the whole volume through alpha while it resyncs: beta's data.
timeout 60 nbdcopy "$URI_alpha" "$TESTDIR/alpha-view.img" || fail "nbdcopy from alpha failed"
cmp <(dd if="$DISK_beta" bs=1M skip=32 count=16 iflag=direct status=none) \
    <(dd if="$TESTDIR/alpha-view.img" bs=1M skip=32 count=16 status=none) ||
    fail "alpha's view of the out-of-sync region differs from beta's disk"
msg "alpha served beta's data: $(( $(st alpha reads_from_peer) - r0 )) reads from beta, $(st alpha out_of_sync_bytes) bytes still out of sync"
[ "$(st alpha reads_from_peer)" -gt "$r0" ] || fail "alpha read nothing from beta"
# Verified writes on the promoted target while the resync goes on.
repl_fio alpha --rw=randwrite --bs=4k --offset=32M --size=16M --io_size=4M \
    --iodepth=8 --randseed=11 --verify=crc32c --verify_fatal=1 --do_verify=1
msg "alpha read $(( $(st alpha reads_from_peer) - r0 )) times from beta; $(st alpha resync.stale_refused) resync ranges refused as stale"
repl_wait_synced 90
assert_eq "$(st alpha role)/$(st beta role)" "primary/secondary" "roles at the end"
repl_compare

msg "== 4. resync data older than a write of the promoted target is refused"
# beta holds every resync range it read for 8 s before shipping it, so a
# write on alpha lands on a range whose (older) resync data is on its way.
# Without the rule, that data would overwrite the write on alpha only.
# (A timeout well above the hold: alpha's write waits for it on beta.)
bm alpha secondary
beta_primary_alone "timeout = 15s"
qemu_io beta -c 'write -P 0x66 40M 4k'
bm beta secondary
repl_stop beta
repl_start beta BLKMIRROR_TEST_RESYNC_HOLD_MS=8000
bm beta pause-sync
repl_wait 20 'a["replication"] == "paused-sync-target" and b["replication"] == "paused-sync-source"' \
    "a paused resync beta -> alpha"
bm alpha primary
s0=$(st alpha resync.stale_refused)
bm beta resume-sync
sleep 1
qemu_io alpha -c 'write -P 0x77 40M 4k'
qemu_io alpha -r -c 'read -P 0x77 40M 4k'
repl_wait_synced 60
s1=$(st alpha resync.stale_refused)
msg "resync ranges refused as older than alpha's write: $((s1 - s0))"
[ "$s1" -gt "$s0" ] || fail "alpha took resync data older than its own write"
qemu_io alpha -r -c 'read -P 0x77 40M 4k'
repl_compare
msg "PASS"
