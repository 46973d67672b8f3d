#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# ko-count drops a peer whose disk stalls while it keeps answering pings,
# in async and memsync too (docs/replication.md, "Heartbeat, timeouts and
# reconnect").  There a write completes to the client before the peer's
# disk has it (async: frame sent; memsync: RECV_ACK) and then waits only
# for the peer's WRITE_ACK; its age counts against timeout x ko-count as
# in sync.  Beta's writes are held by the io engine's "stall" fault
# (BLKMIRROR_FAULT_FILE, SIGUSR1), not failed: beta's daemon runs on.
#  1. async, on-congestion = block: once the lag reaches max-lag-bytes the
#     client's writes park; alpha drops the link within timeout x ko-count
#     (plus slack), the parked writes complete (degraded, marked).
#     Unstalled, beta catches up by a resync.
#  2. memsync: the writes complete (RECV_ACK) but WRITE_ACKs never come;
#     alpha drops the link the same way.  Beta is then stopped while still
#     stalled: it releases the held writes and exits cleanly; restarted,
#     it catches up.
#  4. resync: beta's disk stalls under the resync's writes while beta
#     answers pings; alpha (the sync source) drops the link for ko-count
#     instead of waiting for ever.  Unstalled, the resync finishes.
#  5. verify: beta's reads stall; alpha drops the link the same way.
#  6. a diskless primary (alpha detached after a write error) reads from
#     beta, whose reads stall: alpha drops the link for ko-count and the
#     client's read fails (EIO) instead of hanging; back up, reads work.
#  7. async, beta's disk stalled: alpha is demoted with writes beta has not
#     confirmed; the demotion settles only once they are (status
#     "demoting", the superblock keeps the primary flag so that a crash
#     would replay the activity log, beta still sees a primary and cannot
#     be promoted); unstalled, it settles and beta can take over.
# 7b. The same, but the link drops while the demotion waits: the writes
#     beta may lack take a new generation on alpha, as for a primary
#     (else equal generations would leave the resync direction to the
#     node ids), and the demotion settles once their marks are durable.
# 7c. sync, alpha's own flushes stalled: the superblock that ends the
#     demotion follows a flush of alpha's data device (what alpha wrote
#     may still be in a volatile cache), so the demotion waits for it.
# Both disks end identical.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"

TIMEOUT_S=2
KO_COUNT=3
KO_S=$((TIMEOUT_S * KO_COUNT))
SLACK_S=6
KO_LINE="peer did not complete a write within timeout x ko-count"

# ms_since T0: milliseconds since T0 (date +%s%N).
ms_since()
{
	echo $((($(date +%s%N) - $1) / 1000000))
}

# start_pair PROTOCOL [--force]: both daemons (beta with a fault file),
# alpha primary, in sync.
start_pair()
{
	repl_conf "protocol = $1" "timeout = ${TIMEOUT_S}s" "ko-count = $KO_COUNT" \
	    "max-lag-bytes = 256K" "on-congestion = block"
	repl_start alpha
	repl_start beta BLKMIRROR_FAULT_FILE="$TESTDIR/fault.beta"
	repl_wait_connected 20
	bm alpha primary ${2:+"$2"}
	repl_wait_synced 60
}

# ko_lines LINE: how many times alpha's log shows "link down: LINE".
ko_lines()
{
	grep -Eci -- "link down: $1" "$LOG_alpha" || true
}

# wait_ko WHAT LINE: alpha's log shows "link down: LINE" once more than
# KO0 times within timeout x ko-count (plus slack) of T0, and not much
# before.
wait_ko()
{
	local elapsed
	until [ "$(ko_lines "$2")" -gt "$KO0" ]; do
		elapsed=$(ms_since "$T0")
		[ "$elapsed" -le $(((KO_S + SLACK_S) * 1000)) ] ||
		    fail "alpha kept the link to a peer stalled under $1 for $elapsed ms"
		sleep 0.2
	done
	elapsed=$(ms_since "$T0")
	msg "alpha dropped the peer stalled under $1 after $elapsed ms"
	[ "$elapsed" -ge $(((KO_S - 1) * 1000)) ] ||
	    fail "alpha dropped the link after $elapsed ms, before timeout x ko-count"
	repl_log_has alpha "peer silent" && fail "alpha saw beta silent: pings stopped"
	return 0
}

