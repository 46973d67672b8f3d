#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Each replication protocol (sync, memsync, async) under a random-write fio
# workload with crc32c verification on the primary, then TRIM and
# WRITE_ZEROES; once the nodes are in sync again (nothing pending, no lag)
# both disks are identical.  Then the
# roles swap (alpha secondary, beta primary) and a second workload flows the
# other way.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"
requires fio qemu-io

repl_up 96M

seed=1
for proto in sync memsync async; do
	msg "== protocol $proto"
	repl_stop alpha
	repl_stop beta
	repl_conf "protocol = $proto"
	repl_start alpha
	repl_start beta
	repl_wait_synced 30
	assert_eq "$(st alpha protocol)/$(st beta protocol)" "$proto/$proto" "protocol"
	bm alpha primary
	assert_eq "$(st beta peer.role)" primary "beta's view of alpha"
	repl_fio alpha --rw=randwrite --bsrange=4k-128k --blockalign=4k --size=64M \
	    --iodepth=16 --verify=crc32c --randseed=$((seed++))
	# A second job: small sequential writes with FUA-free flushes in between.
	repl_fio alpha --rw=write --bs=8k --offset=70M --size=8M --iodepth=4 \
	    --fsync=16 --verify=crc32c
	# TRIM and WRITE_ZEROES (with and without unmap) replicate too.
	out=$(timeout 60 qemu-io -f raw "$URI_alpha" -c 'write -P 0x33 80M 4M' \
	    -c 'discard 80M 1M' -c 'write -z 81M 1M' -c 'write -z -u 82M 1M' \
	    -c 'read -P 0 80M 3M' -c 'read -P 0x33 83M 1M' -c flush 2>&1) ||
	    fail "qemu-io trim/zero on alpha: $out"
	if grep -Eqi 'fail|error|mismatch' <<<"$out"; then
		fail "qemu-io trim/zero on alpha: $out"
	fi
	repl_wait_synced 60
	assert_ge "$(st alpha bytes_sent)" $((64 << 20)) "alpha's bytes_sent"
	repl_compare

	msg "== protocol $proto, roles swapped"
	bm alpha secondary
	bm beta primary
	repl_fio beta --rw=randwrite --bs=16k --offset=8M --size=16M --iodepth=8 \
	    --verify=crc32c --randseed=$((seed++))
	repl_wait_synced 60
	repl_compare
	bm beta secondary
	bm alpha primary
done

# The page cache on both nodes with the loop-thread writes and busy
# polling (blkmirror.conf(5)): the same data flows, both loops write
# inline (beta applies alpha's writes so too) and alpha polls, its waits
# for beta's acknowledgements judged apart from its waits for fio.
msg "== protocol sync, direct-io = no, inline-writes = yes, busy-poll = 50us"
repl_stop alpha
repl_stop beta
repl_conf "protocol = sync" "direct-io = no" "inline-writes = yes" \
    "busy-poll = 50us"
repl_start alpha
repl_start beta
repl_wait_synced 30
bm alpha primary
repl_fio alpha --rw=randwrite --bsrange=4k-64k --blockalign=4k --size=64M \
    --iodepth=16 --verify=crc32c --randseed=$((seed++))
repl_fio alpha --rw=randwrite --bs=4k --size=8M --iodepth=1 \
    --verify=crc32c --randseed=$((seed++))
repl_wait_synced 60
for n in alpha beta; do
	assert_eq "$(st $n direct_io)" false "$n's direct_io"
	assert_eq "$(st $n loop.busy_poll_us)" 50 "$n's busy_poll_us"
	# a write slower than 1 ms (a loaded host) sends the next
	# second's writes to io_uring: many inline only without that
	msg "$n: inline_writes $(st $n loop.inline_writes)" \
	    "backoffs $(st $n loop.inline_write_backoffs)" \
	    "busy_polls $(st $n loop.busy_polls)"
	assert_ge "$(st $n loop.inline_writes)" 1 "$n's inline writes"
	if [ "$(st $n loop.inline_write_backoffs)" = 0 ]; then
		assert_ge "$(st $n loop.inline_writes)" 100 \
		    "$n's inline writes without a back-off"
	fi
done
assert_ge "$(st alpha loop.busy_polls)" 1 "alpha's busy polls"
repl_compare
msg "PASS"
