#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# A client FLUSH on the primary is answered only after the peer's fdatasync
# (DESIGN.md write path 7).  The secondary runs with an io engine fault on
# every flush (BLKMIRROR_FAULT=flush:*:5): its fdatasync fails with EIO and
# its FLUSH_ACK carries the error, which the primary logs ("the peer failed
# FLUSH...").  An NBD client writes and flushes one request at a time: by
# the time each FLUSH reply arrives, the primary's log must already hold
# exactly one more such line, so every reply waited for the peer's
# fdatasync of that very FLUSH.  Without the fault no such line appears;
# with protocol async the FLUSH stays local (no line either).

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"

repl_setup 64M
repl_start alpha
repl_start beta BLKMIRROR_FAULT="flush:*:5"
repl_wait_connected 20
repl_log_has beta "fault injection armed" || fail "beta did not arm the flush fault"
bm alpha primary --force
repl_wait_synced 60

peer_failed='the peer failed (REPL_MSG_)?FLUSH'
msg "== sync: each FLUSH reply follows the peer's (failing) fdatasync"
out=$(repl_tool nbd-flush "$NBD_alpha" r0 5 "$LOG_alpha" "$peer_failed" 1 2>&1) ||
    fail "FLUSH did not wait for the peer: $out"
msg "FLUSH replies (NBD error codes) with the peer's flush failing: $out"
repl_log_has beta "flush.*(failed|error)|Input/output error" ||
    fail "beta's log does not show its failed flush"
n=$(grep -Ec -- "$peer_failed" "$LOG_alpha")
assert_eq "$n" 5 "lines '$peer_failed' in alpha's log"

msg "== sync without the fault: no failure, FLUSH still works"
repl_stop beta
repl_start beta
repl_wait_synced 30
out=$(repl_tool nbd-flush "$NBD_alpha" r0 3 "$LOG_alpha" "$peer_failed" 0 2>&1) ||
    fail "FLUSH without the fault: $out"
assert_eq "$out" "0 0 0" "FLUSH replies without the fault"
repl_wait_synced 30
repl_compare

msg "== async: a FLUSH is not sent to the peer"
repl_stop alpha
repl_stop beta
repl_conf "protocol = async"
repl_start alpha
repl_start beta BLKMIRROR_FAULT="flush:*:5"
repl_wait_synced 30
bm alpha primary
out=$(repl_tool nbd-flush "$NBD_alpha" r0 3 "$LOG_alpha" "$peer_failed" 0 2>&1) ||
    fail "async FLUSH: $out"
assert_eq "$out" "0 0 0" "async FLUSH replies"
repl_wait_synced 30
repl_compare
msg "PASS"
