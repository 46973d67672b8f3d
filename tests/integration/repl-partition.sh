#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# The peer link is cut (nftables drop in beta's namespace: silence, no
# resets) in the middle of a write workload on the primary.  After
# `timeout` the primary declares the peer dead and goes on alone, tracking
# the writes in its bitmap; beta stays secondary.  Once the link is back
# the nodes reconnect and resync only the regions written meanwhile: the
# resync byte counter matches the out-of-sync bytes, far below the volume
# size.  Then the same with the link healed while the workload still runs,
# a slow resync (resync-rate) overlapping client writes.  Both disks end
# identical.  Last, a write in flight when the link drops makes the primary
# take a new generation by itself, so a demotion right after cannot turn the
# resync the wrong way.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"
requires fio

repl_up 128M
size=$(st alpha size_bytes)
shipped0=$(st alpha resync_bytes_shipped)
assert_eq "$shipped0" "$size" "initial full sync"

# 16 s of rate-limited 4 KiB random writes over 8 MiB at offset 16 MiB
# (still running when the checks of the degraded writes below are done).
repl_fio_bg alpha --rw=randwrite --bs=4k --offset=16M --size=8M --iodepth=4 \
    --time_based --runtime=16 --rate_iops=300 --randseed=5
sleep 2
repl_partition
t0=$(date +%s)
repl_wait 20 'a["connection"] != "connected" and b["connection"] != "connected"' \
    "both nodes see the link down"
msg "link declared down after $(( $(date +%s) - t0 )) s"
w1=$(st alpha ops.writes)
sleep 3
w2=$(st alpha ops.writes)
[ "$w2" -gt "$w1" ] || fail "the primary stopped completing writes while degraded ($w1 -> $w2)"
assert_eq "$(st alpha role)/$(st alpha disk)" "primary/uptodate" "degraded alpha"
assert_eq "$(st beta role)" secondary "beta during the partition"
repl_fio_wait
oos=$(st alpha out_of_sync_bytes)
msg "out of sync after the workload: $oos bytes"
assert_ge "$oos" $((256 << 10)) "alpha's out_of_sync_bytes after the degraded writes"
[ "$oos" -le $((8 << 20)) ] || fail "out_of_sync_bytes $oos exceeds the 8 MiB written"
# The metadata on disk has the bits too (write path rule 4).
dump=$("$BLKMIRRORCTL" -c "$CONF" -n alpha dump-md) || fail "dump-md alpha failed"
assert_match "$dump" "out-of-sync-bytes: [1-9]" "alpha's on-disk bitmap"

repl_heal
t0=$(date +%s)
repl_wait_synced 90
msg "in sync again $(( $(date +%s) - t0 )) s after the heal"
shipped=$(( $(st alpha resync_bytes_shipped) - shipped0 ))
total=$(st alpha resync.total_bytes)
msg "resync shipped $shipped bytes (total $total, dirty $oos, volume $size)"
assert_eq "$(st alpha resync.shipped_bytes)" "$shipped" "resync.shipped_bytes of this resync"
assert_ge "$shipped" "$oos" "bytes shipped by the resync"
[ "$shipped" -le $((oos + (1 << 20))) ] ||
    fail "resync shipped $shipped bytes, more than the $oos dirty bytes (+1 MiB)"
[ "$shipped" -lt $((size / 4)) ] ||
    fail "resync shipped $shipped bytes: not incremental (volume $size)"
assert_eq "$(st beta resync_bytes_received)" "$((size + shipped))" "beta's resync_bytes_received"
# The resync's clears reach beta's bitmap only after a flush of its data.
[ "$(st beta bitmap_flushes)" -ge 1 ] || fail "beta wrote cleared bitmap blocks without a flush"
repl_compare

msg "== heal while the workload goes on: resync and client writes overlap"
repl_stop alpha
repl_stop beta
repl_conf "resync-rate = 2M"
repl_start alpha
repl_start beta
repl_wait_synced 30
bm alpha primary
repl_fio_bg alpha --rw=randwrite --bsrange=4k-64k --blockalign=4k --offset=40M \
    --size=8M --iodepth=8 --time_based --runtime=16 --rate_iops=200 --randseed=6
sleep 1
repl_partition
repl_wait1 alpha 20 's["connection"] != "connected"' "alpha sees the link down"
sleep 3
repl_heal
# resync-rate 2M: several seconds of resync while fio still writes.
repl_wait 30 'a["replication"] == "sync-source" and b["replication"] == "sync-target"' \
    "resync running"
msg "resync of $(st alpha resync.total_bytes) bytes runs under client writes"
repl_fio_wait
repl_wait_synced 90
repl_compare

msg "== a write waiting for the peer when the link drops: a new generation first"
# The write completes with its local result once `timeout` declares the
# peer dead; alpha takes a new generation before it does, although no
# write follows.  Demoted at once, alpha still meets beta as the node that
# changed alone: the resync goes alpha -> beta, whatever the node ids.
u0=$(st alpha uuids.current)
rs0=$(st alpha resync_bytes_shipped)
assert_eq "$(st alpha uuids.bitmap)" 0000000000000000 "alpha's bitmap uuid in sync"
# A FLUSH first: the last writes of the part before, acknowledged but not
# yet flushed by beta, would be marked too when the link goes
# (docs/replication.md; alpha's own FLUSH comes only after a second).
qemu_io alpha -c flush
repl_partition
qemu_io alpha -c 'write -P 0x5a 60M 64k'
assert_eq "$(st alpha uuids.bitmap)" "$u0" "alpha's bitmap uuid after the link dropped"
[ "$(st alpha uuids.current)" != "$u0" ] || fail "alpha kept its generation"
repl_log_has alpha "the link dropped with writes the peer may lack: new generation" ||
    fail "alpha's log does not name the new generation"
assert_eq "$(st alpha out_of_sync_bytes)" $((64 << 10)) "alpha's out_of_sync_bytes"
bm alpha secondary
repl_heal
repl_wait 30 'a["replication"] == "established" and b["replication"] == "established"' \
    "reconnected"
assert_ge "$(st alpha resync_bytes_shipped)" $((rs0 + (64 << 10))) \
    "bytes alpha resynced to beta after the demotion"
repl_compare
byte=$(dd if="$DISK_beta" bs=64k skip=$((60 * 16)) count=1 iflag=direct status=none |
    od -An -tx1 -N1 | tr -d ' ')
assert_eq "$byte" 5a "beta's disk at 60M"
msg "PASS"
