#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# protocol = async with a bounded send queue (max-lag-bytes) and its two
# answers to a slow peer (docs/replication.md, "async: lag, congestion,
# pull-ahead").  The peer is made slow by a short partition (shorter than
# timeout): what alpha shipped is not acknowledged, so its lag grows.
#  1. on-congestion = block: a write that would take the lag over
#     max-lag-bytes waits (congestion_waits) until the peer catches up;
#     then everything completes and reaches beta.
#  2. on-congestion = pull-ahead: the writes go on (no client waits), alpha
#     goes "ahead" and marks them; once the lag drained, a bitmap resync
#     brings beta up to date without any command.
#  3. While alpha runs a verify it does not pull ahead (its resync could
#     not start before the verify's end, as DRBD pulls ahead only from
#     Connected): the writes wait as with block, the verify goes on.
#  4. A pull-ahead while beta runs a verify: beta stops its verify to take
#     part in alpha's resync, on the same link (it used to refuse, and
#     alpha's BITMAP then took the link down: "unexpected BITMAP").
# Both disks end identical.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"
requires qemu-io

# writes_cmds PATTERN BASE [KIB...]: qemu-io arguments for writes one after
# the other from BASE MiB, of the sizes given in KiB (default 8 x 128: 1 MiB,
# four times max-lag-bytes).
writes_cmds()
{
	local pat=$1 off=$(($2 * 1048576)) k
	shift 2
	[ $# -gt 0 ] || set -- 128 128 128 128 128 128 128 128
	for k in "$@"; do
		printf -- "-c\nwrite -P %s %d %d\n" "$pat" "$off" $((k * 1024))
		off=$((off + k * 1024))
	done
}

# ahead_writes PATTERN BASE: partitioned, alpha takes 1 MiB of writes
# without waiting and goes ahead; healed, the lag drains.
ahead_writes()
{
	local args
	mapfile -t args < <(writes_cmds "$1" "$2")
	repl_partition
	qemu_io alpha "${args[@]}"
	assert_eq "$(st alpha replication)" ahead "alpha's replication state while partitioned"
	[ "$(st alpha out_of_sync_bytes)" -gt 0 ] || fail "alpha marked nothing while ahead"
	repl_heal
}

# blocked_writes PATTERN BASE [KIB...]: partitioned, writes from alpha
# (writes_cmds) wait once the lag reached max-lag-bytes; healed, they
# complete.
blocked_writes()
{
	local args qpid lag w0
	mapfile -t args < <(writes_cmds "$@")
	w0=$(st alpha congestion_waits)
	repl_partition
	timeout 60 qemu-io -f raw "$URI_alpha" "${args[@]}" >"$TESTDIR/q.out" 2>&1 &
	qpid=$!
	cleanup_kill "$qpid"
	sleep 2
	kill -0 "$qpid" 2>/dev/null ||
	    fail "the writes completed while the peer acknowledged nothing: $(cat "$TESTDIR/q.out")"
	[ "$(st alpha congestion_waits)" -gt "$w0" ] || fail "no write waited (congestion_waits)"
	lag=$(st alpha lag_bytes)
	msg "lag while partitioned: $lag bytes"
	[ "$lag" -gt 0 ] && [ "$lag" -le $((256 * 1024)) ] || fail "lag $lag bytes, want 1..262144"
	assert_eq "$(st alpha replication)" established "alpha's replication state"
	repl_heal
	wait "$qpid" || fail "qemu-io failed after the heal: $(cat "$TESTDIR/q.out")"
	grep -Eqi "fail|error" "$TESTDIR/q.out" && fail "qemu-io: $(cat "$TESTDIR/q.out")"
	return 0
}

repl_setup 64M
repl_conf "protocol = async" "timeout = 10s" "max-lag-bytes = 256K" "on-congestion = block"
repl_start alpha
repl_start beta
repl_wait_connected 20
bm alpha primary --force
repl_wait_synced 60
size_bytes=$(st alpha size_bytes)

msg "== 1. block: writes over max-lag-bytes wait for the peer"
shipped0=$(st alpha resync_bytes_shipped)
blocked_writes 0x61 8
repl_wait_synced 30
assert_eq "$(($(st alpha resync_bytes_shipped) - shipped0))" 0 "resync bytes (nothing was marked)"
repl_compare

msg "== 1b. block, writes of mixed sizes: a waiting write that does not fit yet stays first"
# 32K + 32K + 192K fill the queue; the 128K write waits.  The first
# WRITE_ACK leaves 224K: less than max-lag-bytes, but the 128K write does
# not fit yet (it used to be released and parked again, for ever, on the
# event loop).
blocked_writes 0x62 12 32 32 192 128 64 32
repl_wait_synced 30
st alpha resource >/dev/null	# the control socket answers
repl_compare

msg "== 2. pull-ahead: the writes go on, a resync follows"
repl_stop alpha
repl_stop beta
repl_conf "protocol = async" "timeout = 10s" "max-lag-bytes = 256K" "on-congestion = pull-ahead" \
    "resync-rate = 8M"
repl_start alpha
repl_start beta
repl_wait_synced 30
bm alpha primary
# A write completes once its frame is in the kernel's send buffer; a fresh
# connection starts with a small one (TCP autotuning grows it with the
# traffic), so warm the link first or the first frames may not fit.
qemu_io alpha -c 'write -P 0x60 48M 8M'
repl_wait_synced 30
repl_events alpha
ahead_writes 0x62 16
repl_wait_synced 30
grep -q '"pull-ahead"' "$TESTDIR/events.alpha" || fail "no pull-ahead state change in alpha's events"
grep -q '"resync-done"' "$TESTDIR/events.alpha" || fail "no resync-done in alpha's events"
shipped=$(st alpha resync_bytes_shipped)
msg "resync after the pull-ahead: $shipped bytes"
[ "$shipped" -gt 0 ] && [ "$shipped" -le $((1 << 20)) ] ||
    fail "$shipped bytes resynced after 1 MiB of writes ahead"
repl_compare

msg "== 3. no pull-ahead while alpha verifies: the writes wait"
bm alpha verify --no-wait
repl_wait1 alpha 10 's["resync"]["verify_running"]' "alpha's verify running"
blocked_writes 0x63 24
repl_wait_synced 60
assert_eq "$(st alpha resync.verify_diff_bytes)" 0 "bytes alpha's verify found different"
grep -c '"pull-ahead"' "$TESTDIR/events.alpha" | grep -qx 1 || fail "alpha pulled ahead during its verify"
qemu_io alpha -r -c 'read -P 0x63 24M 1M'
repl_compare

msg "== 4. pull-ahead while beta verifies"
c0=$(st beta connects)
repl_events beta
# A waiting "blkmirrorctl verify": it must end, failing, when the verify stops.
"$BLKMIRRORCTL" -s "$SOCK_beta" verify >"$TESTDIR/verify.out" 2>&1 &
vpid=$!
cleanup_kill "$vpid"
repl_wait1 beta 10 's["resync"]["verify_running"]' "beta's verify running"
ahead_writes 0x64 32
repl_wait_synced 60
rc=0
wait "$vpid" || rc=$?
assert_eq "$rc" 1 "exit status of beta's waiting verify ($(cat "$TESTDIR/verify.out"))"
grep -q "verify: stopped after" "$TESTDIR/verify.out" ||
    fail "beta's verify command did not say it stopped: $(cat "$TESTDIR/verify.out")"
assert_eq "$(st beta connects)" "$c0" "beta's connects (the link stayed up)"
grep -q '"verify-stopped"' "$TESTDIR/events.beta" || fail "no verify-stopped event on beta"
repl_log_has beta "verify: stopped after [0-9]+ of [0-9]+ bytes \\(the peer started a resync\\)" ||
    fail "beta's log does not show its verify stopped for the resync"
qemu_io alpha -r -c 'read -P 0x61 8M 1M' -c 'read -P 0x62 16M 1M' -c 'read -P 0x64 32M 1M'
repl_compare
msg "ok ($size_bytes-byte disks)"
