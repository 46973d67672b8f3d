#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Crashes (SIGKILL) in the middle of a write workload.
#  1. The secondary dies: the primary goes on alone and tracks the writes
#     in its bitmap; the restarted secondary gets a bitmap-based resync
#     (only the dirty regions) and ends identical.
#  2. The primary dies: on restart it finds its "primary" flag without a
#     clean shutdown and marks every activity-log extent out of sync;
#     'primary' on it again resyncs those extents to beta (AL-based resync,
#     a few 4 MiB extents, not the volume) and the disks end identical.
#  3. Failover: the primary dies under a stream of numbered writes; beta
#     (uptodate) is promoted and holds every write alpha acknowledged
#     (protocol sync); alpha returns as secondary, its activity-log extents
#     and beta's new writes are resynced to it, the disks end identical.
#  4. async with a tiny activity log and the link silently cut: extents of
#     writes the peer has not written stay in the AL (the 8th extent's
#     write waits), so a crash then loses nothing on beta.  Requests
#     spanning more extents than the AL holds run in pieces.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"
requires fio

repl_up 128M
size=$(st alpha size_bytes)

msg "== secondary killed"
repl_fio_bg alpha --rw=randwrite --bs=4k --offset=32M --size=8M --iodepth=8 \
    --time_based --runtime=14 --rate_iops=400 --randseed=3
sleep 2
repl_kill beta
repl_wait1 alpha 15 's["connection"] != "connected" and s["role"] == "primary"' \
    "alpha sees beta gone"
w1=$(st alpha ops.writes)
sleep 2
w2=$(st alpha ops.writes)
[ "$w2" -gt "$w1" ] || fail "alpha stopped completing writes without beta ($w1 -> $w2)"
repl_fio_wait
oos=$(st alpha out_of_sync_bytes)
assert_ge "$oos" 4096 "alpha's out_of_sync_bytes after writing alone"
shipped0=$(st alpha resync_bytes_shipped)
repl_start beta
repl_wait_synced 60
shipped=$(( $(st alpha resync_bytes_shipped) - shipped0 ))
msg "bitmap resync after the secondary crash: $shipped bytes (dirty $oos)"
assert_ge "$shipped" "$oos" "bytes resynced"
[ "$shipped" -le $((8 << 20)) ] ||
    fail "resync after the secondary crash shipped $shipped bytes (> the 8 MiB written)"
repl_compare

msg "== primary killed"
received0=$(st beta resync_bytes_received)
repl_crash_primary 64M 4
n_ext=$CRASH_AL_EXTENTS
assert_eq "$(st alpha role)/$(st beta role)" "primary/secondary" "roles after the AL resync"
shipped=$(st alpha resync_bytes_shipped)
received=$(( $(st beta resync_bytes_received) - received0 ))
msg "AL-based resync: alpha shipped $shipped bytes, beta received $received"
# Exactly the active extents of the activity log (4 MiB each) move.
assert_eq "$shipped" $((n_ext * (4 << 20))) "bytes shipped by the AL-based resync"
assert_eq "$received" "$shipped" "bytes beta received in the AL-based resync"
repl_compare

# Writes after the recovery still replicate.
repl_fio alpha --rw=randwrite --bs=4k --offset=64M --size=4M --iodepth=8 \
    --verify=crc32c --randseed=9
repl_wait_synced 30
repl_compare

msg "== failover: the primary dies, beta takes over; no acknowledged write is lost"
ack=$TESTDIR/acked
: >"$ack"
repl_tool nbd-seq "$NBD_alpha" r0 "$ack" $((96 << 20)) 4096 16 >"$TESTDIR/seq.out" 2>&1 &
seqpid=$!
cleanup_kill "$seqpid"
for i in $(seq 200); do
	[ "$(wc -l <"$ack")" -ge 1000 ] && break
	sleep 0.05
