#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Initial full sync: two fresh nodes (both inconsistent, both secondary;
# neither can be promoted without --force nor invalidated from the other;
# a second daemon or create-md on a running node's disk is refused);
# 'primary --force' on alpha makes it uptodate and the source of a full
# sync to beta, whose disk ends identical to alpha's.  Then the other way
# to start: two zeroed disks, 'new-current-uuid --clear-bitmap' skips the
# initial sync (no resync traffic at all) and the nodes mirror from there.
# Client writes run during the full sync.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"
requires fio

repl_setup 96M "resync-rate = 8M"
# Alpha's data area holds data beta does not have (beta is all zeroes).
dd if=/dev/urandom of="$DISK_alpha" bs=1M count=80 oflag=direct status=none ||
    fail "cannot fill alpha's disk"

msg "== full initial sync"
repl_start alpha
repl_start beta
repl_events alpha
repl_events beta
repl_wait_connected 20
assert_eq "$(st alpha role)/$(st alpha disk)" "secondary/inconsistent" "fresh alpha"
assert_eq "$(st beta role)/$(st beta disk)" "secondary/inconsistent" "fresh beta"
# Neither node may be promoted without --force: no disk is uptodate.
out=$(bm_fails alpha primary)
assert_match "$out" "the local disk is inconsistent, not uptodate \(use --force" \
    "primary without --force"
# Nor can one node fetch everything from the other (invalidate): neither
# has good data, and the target would end "uptodate" with the peer's.
out=$(bm_fails beta invalidate)
assert_match "$out" "the peer's disk is inconsistent, not uptodate" \
    "invalidate from an inconsistent peer"
# A second daemon for alpha's disk is refused before it reads or writes the
# metadata (it used to rewrite the live daemon's superblock before it found
# the control socket taken), and so is create-md --force.
out=$(timeout 20 "$BLKMIRRORD" -c "$CONF" -n alpha -f 2>&1)
assert_refused $? 69 "$out" "a second daemon for alpha's disk"
assert_match "$out" "disk $DISK_alpha is in use by another blkmirrord" "a second daemon for alpha"
grep -q "metadata:" <<<"$out" && fail "the second daemon went on to the metadata: $out"
if out=$("$BLKMIRRORCTL" -c "$CONF" -n alpha create-md --force 2>&1); then
	fail "create-md --force under the running daemon succeeded: $out"
fi
assert_match "$out" "is in use" "create-md --force under the running daemon"
# A raw request whose force is not the boolean true forces nothing (json-c
# would take the string "false" as true), nor does a misspelt key.
for args in '{"force":"false"}' '{"force":1}' '{"froce":true}'; do
	if out=$(repl_tool cmd "$SOCK_alpha" primary "$args" 2>&1); then
		fail "primary $args was accepted"
	fi
	assert_match "$out" "must be true or false|has no argument 'froce'" "primary $args"
	msg "primary $args refused: $out"
done
assert_eq "$(st alpha role)/$(st alpha disk)" "secondary/inconsistent" \
    "alpha after the bad primary requests"
# Nor does a secondary serve NBD clients.
if out=$(timeout 20 qemu-io -f raw -r "$URI_beta" -c 'read 0 4k' 2>&1); then
	fail "secondary beta served an NBD read: $out"
fi
assert_match "$out" "not primary" "NBD refusal on a secondary"

bm alpha primary --force
size=$(st alpha size_bytes)
# resync-rate 8M: the sync of ~96M takes about ten seconds, long enough to
# see (and to pause) on a slow machine.
repl_wait 20 'a["replication"] == "sync-source" and b["replication"] == "sync-target"
    and a["role"] == "primary" and a["disk"] == "uptodate"
    and b["disk"] == "inconsistent" and a["resync"]["total_bytes"] > 0' "full sync running"
total=$(st alpha resync.total_bytes)
assert_eq "$total" "$size" "resync.total_bytes of a full sync"
# Client writes while the sync runs (the conflict rule orders them with the
# resync's reads and writes); what they replicate need not be resynced.
repl_fio_bg alpha --rw=randwrite --bs=16k --offset=8M --size=32M --iodepth=8 \
    --verify=crc32c --randseed=3
# pause-sync stops the resync, resume-sync goes on.
bm alpha pause-sync
repl_wait1 alpha 10 's["replication"] == "paused-sync-source" and s["resync"]["paused"]' \
    "paused resync"
