#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# An authenticated peer that breaks the protocol (repl_evil_peer.py plays
# beta: it knows the secret and the volume, runs the real handshake and
# STATE exchange).  Each time alpha must take the link down with one log
# line naming what was wrong, keep running, lose no client write, and
# take a new connection afterwards:
#  1. FLUSH_ACK for a shipped WRITE (it must not complete the write as
#     flushed, nor clear the unflushed-writes bookkeeping);
#  2. WRITE_ACK whose status is not an errno (0x80000000);
#  3. seventeen VERIFY_REQUESTs of 4 MiB at once (68 MiB held for the
#     peer, over the 64 MiB bound);
#  4. with small socket buffers on alpha: a WRITE_ACK for a write whose
#     frame still waits in alpha's send queue behind a 1 MiB one (taken,
#     it would free the buffer the queued frame is sent from);
#  5. alpha secondary: DATA before any STATE (it must not reach the disk);
#  5b. a peer that sends PINGs and never reads their PING_ACKs: cut once
#     2^18 frames wait in alpha's send queue;
#  6. alpha secondary with its disk stalled: a primary that floods DATA
#     (300 MiB) is held back by TCP once 128 MiB wait in alpha's memory
#     (alpha stops reading), without a link drop, and gets the rest
#     through once the disk moves;
#  0. before all that, while alpha is in sync: a STATE announcing a resync
#     from the peer into alpha, an uptodate primary; a STATE whose epoch
#     is not its frame's; a WRITE_ACK on the data connection.
# Then the real beta connects, the writes made meanwhile are resynced and
# the disks end identical.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"

M=$((1 << 20))

# evil SCENARIO: run the fake beta against alpha; its output in $out.
evil()
{
	out=$(timeout 60 ip netns exec "$NS_beta" python3 \
	    "$SRCDIR/tests/integration/repl_evil_peer.py" \
	    --connect "$IP_alpha:$REPL_DATA_PORT" --secret "$TESTDIR/secret" \
	    --resource r0 --node beta --ctl "$SOCK_alpha" --nbd "$NBD_alpha" \
	    --scenario "$1" 2>&1) || fail "evil peer ($1): $out"
	msg "evil peer ($1): $(tr '\n' ';' <<<"$out")"
	pid_alive "$PID_alpha" || fail "alpha died ($1)"
	repl_log_has alpha "AddressSanitizer|runtime error" && fail "alpha reports a memory error ($1)"
	repl_wait1 alpha 20 's["connection"] != "connected"' "alpha's link down after $1"
}

repl_setup 64M
repl_start alpha BLKMIRROR_FAULT_FILE="$TESTDIR/fault.alpha"	# for part 6
repl_start beta
repl_wait_connected 20
bm alpha primary --force
repl_wait_synced 60
repl_stop beta
repl_wait1 alpha 20 's["connection"] != "connected"' "beta gone"

msg "== 0. a resync claimed into the primary, a bad epoch, an ack on data"
evil source-claim
assert_match "$out" "^disconnect: [0-9]+ the peer announced a resync into this uptodate primary$" \
    "alpha's DISCONNECT"
assert_eq "$(st alpha disk)/$(st alpha out_of_sync_bytes)" uptodate/0 "alpha after the claim"
evil state-epoch
assert_match "$out" "^disconnect: [0-9]+ STATE with epoch [0-9]+ \(frame epoch [0-9]+\)$" \
    "alpha's DISCONNECT"
evil ack-on-data
assert_match "$out" "^disconnect: [0-9]+ REPL_MSG_WRITE_ACK on the data connection$" \
    "alpha's DISCONNECT"

msg "== 1. FLUSH_ACK for a write"
evil flush-ack-for-write
assert_match "$out" "^disconnect: [0-9]+ peer sent REPL_MSG_FLUSH_ACK for sequence number 1, a write$" \
    "alpha's DISCONNECT"
assert_match "$out" "^write: 0$" "the client's write (completed locally, marked)"
repl_log_has alpha "peer sent REPL_MSG_FLUSH_ACK for sequence number 1, a write" ||
    fail "no log line for the FLUSH_ACK"

msg "== 2. a status that is not an errno"
evil bad-status
assert_match "$out" "^(disconnect: [0-9]+ .*WRITE_ACK.*|closed)$" "alpha's answer"
assert_match "$out" "^write: 0$" "the client's write"
repl_log_has alpha "WRITE_ACK.*(Invalid argument|invalid)" || fail "no log line for the bad WRITE_ACK"

msg "== 3. more verify ranges in flight than any source keeps"
evil verify-flood
assert_match "$out" "^disconnect: [0-9]+ REPL_MSG_VERIFY_REQUEST: the peer has more than 64 MiB of resync or verify ranges in flight$" \
    "alpha's DISCONNECT"