done
repl_kill alpha
wait "$seqpid" || fail "nbd-seq: $(cat "$TESTDIR/seq.out")"
msg "$(cat "$TESTDIR/seq.out")"
nacked=$(wc -l <"$ack")
assert_ge "$nacked" 1000 "writes acknowledged before the crash"
[ "$nacked" -lt 4096 ] || fail "all writes completed before the crash: nothing was in flight"
repl_wait1 beta 15 's["connection"] != "connected"' "beta sees alpha gone"
assert_eq "$(st beta disk)" uptodate "beta's disk after losing the primary"
bm beta primary
out=$(repl_tool nbd-check "$NBD_beta" r0 "$ack" $((96 << 20)) 2>&1) ||
    fail "acknowledged writes lost by the failover: $out"
msg "$out"
repl_fio beta --rw=randwrite --bs=4k --offset=116M --size=4M --iodepth=8 \
    --verify=crc32c --randseed=10
msg "== the old primary returns as secondary and catches up"
repl_start alpha
repl_wait_synced 60
assert_eq "$(st alpha role)/$(st beta role)" "secondary/primary" "roles after the failover"
out=$(repl_tool nbd-check "$NBD_beta" r0 "$ack" $((96 << 20)) 2>&1) ||
    fail "acknowledged writes lost after alpha's return: $out"
repl_compare

msg "== async: extents of writes the peer has not written stay in the activity log"
# al-extents = 7 and the link silently cut (timeout 20 s): each async write
# completes once in the send buffer; its AL extent stays active until the
# peer's WRITE_ACK, so the 8th extent cannot be taken in (every slot held)
# and its write waits.  The primary then crashes: after the restart its
# activity log names every extent written since the cut, and the AL-based
# resync makes beta whole.  (Evicting an extent whose write beta never got
# would lose that write on beta for good.)
repl_stop alpha
repl_stop beta
repl_conf "protocol = async" "al-extents = 7" "timeout = 40s"
repl_create_md alpha --force
repl_create_md beta --force
repl_start alpha
repl_start beta
repl_wait_connected 20
bm alpha primary --force
repl_wait_synced 60
repl_partition
(
	for i in 0 1 2 3 4 5 6 7 8 9; do
		timeout 60 qemu-io -f raw "$URI_alpha" \
		    -c "write -P $((0x70 + i)) $((40 + 4 * i))M 4k" >/dev/null 2>&1 || exit 0
		echo "$i" >>"$TESTDIR/async-done"
	done
) &
writer=$!
for _ in $(seq 150); do
	[ "$(wc -l <"$TESTDIR/async-done" 2>/dev/null || echo 0)" -ge 7 ] && break
	sleep 0.1
done
sleep 1
done_n=$(wc -l <"$TESTDIR/async-done")
assert_eq "$done_n" 7 "async writes completed with 7 AL slots held by the lag"
assert_eq "$(st alpha connection)" connected "alpha's link (timeout 40 s) before the crash"
repl_kill alpha
wait "$writer" 2>/dev/null
repl_heal
repl_restart_crashed_primary
repl_compare

msg "== requests spanning more extents than the activity log holds"
# 7 slots: a 64 MiB discard (16 extents), 40 MiB of write-zeroes and an
# unaligned 32 MiB write (9 extents) run in pieces instead of waiting for
# ever for all their extents at once.
split0=$(st alpha split_requests)
qemu_io alpha -c 'write -P 0x3c 0 96M'
qemu_io alpha -c 'discard 4M 64M' -c 'write -z 70M 40M' -c 'write -P 0x3d 2M 32M'
qemu_io alpha -r -c 'read -P 0x3c 0 2M' -c 'read -P 0x3d 2M 32M' -c 'read -P 0 34M 34M' \
    -c 'read -P 0x3c 68M 2M' -c 'read -P 0 70M 26M'
assert_ge "$(st alpha split_requests)" $((split0 + 3)) "requests alpha ran in pieces"
repl_wait_synced 60
repl_compare
msg "PASS"