# resync and verify while a resync runs (here paused) say so.
for nc in "alpha resync" "alpha verify" "beta resync" "beta invalidate"; do
	read -r n c <<<"$nc"
	out=$(bm_fails $n $c)
	assert_match "$out" "a resync is running \(replication (paused-)?sync-(source|target)\)$" \
	    "$c on $n during a resync"
done
msg "refused during the paused resync: $out"
sleep 0.5
d1=$(st alpha resync.done_bytes)
sleep 1.5
d2=$(st alpha resync.done_bytes)
assert_eq "$d2" "$d1" "resync.done_bytes while paused"
[ "$d1" -lt "$size" ] || fail "the sync finished before pause-sync took effect"
t0=$(date +%s%N)
bm alpha resume-sync
repl_wait1 alpha 10 's["replication"] in ("sync-source", "established")
    and not s["resync"]["paused"]' "resumed resync"
repl_wait1 alpha 60 's["replication"] == "established"' "end of the resumed sync"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
after=$(( $(st alpha resync.done_bytes) - d1 ))
msg "after resume-sync: $after bytes in $ms ms (resync-rate 8M/s)"
# resync-rate holds after a pause too (no burst to catch up the pause).
[ $(( after / (8 << 10) )) -le $(( ms * 2 )) ] ||
    fail "resync after resume-sync ran far above resync-rate: $after bytes in $ms ms"
repl_wait_synced 60
repl_fio_wait
shipped=$(st alpha resync_bytes_shipped)
msg "full sync shipped $shipped of $size bytes"
assert_ge "$shipped" $((size - (32 << 20))) "alpha's resync_bytes_shipped"
[ "$shipped" -le "$size" ] || fail "the full sync shipped $shipped bytes, more than $size"
assert_eq "$(st beta resync_bytes_received)" "$shipped" "beta's resync_bytes_received"
assert_eq "$(st beta peer.role)" "primary" "beta sees alpha as primary"
assert_eq "$(st alpha uuids.current)" "$(st beta uuids.current)" "current uuids after the sync"
assert_eq "$(st alpha uuids.volume)" "$(st beta uuids.volume)" "volume uuids after the sync"
grep -q '"resync-done"' "$TESTDIR/events.alpha" || fail "no resync-done event on alpha"
grep -q '"resync-start"' "$TESTDIR/events.beta" || fail "no resync-start event on beta"
repl_compare
# --discard-my-data is for the connect after a split brain: refused on a
# link that is up (kept, it would discard beta's data at a later one).
out=$(bm_fails beta connect --discard-my-data)
assert_match "$out" "connected already \(replication established\)" \
    "connect --discard-my-data while connected"

# Mirrored from now on: a write on alpha is on beta's disk.
repl_fio alpha --rw=randwrite --bs=4k --size=16M --iodepth=8 --verify=crc32c \
    --randseed=7
repl_wait_synced 30
repl_compare

msg "== skip the initial sync of two zeroed disks"
repl_stop alpha
repl_stop beta
for n in alpha beta; do
	d=DISK_$n
	dd if=/dev/zero of="${!d}" bs=1M count=96 oflag=direct status=none ||
	    fail "cannot zero $n"
	repl_create_md "$n" --force
done
repl_start alpha
repl_start beta
repl_wait_connected 20
bm alpha new-current-uuid --clear-bitmap
repl_wait 20 'a["disk"] == "uptodate" and b["disk"] == "uptodate"
    and a["replication"] == "established" and b["replication"] == "established"' \
    "both uptodate without a sync"
assert_eq "$(st alpha uuids.current)" "$(st beta uuids.current)" "current uuids"
bm alpha primary
repl_fio alpha --rw=randwrite --bs=64k --size=8M --offset=4M --iodepth=4 \
    --verify=crc32c --randseed=11
repl_wait_synced 30
for n in alpha beta; do
	assert_eq "$(st $n resync_bytes_shipped)" 0 "$n's resync_bytes_shipped"
	assert_eq "$(st $n resync_bytes_received)" 0 "$n's resync_bytes_received"
	assert_eq "$(st $n resync.total_bytes)" 0 "$n's resync.total_bytes"
done
repl_compare
msg "PASS"
