#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# A TRIM or WRITE_ZEROES that the primary's disk cannot do must not leave
# the peer's disk different without the bitmap saying so.
#  1. WRITE_ZEROES with FAST_ZERO | NO_HOLE where alpha cannot zero fast
#     (BLKMIRROR_IOENG_QUIRKS=no_zero_range on alpha only: no ZERO_RANGE,
#     and NO_HOLE forbids punching) is answered ENOTSUP before anything
#     is submitted or shipped: both disks keep their data, nothing is
#     marked out of sync.  FAST_ZERO without NO_HOLE (a punch) works.
#  2. The safety net: a TRIM and a FAST_ZERO that alpha's disk refuses
#     with EOPNOTSUPP at run time (fault injection) after the peer got
#     them: the client gets success (TRIM is advisory) or ENOTSUP, the
#     range is marked out of sync on alpha, and a resync makes both disks
#     equal again.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"

M=$((1 << 20))
NO_HOLE_FAST=0x12	# NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO
FAST=0x10		# NBD_CMD_FLAG_FAST_ZERO
ENOTSUP=95

repl_setup 64M
repl_start alpha BLKMIRROR_IOENG_QUIRKS=no_zero_range BLKMIRROR_FAULT_FILE="$TESTDIR/fault.alpha"
repl_start beta
repl_wait_connected 20
bm alpha primary --force
repl_wait_synced 60

# nbd CMD OFFSET LENGTH [FLAGS]: one request on alpha; prints its error code.
nbd()
{
	repl_tool nbd-cmd "$NBD_alpha" r0 "$@" || fail "nbd-cmd $* failed"
}

# both_bytes OFFSET BYTE: the first byte at OFFSET on both disks is BYTE.
both_bytes()
{
	assert_eq "$(first_byte alpha "$1")" "$2" "alpha's byte at $1"
	assert_eq "$(first_byte beta "$1")" "$2" "beta's byte at $1"
}

msg "== 1. FAST_ZERO | NO_HOLE that alpha cannot do fast: ENOTSUP, nothing changes"
repl_tool nbd-write "$NBD_alpha" r0 $((4 * M)) $M 90 || fail "write 0x5a"
repl_wait_synced 30
assert_eq "$(nbd zero $((4 * M)) $M $NO_HOLE_FAST)" $ENOTSUP "FAST_ZERO | NO_HOLE reply"
assert_eq "$(nbd flush 0 0)" 0 "FLUSH after the refused zero"
repl_wait_synced 10
both_bytes $((4 * M)) 5a
both_bytes $((5 * M - 4096)) 5a
assert_eq "$(st alpha out_of_sync_bytes)" 0 "alpha's out_of_sync_bytes"
repl_compare
# Without NO_HOLE alpha punches: fast, done on both.
assert_eq "$(nbd zero $((4 * M)) $M $FAST)" 0 "FAST_ZERO (punch) reply"
repl_wait_synced 30
both_bytes $((4 * M)) 00
repl_compare

msg "== 2. EOPNOTSUPP after shipping: the range is marked, a resync repairs it"
repl_tool nbd-write "$NBD_alpha" r0 $((8 * M)) $((2 * M)) 119 || fail "write 0x77"
repl_wait_synced 30
repl_fault alpha "trim:$((8 * M))-$((9 * M - 1)):$ENOTSUP"
assert_eq "$(nbd trim $((8 * M)) $M)" 0 "TRIM refused by alpha's disk (advisory)"
repl_fault alpha "zero:$((9 * M))-$((10 * M - 1)):$ENOTSUP"
assert_eq "$(nbd zero $((9 * M)) $M $FAST)" $ENOTSUP "FAST_ZERO refused by alpha's disk"
repl_fault alpha ""
repl_log_has alpha "unsupported here.*marked out of sync" ||
    fail "alpha's log does not report the marked ranges"
assert_ge "$(st alpha out_of_sync_bytes)" $((2 * M)) "alpha's out_of_sync_bytes"
assert_eq "$(first_byte alpha $((8 * M)))" 77 "alpha's data under the failed TRIM"
bm alpha resync
repl_wait_synced 60
both_bytes $((8 * M)) 77
both_bytes $((9 * M)) 77
repl_compare
msg "PASS"
