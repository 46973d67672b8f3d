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
# Last, strangers' failed handshakes while the link is down: they are
# counted, but neither slow this node's reconnects (back-off) nor become
# its last_error.

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

msg "== strangers' failed handshakes do not slow the reconnects"
# From here beta cannot connect to alpha (its SYNs to alpha's ports are
# dropped): only alpha's own attempts, every second, bring the link up.
_oneway_del()
{
	ip netns exec "$NS_beta" nft delete table inet bmtest_oneway 2>/dev/null
	return 0
}
ip netns exec "$NS_beta" nft -f - <<EOF || fail "nft: cannot block beta's connects"
table inet bmtest_oneway {
	chain output { type filter hook output priority 0; policy accept;
		ip daddr $IP_alpha tcp dport { $REPL_DATA_PORT, $((REPL_DATA_PORT + 1)) } drop; }
}
EOF
cleanup_fn _oneway_del
# Six strangers (from alpha's own namespace) fail their handshake on alpha
# while the link is up: each used to overwrite alpha's last_error and
# double its reconnect interval (up to 10 s, reset only by a link-up).
fails0=$(st alpha incoming_handshake_failures)
le0=$(st alpha peer.last_error)
for i in 1 2 3 4 5 6; do
	out=$(timeout 20 ip netns exec "$NS_alpha" python3 \
	    "$SRCDIR/tests/integration/repl_tool.py" garbage "$IP_alpha" "$REPL_DATA_PORT" \
	    random 2>&1) || fail "stranger $i: $out"
done
repl_wait1 alpha 5 "s['incoming_handshake_failures'] >= $fails0 + 6" \
    "alpha counts the strangers' failed handshakes"
assert_eq "$(st alpha peer.last_error)" "$le0" "alpha's last_error after the strangers"
# The link goes down: alpha tries again a second later and every second
# after that (it used to wait 10 s after its first try); beta not at all (nft).
repl_stop beta
repl_wait1 alpha 10 's["replication"] == "off"' "alpha sees beta gone"
sleep 1.5	# alpha's first attempt has failed and taken its next interval
repl_start beta
repl_wait_connected 7
_oneway_del
repl_wait_synced 30
repl_compare
msg "PASS"