msg "== 4. WRITE_ACK for a frame still in alpha's send queue"
ip netns exec "$NS_alpha" sysctl -qw net.ipv4.tcp_wmem="4096 16384 65536" ||
    fail "cannot shrink alpha's socket buffers"
evil ack-unsent
ip netns exec "$NS_alpha" sysctl -qw net.ipv4.tcp_wmem="4096 16384 4194304"
re='peer sent REPL_MSG_WRITE_ACK for sequence number 2, never sent \(last sent ([0-9]+), last queued ([0-9]+)\)'
assert_match "$out" "^disconnect: [0-9]+ $re$" "alpha's DISCONNECT"
[[ $out =~ $re ]] || fail "no sequence numbers in: $out"
[ "${BASH_REMATCH[1]}" -lt 2 ] && [ "${BASH_REMATCH[2]}" -ge 2 ] ||
    fail "seq 2 was not queued-but-unsent: last sent ${BASH_REMATCH[1]}, last queued ${BASH_REMATCH[2]}"
assert_eq "$(grep -c '^write: 0$' <<<"$out")" 2 "both clients' writes"

msg "== 5. DATA from a peer that sent no STATE"
# The clients of part 4 have just closed: alpha may not have seen it yet.
for _ in $(seq 50); do
	[ "$(st alpha clients)" = 0 ] && break
	sleep 0.1
done
bm alpha secondary
evil data-no-state
repl_log_has alpha "peer sent REPL_MSG_DATA but is not primary \(no STATE yet on this link\)|REPL_MSG_DATA on a socket that is not part of the link" ||
    fail "no log line for the DATA"
[ "$(first_byte alpha 0)" != 66 ] || fail "the DATA reached alpha's disk"

msg "== 5b. a peer that does not read"
evil ping-flood
assert_eq "$out" closed "the fake peer's data connection"
repl_log_has alpha "the peer does not read: [0-9]+ frames wait to be sent" ||
    fail "no log line for the peer that does not read"

msg "== 6. a primary that writes faster than alpha's disk"
repl_fault alpha "write:*:stall"
rm -f "$TESTDIR/go"
timeout 200 ip netns exec "$NS_beta" python3 "$SRCDIR/tests/integration/repl_evil_peer.py" \
    --connect "$IP_alpha:$REPL_DATA_PORT" --secret "$TESTDIR/secret" --resource r0 \
    --node beta --ctl "$SOCK_alpha" --nbd "$NBD_alpha" --scenario data-flood \
    --go "$TESTDIR/go" >"$TESTDIR/flood.out" 2>&1 &
flood_pid=$!
cleanup_kill "$flood_pid"
for _ in $(seq 300); do
	grep -q "blocked" "$TESTDIR/flood.out" && break
	sleep 0.1
done
grep -q "^blocked: " "$TESTDIR/flood.out" || fail "the flood was not held back: $(cat "$TESTDIR/flood.out")"
held=$(st alpha applying_bytes)
msg "flood: $(head -n 1 "$TESTDIR/flood.out"); alpha holds $held bytes of the peer's writes"
assert_ge "$held" $((100 * M)) "bytes alpha holds"
[ "$held" -le $((128 * M + 2 * M)) ] || fail "alpha holds $held bytes, over the bound"
assert_ge "$(st alpha apply_holds)" 1 "apply_holds"
assert_eq "$(st alpha connection)" connected "alpha's link while held"
repl_fault alpha ""
: >"$TESTDIR/go"
wait "$flood_pid" || fail "the flood did not get through: $(cat "$TESTDIR/flood.out")"
assert_match "$(cat "$TESTDIR/flood.out")" "^sent: 300 MiB$" "the flood"
repl_wait1 alpha 30 's["applying_bytes"] == 0' "alpha applied the flood"
pid_alive "$PID_alpha" || fail "alpha died in the flood"

msg "== the real beta comes back"
bm alpha primary
repl_start beta
repl_wait_synced 60
# beta never saw the flood (alpha took it as a secondary, in sync): a full
# resync from alpha.
bm beta invalidate
repl_wait_synced 120
assert_eq "$(st alpha role)/$(st beta role)" primary/secondary "roles"
# The flood's last frame (i = 299) wrote 299 & 0xff at 8 + 299 % 48 = 19
# MiB, over the earlier frames to that MiB: applied in order.
qemu_io alpha -r -c "read -P 0x5c $M 4k" -c "read -P 0x71 $((2 * M)) 1M" \
    -c "read -P 0x72 $((4 * M)) 4k" -c "read -P 0x2b $((19 * M)) 1M"
repl_compare
msg "PASS"