# stalled_writes BASE: beta's disk stalls, alpha takes 1 MiB of numbered
# 4 KiB writes from BASE MiB (ack list $TESTDIR/acks.BASE); they must
# complete and alpha must drop the link for ko-count, not before and not
# much after timeout x ko-count.
stalled_writes()
{
	local qpid elapsed rc=0
	repl_fault beta "write:*:stall"
	KO0=$(ko_lines "$KO_LINE")
	T0=$(date +%s%N)
	# No FLUSH (qemu-io sends one at exit): in memsync it would wait in
	# the pending list, which ko-count judged before; the writes alone must.
	timeout 60 python3 "$SRCDIR/tests/integration/repl_tool.py" nbd-seq "$NBD_alpha" r0 \
	    "$TESTDIR/acks.$1" $(($1 * 1048576)) 256 16 >"$TESTDIR/q.out" 2>&1 &
	qpid=$!
	cleanup_kill "$qpid"
	wait_ko "writes" "$KO_LINE"
	wait "$qpid" || rc=$?
	assert_eq "$(cat "$TESTDIR/q.out")" "nbd-seq: 256 writes acknowledged" "nbd-seq (exit $rc)"
	elapsed=$(ms_since "$T0")
	[ "$elapsed" -le $(((KO_S + SLACK_S) * 1000)) ] ||
	    fail "the writes took $elapsed ms"
	# Beta wrote nothing: alpha holds the writes as out of sync.
	assert_ge "$(st alpha out_of_sync_bytes)" 1048576 "alpha's out-of-sync bytes"
	assert_eq "$(st alpha role)" primary "alpha's role"
}

repl_setup 64M

msg "== 1. async, on-congestion = block: parked writes go on after the drop"
start_pair async --force
w0=$(st alpha congestion_waits)
stalled_writes 8
[ "$(st alpha congestion_waits)" -gt "$w0" ] ||
    fail "no write waited for the lag (congestion_waits): the test proves nothing"
repl_fault beta ""
repl_wait_synced 60
repl_tool nbd-check "$NBD_alpha" r0 "$TESTDIR/acks.8" $((8 << 20)) || fail "alpha lost writes"
repl_compare
repl_stop alpha
repl_stop beta

msg "== 2. memsync: WRITE_ACKs never come; a stopped beta releases its writes"
start_pair memsync
stalled_writes 16
repl_stop beta
grep -Eq "releasing [0-9]+ stalled request" "$LOG_beta" ||
    fail "beta's log does not show the stalled writes released at shutdown"
repl_start beta
repl_wait_synced 60
repl_tool nbd-check "$NBD_alpha" r0 "$TESTDIR/acks.16" $((16 << 20)) || fail "alpha lost writes"
repl_compare
repl_stop alpha
repl_stop beta

msg "== 3. sync: the peer's flushes hang: one FLUSH of alpha's own at a time, then the drop"
start_pair sync
repl_fault beta "flush:*:stall"
f0=$(st alpha peer_flushes)
T0=$(date +%s%N)
repl_tool nbd-write "$NBD_alpha" r0 $((24 << 20)) $((64 << 10)) 77 noflush ||
    fail "write on alpha failed"
until repl_log_has alpha "did not complete a FLUSH within timeout x ko-count"; do
	elapsed=$(ms_since "$T0")
	[ "$elapsed" -le $(((KO_S + SLACK_S + 2) * 1000)) ] ||
	    fail "alpha kept the link to a peer whose flush hangs for $elapsed ms"
	sleep 0.2
done
msg "alpha dropped the peer with a hanging flush after $(ms_since "$T0") ms"
assert_eq "$(($(st alpha peer_flushes) - f0))" 1 "FLUSHes alpha sent on its own"
assert_eq "$(st alpha out_of_sync_bytes)" $((64 << 10)) "alpha's out-of-sync bytes (the unflushed write)"
repl_fault beta ""
repl_wait_synced 60
repl_compare
repl_stop alpha
repl_stop beta

