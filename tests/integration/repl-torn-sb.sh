#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# A torn superblock write: with a node stopped, the slot holding its newest
# superblock (dump-md: active-slot) gets a corrupt sector, as a write torn
# by a power cut would leave it.  dump-md then reports that slot invalid
# and the other (previous) slot active; the daemon starts from the other
# slot, rewrites the torn one, connects and mirrors again.  Done for the
# secondary, then for the primary.  Last, both slots of beta damaged: no
# tool takes that for "no metadata"; create-md --force and a full resync
# recover it.  The disks end identical.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"
requires fio

repl_up 64M
repl_fio alpha --rw=randwrite --bs=4k --size=8M --iodepth=8 --verify=crc32c --randseed=1
repl_wait_synced 30

# md NODE KEY: one "key: value" line of NODE's dump-md.
md()
{
	local out
	out=$("$BLKMIRRORCTL" -c "$CONF" -n "$1" dump-md 2>&1) || fail "dump-md $1: $out"
	sed -n "s/^$2: //p" <<<"$out"
}

for node in beta alpha; do
	msg "== torn superblock on $node"
	was=$(st "$node" role)
	repl_stop "$node"
	slot=$(md "$node" active-slot)
	seq=$(md "$node" sequence)
	read -r off_a off_b <<<"$(md "$node" sb-offsets)"
	[ "$slot" = a ] && off=$off_a other=b || off=$off_b other=a
	assert_match "$(md "$node" "slot-$other")" "^valid" "$node's older slot $other"
	msg "$node: newest superblock in slot $slot (sequence $seq) at $off; tearing it"
	disk=DISK_$node
	dd if=/dev/urandom of="${!disk}" bs=512 seek=$(((off + 512) / 512)) count=1 \
	    oflag=direct conv=notrunc status=none || fail "dd on $node's superblock"
	assert_match "$(md "$node" "slot-$slot")" "checksum mismatch" "torn slot $slot"
	assert_eq "$(md "$node" active-slot)" "$other" "$node's active slot after the tear"
	[ "$(md "$node" sequence)" -lt "$seq" ] || fail "slot $other is not the older superblock"
	repl_start "$node"
	repl_wait_connected 20
	[ "$was" = primary ] && bm "$node" primary
	repl_wait_synced 60
	assert_match "$(md "$node" "slot-$slot")" "^valid" "$node's slot $slot after the restart"
	assert_eq "$(st alpha role)" primary "alpha's role"
	repl_compare
done
repl_fio alpha --rw=randwrite --bs=4k --size=8M --offset=16M --iodepth=8 \
    --verify=crc32c --randseed=2
repl_wait_synced 30
repl_compare

msg "== both superblock slots damaged on beta"
# Damaged metadata is not "no metadata": dump-md, the daemon and create-md
# without --force all refuse; create-md --force makes a full resync target.
repl_stop beta
read -r off_a off_b <<<"$(md beta sb-offsets)"
for off in "$off_a" "$off_b"; do
	dd if=/dev/urandom of="$DISK_beta" bs=512 seek=$(((off + 512) / 512)) count=1 \
	    oflag=direct conv=notrunc status=none || fail "dd on beta's superblock"
done
out=$("$BLKMIRRORCTL" -c "$CONF" -n beta dump-md 2>&1) && fail "dump-md of damaged metadata succeeded"
assert_match "$out" "both superblock slots on .* are damaged" "dump-md's refusal"
assert_match "$out" "slot-a: invalid: checksum mismatch" "dump-md's slot a"
out=$(timeout 30 ip netns exec "$NS_beta" "$BLKMIRRORD" -c "$CONF" -n beta -f 2>&1)
assert_refused $? 78 "$out" "blkmirrord on damaged metadata"
assert_match "$out" "both superblock slots on .* are damaged" "blkmirrord's refusal"
out=$("$BLKMIRRORCTL" -c "$CONF" -n beta create-md 2>&1) && fail "create-md overwrote damaged metadata"
assert_match "$out" "superblock slots are both damaged .*--force overwrites it" "create-md's refusal"
repl_create_md beta --force
repl_start beta
repl_wait_synced 60
repl_compare
msg "PASS"
