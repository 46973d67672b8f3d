#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Every kind of bad NBD input (nbd_evil.py, raw sockets), in structured-reply
# mode and in simple-reply mode.  Each case asserts the spec's error reply or
# a clean close, a log line about it, and that a second, well-behaved client
# still writes and reads back.  Clients that pipeline 32 MiB READs and
# never read the replies may not take the daemon's VmRSS past 512 MiB; a
# connection that dies with its replies stuck must be let go at once (both
# checked through the control socket and /proc); while such clients hold
# every buffer, a new client's 4 KiB requests are answered at once, and
# the hoarders are shut down once their sends stay stuck while others wait
# for memory, also those that already sent NBD_CMD_DISC (closing, their
# replies still unread).  At the end the daemon
# must still answer status, have counted the rejected requests, and shut
# down cleanly.

source "$SRCDIR/tests/functions.sh"
requires python3

# Under AddressSanitizer freed buffers sit in its quarantine (256 MiB by
# default), which VmRSS counts: keep it small so that the 512 MiB bound on
# clients hoarding READs measures the daemon, not the sanitizer.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=32"

# Sends stuck for 8 s (not 30) are cut while others wait for memory, so
# that the starved-pool case sees it happen.
export BLKMIRROR_TEST_SEND_STUCK_S=8

make_disk "$TESTDIR/disk.img" 64M
standalone_conf "$TESTDIR/r0.conf" "$TESTDIR/disk.img" io_uring 4096 "$(free_port)"
start_daemon "$TESTDIR/r0.conf"
TCP=${NBD_TCP_URI#nbd://}
TCP=${TCP%/*}

# evil MODE TRANSPORT [--case NAME...]: one nbd_evil.py run.
failed=
evil()
{
	local mode=$1 transport=$2 where
	shift 2
	if [ "$transport" = tcp ]; then
		where=(--tcp "$TCP")
	else
		where=(--unix "$NBD_SOCK")
	fi
	msg "nbd_evil.py --mode $mode over $transport $*"
	timeout 600 python3 "$SRCDIR/tests/integration/nbd_evil.py" \
	    "${where[@]}" --export "$RES" --pid "$DAEMON_PID" \
	    --log "$DAEMON_LOG" --ctl "$CTL_SOCK" --mode "$mode" \
	    --stuck-limit "$BLKMIRROR_TEST_SEND_STUCK_S" "$@" ||
	    failed="$failed $mode/$transport"
}

# Every case in both reply modes, one over UNIX and one over TCP; the cases
# where a vanishing client matters again in the other combination (a TCP
# reset is not a UNIX socket's close).
evil structured unix
pid_alive "$DAEMON_PID" && evil simple tcp
pid_alive "$DAEMON_PID" && evil structured tcp --case vanish-mid-payload \
    --case reset-during-reads --case abort-and-vanish --case many-idle
pid_alive "$DAEMON_PID" && evil simple unix --case vanish-mid-payload \
    --case reset-during-reads --case oversize-payload
[ -z "$failed" ] || fail "bad-input cases failed in:$failed"

pid_alive "$DAEMON_PID" || fail "daemon died"
js=$(ctl status --json) || fail "status does not answer after the bad input"
assert_eq "$(jget "$js" resource)" "$RES" "status resource"
# Hundreds of clients came and went; none may be left over.
for i in $(seq 50); do
	[ "$(jget "$js" clients)" = 0 ] && break
	sleep 0.1
	js=$(ctl status --json) || fail "status failed"
done
assert_eq "$(jget "$js" clients)" 0 "clients connected after the test"
assert_ge "$(jget "$js" clients_total)" 900 "clients_total"
assert_ge "$(jget "$js" ops.rejected)" 20 "requests rejected by validation"

# A TCP client gets keepalive probes (a client host that dies is noticed
# in 2 minutes): the accepted socket has the keepalive timer, at 60 s.
exec {tcpfd}<>"/dev/tcp/${TCP%:*}/${TCP##*:}" || fail "cannot connect to $TCP"
out=
for i in $(seq 50); do
	# (listed before the daemon accepted it, without the timer yet)
	out=$(ss -tnoH state established "( sport = :${TCP##*:} )")
	grep -Eq "timer:\(keepalive,(5[0-9]sec|60sec|1min)" <<<"$out" && break
	sleep 0.1
done
exec {tcpfd}>&-
assert_match "$out" "timer:\(keepalive,(5[0-9]sec|60sec|1min)" \
    "the server side of a TCP connection (ss -o)"

stop_daemon