msg "== 4. resync: the target's disk stalls under the resync"
start_pair sync
bm alpha disconnect
repl_wait1 alpha 10 's["connection"] == "standalone"' "alpha disconnected"
qemu_io alpha -c 'write -P 0x44 32M 4M'
assert_eq "$(st alpha out_of_sync_bytes)" $((4 << 20)) "alpha's out-of-sync bytes"
repl_fault beta "write:*:stall"
KO0=$(ko_lines "peer did not answer a resync")
T0=$(date +%s%N)
bm alpha connect
wait_ko "a resync" "peer did not answer a resync or verify request within timeout x ko-count"
assert_ge "$(st alpha out_of_sync_bytes)" 4096 "alpha's out-of-sync bytes after the drop"
repl_fault beta ""
repl_wait_synced 60
repl_compare

msg "== 5. verify: the peer's reads stall"
repl_events alpha
repl_fault beta "read:*:stall"
KO0=$(ko_lines "peer did not answer a resync")
T0=$(date +%s%N)
bm alpha verify --no-wait
wait_ko "a verify" "peer did not answer a resync or verify request within timeout x ko-count"
grep -q '"verify-stopped"' "$TESTDIR/events.alpha" || fail "no verify-stopped event on alpha"
repl_fault beta ""
repl_wait_synced 60
repl_stop alpha
repl_stop beta

msg "== 6. a diskless primary's reads from a peer whose reads stall"
repl_conf "protocol = sync" "timeout = ${TIMEOUT_S}s" "ko-count = $KO_COUNT"
repl_start alpha BLKMIRROR_FAULT_FILE="$TESTDIR/fault.alpha"
repl_start beta BLKMIRROR_FAULT_FILE="$TESTDIR/fault.beta"
repl_wait_connected 20
bm alpha primary
repl_wait_synced 60
qemu_io alpha -c 'write -P 0x66 40M 1M'
repl_fault alpha "write:*:5"
qemu_io alpha -c 'write -P 0x67 41M 64k'
repl_wait1 alpha 10 's["disk"] == "diskless"' "alpha detached"
repl_fault alpha ""
qemu_io alpha -r -c 'read -P 0x66 40M 64k'
repl_fault beta "read:*:stall"
KO0=$(ko_lines "peer did not answer a read")
T0=$(date +%s%N)
timeout 60 qemu-io -r -f raw "$URI_alpha" \
    -c 'read -P 0x66 40M 64k' >"$TESTDIR/read.out" 2>&1 &
qpid=$!
cleanup_kill "$qpid"
wait_ko "a read" "peer did not answer a read within timeout x ko-count"
rc=0
wait "$qpid" || rc=$?
[ "$rc" -ne 124 ] || fail "the client's read still hangs after the drop"
grep -q "Input/output error" "$TESTDIR/read.out" ||
    fail "the client's read did not fail with EIO: $(cat "$TESTDIR/read.out")"
repl_fault beta ""
repl_wait_connected 30
qemu_io alpha -r -c 'read -P 0x66 40M 64k' -c 'read -P 0x67 41M 64k'
repl_stop alpha
repl_stop beta
repl_start alpha
repl_start beta
repl_wait_synced 60
repl_compare
repl_stop alpha
repl_stop beta

msg "== 7. a demotion settles once the peer confirmed the writes"
# ko-count 30: beta's stalled disk must not take the link down (after
# timeout x ko-count) while the checks below run on a slow machine.
KO_COUNT=30 start_pair async
repl_fault beta "write:*:stall"
qemu_io alpha -c 'write -P 0x77 48M 256k'
assert_ge "$(st alpha lag_bytes)" 4096 "alpha's lag with beta's disk stalled"
out=$(bm_fails alpha secondary --wait 1)
assert_match "$out" "demoting" "secondary --wait 1 while beta has not confirmed"
assert_eq "$(st alpha role)" secondary "alpha's role (no more writes)"
assert_eq "$(st alpha demoting)" true "alpha's demoting"
"$BLKMIRRORCTL" -c "$CONF" -n alpha dump-md | grep -Eq '^flags:.*[ ,]primary' ||
    fail "alpha's superblock lost its primary flag before the peer confirmed: $("$BLKMIRRORCTL" -c "$CONF" -n alpha dump-md | grep '^flags')"
