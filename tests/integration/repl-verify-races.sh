#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Online verify in two corner cases (docs/replication.md, "Online verify").
#  1. A verify read that fails on the source: the whole 1 MiB chunk counts
#     as different and is marked, instead of being narrowed down granule by
#     granule from a buffer that holds no data of it (the disks are zeroed
#     and so is that buffer: every granule used to "match", and the failed
#     read was reported as no difference at all).
#  2. verify started on both nodes at once while both are secondary: each
#     holds its own first chunks, and the peer's read of them waited behind
#     those holds while they waited for the peer's answer -- a deadlock.
#     A partition while both start makes the requests cross.  Now beta (the
#     higher node id) stops its own verify with a log line and a
#     verify-stopped event; alpha's finishes; the nodes stay in sync.
# Both disks end identical.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"

M=$((1 << 20))
VERIFY_DONE='not a["resync"]["verify_running"] and not b["resync"]["verify_running"]'

repl_setup 64M "timeout = 6s"
repl_start alpha
repl_start beta
repl_wait_connected 20
bm alpha primary --force
repl_wait_synced 60

msg "== 1. a verify read that fails counts its whole chunk"
repl_stop alpha
# The first read of the first MiB fails: the verify's read of chunk 0.
repl_start alpha BLKMIRROR_FAULT="read:0-$((M - 1)):5:1"
repl_wait_synced 30
bm alpha verify
repl_wait 60 "$VERIFY_DONE" "verify done"
repl_log_has alpha "reading offset 0 failed" || fail "alpha's verify read did not fail"
assert_eq "$(st alpha resync.verify_diff_bytes)" "$M" "bytes the verify found different"
assert_eq "$(st alpha out_of_sync_bytes)" "$M" "alpha's out-of-sync bytes after the verify"
bm alpha resync
repl_wait_synced 30
repl_compare

msg "== 2. verify on both secondaries at once"
repl_events alpha
repl_events beta
c0=$(st alpha connects)
repl_partition
bm alpha verify --no-wait
bm beta verify --no-wait
sleep 0.5
repl_heal
repl_wait 30 "$VERIFY_DONE" "both verifies ended"
repl_log_has beta "verify: stopped .*the peer runs a verify too" ||
    fail "beta's log does not say it stopped its verify for alpha's"
grep -q '"verify-stopped"' "$TESTDIR/events.beta" || fail "no verify-stopped event on beta"
grep -q '"verify-done"' "$TESTDIR/events.alpha" || fail "no verify-done event on alpha"
repl_log_has alpha "verify: stopped" && fail "alpha stopped its verify too"
assert_eq "$(st alpha resync.verify_diff_bytes)" 0 "bytes alpha's verify found different"
assert_eq "$(st alpha connects)" "$c0" "link connects (the link never dropped)"
repl_wait_synced 30
repl_compare
msg "PASS"
