#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# A resync stopped on a live link (docs/replication.md, Resync, "Stopped
# on a live link"): a promoted sync target (beta) detaches its disk after
# a failed resync write; alpha, the source, stops its resync when beta's
# STATE says so, and the link stays up: beta, a diskless primary, is
# served by alpha.
#  1. Plain resync, alpha's sending slowed down so that megabytes of
#     RESYNC_DATA wait in its send queue when it stops.  Those frames used
#     to send from buffers the stopped resync had given back (and that the
#     next payload received could reuse: wrong bytes on the peer).  Under
#     AddressSanitizer (-Db_sanitize=address) alpha, with the epoll loop
#     (plain sendmsg, which the sanitizer checks), reported the use of a
#     freed buffer and aborted; the test sees the daemon gone.
#  2. csums = xxh3: the CSUM_REQUESTs that reach beta after its detach are
#     answered with an error, not with RESYNC_REQUESTs that the stopped
#     source took for a protocol error (the link went down and the diskless
#     primary lost its only data).

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"
requires qemu-io tc

M=$((1 << 20))

# no_asan_report NODE: NODE's daemon still runs and its log has no
# sanitizer report.
no_asan_report()
{
	local pid=PID_$1
	repl_log_has "$1" "AddressSanitizer|runtime error" &&
	    fail "$1's daemon reports a memory error (see its log)"
	pid_alive "${!pid}" || fail "$1's daemon died"
}

# target_detaches FAULT_OFFSET [ALPHA_ENV...]: fresh metadata, 0x21 in the
# first 64 KiB, the first 4 KiB of beta's disk changed behind its back;
# then a full resync alpha -> beta, paused while beta is promoted, during
# which beta's first write at FAULT_OFFSET (a resync write) fails.
target_detaches()
{
	local fault=$1 c0
	shift
	repl_create_md alpha --force
	repl_create_md beta --force
	repl_start alpha "$@"
	repl_start beta
	repl_wait_connected 20
	if [ "$*" = BLKMIRROR_NO_IO_URING=1 ]; then
		repl_log_has alpha "io_uring unavailable; event loop uses epoll" ||
		    fail "alpha does not run the epoll loop"
	fi
	bm alpha primary --force
	repl_wait_synced 60
	qemu_io alpha -c 'write -P 0x21 0 64k'
	bm alpha secondary
	repl_stop beta
	dd if=/dev/urandom of="$DISK_beta" bs=4096 count=1 oflag=direct conv=notrunc \
	    status=none || fail "dd on beta's disk"
	repl_start beta BLKMIRROR_FAULT="write:$fault-$((fault + 256 * 1024 - 1)):5:1"
	repl_wait_synced 30
	c0=$(st alpha connects)
	bm alpha pause-sync
	bm beta invalidate
	repl_wait 20 'a["replication"] == "paused-sync-source" and
	    b["replication"] == "paused-sync-target"' "a paused full resync alpha -> beta"
	bm beta primary
	repl_wait 20 'a["peer"]["role"] == "primary"' "beta primary"
	bm alpha resume-sync
	repl_wait 20 'b["disk"] == "diskless" and a["replication"] == "established"' \
	    "beta detached, alpha's resync stopped"
	sleep 2		# what was queued or on its way is sent and answered
	no_asan_report alpha
	no_asan_report beta
	assert_eq "$(st alpha connects)/$(st alpha connection)" "$c0/connected" \
	    "alpha's link after beta's detach"
	repl_log_has alpha "not in flight" && fail "alpha took a late answer for a protocol error"
	assert_eq "$(st beta role)/$(st beta detaches)" primary/1 "beta after its detach"
	qemu_io beta -r -c 'read -P 0x21 0 64k' -c "read -P 0 $((32 * M)) 1M"
	repl_stop alpha
	repl_stop beta
}

repl_setup 64M "timeout = 6s"

msg "== 1. RESYNC_DATA queued on the source when it stops"
# alpha's egress at 100 Mbit/s with small socket buffers: the resync's
# 8 MiB window waits in its own send queue.
ip netns exec "$NS_alpha" sysctl -qw net.ipv4.tcp_wmem="4096 16384 65536" ||
    fail "cannot set alpha's socket buffers"
ip netns exec "$NS_alpha" tc qdisc add dev "bmv$$a" root tbf rate 100mbit burst 32kbit \
    latency 400ms || fail "cannot slow down alpha's link"
target_detaches $((48 * M)) BLKMIRROR_NO_IO_URING=1
ip netns exec "$NS_alpha" tc qdisc del dev "bmv$$a" root

msg "== 2. csums: late CSUM_REQUESTs to a detached target"
repl_conf "timeout = 6s" "csums = xxh3"
target_detaches 0
msg "PASS"