assert_eq "$(st beta peer.role)" primary "alpha's role as beta sees it"
out=$(bm_fails beta primary --wait 1)
assert_match "$out" "peer is primary" "promoting beta while alpha's demotion settles"
repl_fault beta ""
repl_wait1 alpha 10 's["demoting"] == False' "alpha's demotion settled"
"$BLKMIRRORCTL" -c "$CONF" -n alpha dump-md | grep -Eq '^flags:.*[ ,]primary' &&
    fail "alpha's superblock still says primary after the demotion settled"
assert_eq "$(st alpha lag_bytes)" 0 "alpha's lag after the demotion"
bm beta primary
assert_eq "$(st alpha out_of_sync_bytes)" 0 "alpha's out-of-sync bytes (beta confirmed all)"
qemu_io beta -r -c 'read -P 0x77 48M 256k'
repl_compare
repl_stop alpha
repl_stop beta

msg "== 7b. the link drops while a demotion waits"
KO_COUNT=30 start_pair async
repl_fault beta "write:*:stall"
qemu_io alpha -c 'write -P 0x78 52M 256k'
assert_ge "$(st alpha lag_bytes)" 4096 "alpha's lag with beta's disk stalled"
u0=$(st alpha uuids.current)
out=$(bm_fails alpha secondary --wait 1)
assert_match "$out" "demoting" "secondary --wait 1 while beta has not confirmed"
bm alpha disconnect
repl_wait1 alpha 10 's["demoting"] == False' "alpha's demotion settled after the link dropped"
[ "$(st alpha uuids.current)" != "$u0" ] ||
    fail "alpha's writes the peer may lack took no new generation"
assert_eq "$(st alpha uuids.bitmap)" "$u0" "alpha's bitmap uuid (tracks from the old generation)"
assert_ge "$(st alpha out_of_sync_bytes)" 4096 "alpha's out-of-sync bytes"
"$BLKMIRRORCTL" -c "$CONF" -n alpha dump-md | grep -Eq '^flags:.*[ ,]primary' &&
    fail "alpha's superblock still says primary after the demotion settled"
repl_fault beta ""
bm alpha connect
repl_wait_synced 60
assert_eq "$(first_byte beta $((52 << 20)))" 78 "beta's byte at 52M after the resync"
repl_compare
repl_stop alpha
repl_stop beta

msg "== 7c. the demotion's superblock waits for a flush of alpha's data"
repl_conf "protocol = sync" "timeout = ${TIMEOUT_S}s" "ko-count = $KO_COUNT"
repl_start alpha BLKMIRROR_FAULT_FILE="$TESTDIR/fault.alpha"
repl_start beta
repl_wait_connected 20
bm alpha primary
repl_wait_synced 60
qemu_io alpha -c 'write -P 0x79 56M 256k'
repl_fault alpha "flush:*:stall"
out=$(bm_fails alpha secondary --wait 2)
assert_match "$out" "demoting" "secondary --wait 2 while alpha's flush is stalled"
"$BLKMIRRORCTL" -c "$CONF" -n alpha dump-md | grep -Eq '^flags:.*[ ,]primary' ||
    fail "alpha's superblock lost its primary flag before its data was flushed"
repl_fault alpha ""
repl_wait1 alpha 10 's["demoting"] == False' "alpha's demotion settled after the flush"
"$BLKMIRRORCTL" -c "$CONF" -n alpha dump-md | grep -Eq '^flags:.*[ ,]primary' &&
    fail "alpha's superblock still says primary after the demotion settled"
repl_compare
msg "ok"
