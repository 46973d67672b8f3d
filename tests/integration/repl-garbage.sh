#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Hostile input on the replication ports.  While the nodes mirror a write
# workload, connections from inside the other node's namespace send random
# bytes, a frame header announcing an oversize body (valid check), and a
# header with a bad check, to both ports (data and meta) of both nodes.
# The daemons stay up and answer status, the existing link stays (or comes
# back), the workload completes, and the disks end identical.  Then the
# handshake bound (twice the timeout): a connection that says nothing is
# closed by the daemon, and a peer that accepts but never answers does not
# stop the node from connecting again.  Last, a write frame with a wrong
# sequence number from the authenticated peer: the link drops and recovers.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"
requires fio

repl_up 64M

repl_fio_bg alpha --rw=randwrite --bs=4k --offset=8M --size=16M --iodepth=4 \
    --time_based --runtime=15 --rate_iops=200 --randseed=8
for target in beta alpha; do
	from=$(_repl_other "$target")
	ns=NS_$from
	ip=IP_$target
	for port in "$REPL_DATA_PORT" $((REPL_DATA_PORT + 1)); do
		for kind in random oversize badcheck; do
			out=$(timeout 20 ip netns exec "${!ns}" python3 \
			    "$SRCDIR/tests/integration/repl_tool.py" garbage "${!ip}" \
			    "$port" "$kind" 2>&1) ||
			    fail "sending $kind to $target:$port failed: $out"
			msg "$out"
			for n in alpha beta; do
				pid=PID_$n
				pid_alive "${!pid}" || fail "$n died after $kind on $target:$port"
			done
			st "$target" role >/dev/null
		done
	done
done
# The garbage connections were dropped and said why.
for n in alpha beta; do
	repl_log_has "$n" "bad frame header|malformed|handshake|oversize" ||
	    fail "$n's log has no line about the bad input"
done
repl_fio_wait
repl_wait_synced 60
assert_eq "$(st alpha role)/$(st beta role)" "primary/secondary" "roles after the garbage"
msg "connects: alpha $(st alpha connects), beta $(st beta connects)"
repl_compare

msg "== silent connections are closed after twice the timeout (2 s here)"
before=$(st beta handshake_timeouts)
out=$(timeout 40 ip netns exec "$NS_alpha" python3 "$SRCDIR/tests/integration/repl_tool.py" \
    garbage "$IP_beta" "$REPL_DATA_PORT" silent 2>&1) || fail "silent connection: $out"
msg "$out"
secs=$(sed -n 's/.*closed by the daemon after \([0-9]*\)\..*/\1/p' <<<"$out")
[ -n "$secs" ] && [ "$secs" -ge 3 ] && [ "$secs" -le 10 ] ||
    fail "the silent connection was closed after '$secs' s, expected 4 s"
repl_wait1 beta 5 "s['handshake_timeouts'] > $before" "beta counts the handshake timeout"
repl_log_has beta "handshake not finished within 4000 ms" ||
    fail "beta's log does not say why it closed the silent connection"

msg "== a peer that accepts and hangs: the node closes and connects again"
repl_stop beta
out=$(timeout 40 ip netns exec "$NS_beta" python3 "$SRCDIR/tests/integration/repl_tool.py" \
    hang-listen "$IP_beta" "$REPL_DATA_PORT" 15 2>&1) || fail "hang-listen: $out"
read -r accepted closed <<<"$out"
msg "the hanging listener saw $accepted connection(s), $closed closed by alpha"
[ "$closed" -ge 2 ] || fail "alpha kept a hanging handshake open ($out)"
repl_log_has alpha "handshake not finished" || fail "alpha's log has no handshake timeout"
repl_start beta
repl_wait_synced 60
repl_compare

msg "== an authenticated peer with a wrong write sequence number"
# alpha's 200th write frame carries sequence number + 1 (a test setting):
# beta drops the link at the gap, alpha marks what was in flight, the link
# comes back and the resync settles it; no client write fails.
repl_stop alpha
repl_start alpha BLKMIRROR_TEST_SEQ_GAP=200
repl_wait_synced 30
bm alpha primary
c0=$(st beta connects)
repl_fio alpha --rw=randwrite --bs=4k --offset=40M --size=8M --iodepth=8 \
    --number_ios=600 --verify=crc32c --randseed=12
repl_log_has beta "peer sent (REPL_MSG_)?DATA with sequence number [0-9]+, expected [0-9]+" ||
    fail "beta's log does not name the sequence gap"
repl_wait_synced 60
[ "$(st beta connects)" -gt "$c0" ] || fail "the link did not go down and come back"
repl_compare
msg "PASS"
