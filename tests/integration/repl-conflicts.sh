#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Many NBD connections write overlapping blocks at the same time: 8 fio
# jobs (one NBD connection each) with different random sequences over the
# same 4 MiB, partially overlapping block sizes, and 8 qemu-io processes
# whose asynchronous writes overlap each other.  Which write wins is racy,
# but the secondary must end with exactly the primary's bytes: overlapping
# writes are never in flight together and are applied in the same order.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"
requires fio qemu-io

repl_up 64M

for proto in sync async; do
	msg "== protocol $proto: 8 fio connections over the same 4 MiB"
	repl_stop alpha
	repl_stop beta
	repl_conf "protocol = $proto"
	repl_start alpha
	repl_start beta
	repl_wait_synced 30
	bm alpha primary
	repl_fio alpha --rw=randwrite --bsrange=4k-64k --blockalign=4k \
	    --offset=1M --size=4M --io_size=24M --iodepth=16 --numjobs=8 \
	    --randrepeat=0 --group_reporting
	repl_wait_synced 60
	repl_compare

	msg "== protocol $proto: 8 qemu-io processes, overlapping aio writes"
	pids=()
	for i in $(seq 8); do
		cmds=()
		for k in $(seq 0 15); do
			cmds+=(-c "aio_write -P $((i * 16 + k)) $(( (k * 12 + i * 4) ))k 64k")
		done
		cmds+=(-c aio_flush)
		timeout 120 qemu-io -f raw "$URI_alpha" "${cmds[@]}" \
		    >"$TESTDIR/qio.$i.out" 2>&1 &
		pids+=($!)
	done
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}" ||
		    fail "qemu-io $((i + 1)) failed: $(cat "$TESTDIR/qio.$((i + 1)).out")"
		if grep -Eqi 'error|fail' "$TESTDIR/qio.$((i + 1)).out"; then
			fail "qemu-io $((i + 1)): $(cat "$TESTDIR/qio.$((i + 1)).out")"
		fi
	done
	repl_wait_synced 60
	repl_compare
done
msg "PASS"
