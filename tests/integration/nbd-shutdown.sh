#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Soft shutdown: what NBD clients sent before the daemon stops is answered.
# nbd_shutdown.py (raw sockets) stalls the disk's writes with the fault
# injection, pipelines more requests than NBD_MAX_INFLIGHT on three
# connections, queues requests and options on others while the daemon is
# SIGSTOPped with a SIGTERM pending, then lets it stop.  Requests started
# get their real replies; every complete request not started gets
# NBD_ESHUTDOWN and is not executed (the disk file is checked), options get
# NBD_REP_ERR_SHUTDOWN (ABORT its ACK); nothing after NBD_CMD_DISC or of an
# incomplete request is answered; the log has one close line per
# connection with the count.  Run with the io_uring loop and with the epoll
# one (BLKMIRROR_NO_IO_URING=1); the daemon must exit 0 each time.

source "$SRCDIR/tests/functions.sh"
requires python3

# The driver SIGSTOPs the daemon: never leave it stopped (the daemon is
# ours and not yet reaped while driven is set).
driven=
resume_daemon()
{
	[ -z "$driven" ] || kill -CONT "$driven" 2>/dev/null
	return 0
}
cleanup_fn resume_daemon

export BLKMIRROR_FAULT_FILE=$TESTDIR/fault
: >"$BLKMIRROR_FAULT_FILE"
make_disk "$TESTDIR/disk.img" 64M

for loop in io_uring epoll; do
	msg "== $loop loop"
	if [ "$loop" = epoll ]; then
		export BLKMIRROR_NO_IO_URING=1
	fi
	standalone_conf "$TESTDIR/$loop.conf" "$TESTDIR/disk.img" io_uring 4096 "$(free_port)"
	start_daemon "$TESTDIR/$loop.conf"
	driven=$DAEMON_PID
	TCP=${NBD_TCP_URI#nbd://}
	TCP=${TCP%/*}
	timeout 120 python3 "$SRCDIR/tests/integration/nbd_shutdown.py" \
	    --unix "$NBD_SOCK" --tcp "$TCP" --export "$RES" --pid "$DAEMON_PID" \
	    --log "$DAEMON_LOG" --ctl "$CTL_SOCK" \
	    --fault-file "$BLKMIRROR_FAULT_FILE" --disk "$TESTDIR/disk.img" ||
	    { _show_log "$DAEMON_LOG"; fail "nbd_shutdown.py failed ($loop loop)"; }
	# The driver sent SIGTERM: the daemon must have exited 0.
	wait_daemon_exit "$DAEMON_PID"
	driven=
	log_has "shutting down: SIGTERM" || fail "no shutdown line in the log"
	log_has "refused with NBD_ESHUTDOWN" || fail "no ESHUTDOWN summary line"
	if [ "$loop" = epoll ]; then
		log_has "io_uring unavailable; event loop uses epoll" ||
		    fail "the epoll run did not run the epoll loop"
	fi
	unset BLKMIRROR_NO_IO_URING
done
msg "PASS"
