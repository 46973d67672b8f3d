#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Roles by hand (issue 3, point 6) and the rule that only the primary
# serves clients:
#  - a secondary refuses NBD clients ("not primary");
#  - 'primary' is refused while the peer is primary;
#  - 'secondary' is refused while NBD clients are connected;
#  - a primary that loses its role while a client stays connected (here: it
#    sees the higher epoch of a peer that was forced primary meanwhile)
#    must not complete that client's later writes as if it were still
#    primary: no write may reach one disk only while both nodes report
#    themselves in sync;
#  - a client that connected to the secondary and sends its GO after the
#    node was promoted is served (the refusal is read at GO time).
# At the end the disks are identical.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"
requires qemu-io

repl_up 64M

msg "== one primary at a time, clients only on the primary"
out=$(bm_fails beta primary)
assert_match "$out" "the peer is primary" "refusal of a second primary"
out=$(bm_fails beta primary --force)
assert_match "$out" "the peer is primary" "refusal of a second primary with --force"
if out=$(timeout 20 qemu-io -f raw "$URI_beta" -c 'write -P 0x5a 0 4k' 2>&1); then
	fail "secondary beta accepted an NBD write: $out"
fi
assert_match "$out" "not primary" "NBD refusal on the secondary"

# wait_ready PID OUT WHAT: the background client PID (output in OUT) said
# "ready" within 10 s; it is killed at the end of the test.
wait_ready()
{
	cleanup_kill "$1"
	for _ in $(seq 100); do
		grep -q ready "$2" && return 0
		sleep 0.1
	done
	fail "$3 did not connect: $(cat "$2")"
}

msg "== 'secondary' with a client connected"
hold=$TESTDIR/hold.out
repl_tool nbd-hold "$NBD_alpha" r0 "$TESTDIR/go" $((2 << 20)) >"$hold" 2>&1 &
holdpid=$!
wait_ready "$holdpid" "$hold" "the holding client"
out=$(bm_fails alpha secondary)
assert_match "$out" "client" "refusal to demote with a client connected"
assert_eq "$(st alpha role)" primary "alpha after the refused demotion"

msg "== the primary loses its role while the client stays connected"
bm alpha disconnect
bm beta disconnect
bm beta primary --force
repl_tool nbd-write "$NBD_beta" r0 $((8 << 20)) 4096 51 || fail "write on beta failed"
bm beta secondary
bm alpha connect
bm beta connect
repl_wait_connected 20
repl_wait 30 'a["replication"] == "established" and b["replication"] == "established"' \
    "established after the reconnect"
msg "alpha is $(st alpha role) with $(st alpha clients) client(s); beta is $(st beta role)"
: >"$TESTDIR/go"
wait "$holdpid" || fail "holding client: $(cat "$hold")"
res=$(tail -n 1 "$hold")
msg "the held connection's write after the role change: $res"
# beta's promotion raised the epoch: alpha steps down when the link comes
# back, and its client's requests after that are refused with NBD_EPERM
# (1), the connection kept.
assert_eq "$(st alpha role)" secondary "alpha's role after meeting the newer primary"
assert_eq "$res" "write=1 flush=1" "the held connection's write and flush on secondary alpha"
repl_wait_synced 30
repl_compare

msg "== a client in the handshake on the secondary, which is promoted before its GO"
[ "$(st alpha role)" = primary ] || bm alpha primary
late=$TESTDIR/late.out
repl_tool nbd-late-go "$NBD_beta" r0 "$TESTDIR/go-late" >"$late" 2>&1 &
latepid=$!
wait_ready "$latepid" "$late" "the late client"
bm alpha secondary
bm beta primary
: >"$TESTDIR/go-late"
wait "$latepid" || fail "late client: $(cat "$late")"
assert_eq "$(tail -n 1 "$late")" ok "GO on beta after its promotion"
repl_wait_synced 30
repl_compare
msg "PASS"
