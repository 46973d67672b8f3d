#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Disk errors reach NBD clients as NBD errors, with every io engine:
# BLKMIRROR_FAULT="op:start-end:errno:count" makes the first COUNT matching
# disk requests fail.  A failed write or read is answered with EIO, other
# requests are untouched, the fault wears off after COUNT hits, the daemon
# counts and logs the errors and still shuts down cleanly.  A failing
# lseek(SEEK_DATA) makes BLOCK_STATUS report data, not a hole.

source "$SRCDIR/tests/functions.sh"
requires qemu-io

# qio_fails ARGS...: qemu-io must fail with an I/O error.
qio_fails()
{
	local out
	if out=$(timeout 60 qemu-io -f raw "$NBD_URI" "$@" 2>&1); then
		fail "qemu-io $* succeeded despite the injected fault: $out"
	fi
	assert_match "$out" "Input/output error" "qemu-io $*"
}

# qio_ok ARGS...: qemu-io must succeed (patterns verified).
qio_ok()
{
	local out
	out=$(timeout 60 qemu-io -f raw "$NBD_URI" "$@" 2>&1) ||
	    fail "qemu-io $* failed: $out"
	if grep -Eiq 'fail|error' <<<"$out"; then
		fail "qemu-io $*: $out"
	fi
}

make_disk "$TESTDIR/disk.img" 32M
for engine in io_uring libaio sync; do
	msg "== engine $engine: write faults"
	standalone_conf "$TESTDIR/$engine.conf" "$TESTDIR/disk.img" "$engine" 4096
	start_daemon_cmd "$CTL_SOCK" "" env BLKMIRROR_FAULT="write:0-1048575:5:2" \
	    "$BLKMIRRORD" -c "$TESTDIR/$engine.conf" -n alpha -f
	qio_ok -c 'write -P 0x21 2M 64k' -c 'read -P 0x21 2M 64k'
	qio_fails -c 'write -P 0x22 0 4k'
	qio_fails -c 'write -P 0x22 64k 4k'
	qio_ok -c 'write -P 0x23 0 64k' -c 'read -P 0x23 0 64k'	# worn off
	qio_ok -c 'read -P 0x21 2M 64k'
	assert_ge "$(status_field ops.errors)" 2 "ops.errors"
	log_has "(error|EIO|Input/output)" || fail "no log line about the disk error"
	stop_daemon

	msg "== engine $engine: read faults"
	start_daemon_cmd "$CTL_SOCK" "" env BLKMIRROR_FAULT="read:1048576-2097151:5:1" \
	    "$BLKMIRRORD" -c "$TESTDIR/$engine.conf" -n alpha -f
	qio_fails -c 'read 1M 4k'
	qio_ok -c 'read -P 0x23 0 64k' -c 'read -P 0x21 2M 64k' -c 'read 1M 4k'
	assert_ge "$(status_field ops.errors)" 1 "ops.errors"
	stop_daemon
done

# lseek(SEEK_DATA) failing with anything but ENXIO ("seek" faults): the
# range is answered as data, never as a hole, which copy tools would skip.
if command -v nbdinfo >/dev/null 2>&1; then
	msg "== BLOCK_STATUS with SEEK_DATA failing"
	standalone_conf "$TESTDIR/io_uring.conf" "$TESTDIR/disk.img" io_uring 4096
	start_daemon_cmd "$CTL_SOCK" "" env BLKMIRROR_FAULT="seek:*:5" \
	    "$BLKMIRRORD" -c "$TESTDIR/io_uring.conf" -n alpha -f
	qio_ok -c 'write -P 0x24 4M 1M' -c 'read -P 0x24 4M 1M'
	map=$(timeout 60 nbdinfo --map "$NBD_URI") || fail "nbdinfo --map failed"
	msg "map: $(tr '\n' ';' <<<"$map")"
	[ -n "$map" ] || fail "nbdinfo --map printed nothing"
	# offset length type description: no extent may call [4M, 5M) a hole.
	holes=$(awk '$1 < 5242880 && $1 + $2 > 4194304 && $3 % 2 == 1' <<<"$map")
	[ -z "$holes" ] || fail "written data reported as a hole: $holes"
	log_has "lseek\(SEEK_DATA\).*failed.*reported as data" ||
	    fail "no log line about the failed lseek"
	stop_daemon
else
	msg "nbdinfo missing: BLOCK_STATUS with failing lseek not checked"
fi
msg "PASS"
