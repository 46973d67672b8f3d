#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# A primary's client writes made between the link coming up and the UUID
# decision (replication "connecting") wait for the decision, which is then
# made on the generation UUIDs of before them (docs/replication.md, "Writes
# while connecting wait for the decision").  beta runs with
# BLKMIRROR_TEST_LINK_UP_DELAY_MS: it takes its side of the link up late,
# so alpha stays "connecting" for that long while a client writes.
#
# 1. Equal generations: the decision is "established" and the parked write
#    is shipped as a normal replicated write: on both disks, no resync, no
#    new generation.  (Before: it was marked in the bitmap and resynced.)
# 2. beta was primary and wrote alone (bitmap UUID = alpha's current),
#    alpha was promoted while disconnected and writes W while connecting.
#    alpha's decision (rule 50: sync target) refuses it as a primary; the
#    link drops, W goes on alone under a new generation.  Demoted and
#    connected as the refusal advises, alpha meets beta as a split brain
#    (rule 90) and W is still there; resolved towards beta, W is on both.
#    (Before: W ran under alpha's old generation, and the advised demote
#    and connect made alpha a bitmap sync target: W silently overwritten.)
# 3. A peer that never lets the UUIDs be compared (link-up delay beyond the
#    timeout): alpha drops the link after the timeout and the parked write
#    goes on alone, under a new generation; nothing waits for ever.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"

DELAY_MS=2500
repl_setup 64M "timeout = 6s"
repl_start alpha
repl_start beta BLKMIRROR_TEST_LINK_UP_DELAY_MS=$DELAY_MS
repl_wait_connected 30
bm alpha primary --force
repl_wait_synced 60
repl_events alpha

# connecting_write NODE OFFSET BYTE: connect NODE, and once its replication
# is "connecting", write 1 MiB of BYTE at OFFSET in the background (WPID);
# the write must be parked (writes_parked_connecting) while the state is
# still "connecting".
connecting_write()
{
	local node=$1 nbd=NBD_$1 parked
	parked=$(st "$node" writes_parked_connecting)
	bm "$node" connect
	repl_wait1 "$node" 10 's["replication"] == "connecting"' "$node connecting"
	repl_tool nbd-write "${!nbd}" r0 "$2" $((1 << 20)) "$3" &
	WPID=$!
	cleanup_kill "$WPID"
	repl_wait1 "$node" 5 "s['writes_parked_connecting'] > $parked" \
	    "the write parked on $node"
	[ "$(st "$node" replication)" = connecting ] ||
	    fail "$node left 'connecting' before the check (the delay is too short)"
	pid_alive "$WPID" || fail "the write completed while $node was connecting"
}

# write_done: the background write succeeded.
write_done()
{
	wait "$WPID" || fail "the write made while connecting failed"
}

msg "== 1. equal generations: the parked write is shipped once established"
bm alpha disconnect
repl_wait1 alpha 10 's["connection"] == "standalone"' "alpha standalone"
gen=$(st alpha uuids.current)
shipped0=$(st alpha resync_bytes_shipped)
connecting_write alpha $((4 << 20)) 17
write_done
repl_wait_synced 30
assert_eq "$(st alpha uuids.current)" "$gen" "alpha's generation (a shipped write makes none)"
assert_eq "$(st alpha uuids.bitmap)" 0000000000000000 "alpha's bitmap uuid"
assert_eq "$(st alpha resync_bytes_shipped)" "$shipped0" \
    "resync bytes after the write made while connecting (it was shipped)"
assert_eq "$(first_byte alpha $((4 << 20)))/$(first_byte beta $((4 << 20)))" 11/11 \
    "the write made while connecting, on alpha/beta"
repl_compare

msg "== 2. beta wrote alone; alpha, promoted meanwhile, writes while connecting"
bm alpha secondary
bm beta primary
repl_wait 20 'a["replication"] == "established" and b["role"] == "primary"' "beta primary"
bm alpha disconnect
repl_wait1 beta 10 's["connection"] == "connecting"' "beta without its peer"
X=$(st alpha uuids.current)
repl_tool nbd-write "$NBD_beta" r0 $((8 << 20)) $((1 << 20)) 34 || fail "write on beta failed"
bm beta secondary
assert_eq "$(st beta uuids.bitmap)" "$X" "beta's bitmap uuid after writing alone"
bm alpha primary
assert_eq "$(st alpha uuids.current)/$(st alpha uuids.bitmap)" "$X/0000000000000000" \
    "alpha's uuids, promoted, nothing written yet"
connecting_write alpha $((12 << 20)) 51
write_done
repl_wait1 alpha 20 's["connection"] == "standalone"' "alpha refuses to be a sync target"
repl_log_has alpha "sync-target-bitmap \(rule 50\)" ||
    fail "alpha did not decide on the uuids of before its write (rule 50)"
repl_log_has alpha "this primary's data is older than the peer's" ||
    fail "alpha's log does not say why it refused"
assert_eq "$(st alpha uuids.bitmap)" "$X" "alpha's bitmap uuid after its write made alone"
[ "$(st alpha uuids.current)" != "$X" ] ||
    fail "alpha's write, made alone after the refusal, did not start a new generation"
assert_eq "$(first_byte alpha $((12 << 20)))" 33 "alpha's write W on alpha"
msg "following the advice: demote alpha, connect again"
sb_a=$(st alpha split_brains)
sb_b=$(st beta split_brains)
bm alpha secondary
bm alpha connect
repl_wait 30 "a['split_brains'] > $sb_a and b['split_brains'] > $sb_b and
    a['connection'] == 'standalone' and b['connection'] == 'standalone'" \
    "split brain detected on both nodes (not a silent sync into alpha)"
repl_log_has alpha "rule 90" || fail "alpha's split brain is not rule 90"
assert_eq "$(first_byte alpha $((12 << 20)))" 33 "alpha's write W after the split brain"
grep -q '"split-brain"' "$TESTDIR/events.alpha" || fail "no split-brain event on alpha"
bm beta connect --discard-my-data
bm alpha connect
repl_wait_synced 60
assert_eq "$(first_byte alpha $((12 << 20)))/$(first_byte beta $((12 << 20)))" 33/33 \
    "alpha's write W on alpha/beta after the resolution"
repl_compare

msg "== 3. no decision within the timeout: the link drops, the write goes on alone"
bm alpha primary
repl_stop beta
repl_wait1 alpha 10 's["connection"] == "connecting" and s["replication"] == "off"' \
    "alpha without its peer"
bm alpha disconnect
repl_start beta BLKMIRROR_TEST_LINK_UP_DELAY_MS=60000
gen=$(st alpha uuids.current)
t0=$(date +%s)
connecting_write alpha $((16 << 20)) 68
write_done
t=$(($(date +%s) - t0))
msg "the write completed after $t s"
[ "$t" -ge 4 ] && [ "$t" -le 15 ] || fail "the parked write took $t s, expected the 6 s timeout"
repl_log_has alpha "generation uuids were not compared within the timeout" ||
    fail "alpha's log does not say why the link dropped"
[ "$(st alpha uuids.current)" != "$gen" ] && [ "$(st alpha uuids.bitmap)" = "$gen" ] ||
    fail "the write made alone after the timeout took no new generation"
assert_eq "$(first_byte alpha $((16 << 20)))" 44 "the write after the timeout, on alpha"
repl_stop beta
repl_start beta
repl_wait_synced 60
assert_eq "$(first_byte beta $((16 << 20)))" 44 "the write after the timeout, on beta"
repl_compare
msg "PASS"
