#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# A client FLUSH on the primary is answered only after the peer's fdatasync
# (DESIGN.md write path 7).  The secondary runs with an io engine fault on
# its first flush (BLKMIRROR_FAULT=flush:*:5:1): its fdatasync fails with
# EIO and its FLUSH_ACK carries the error, which the primary logs ("the
# peer failed FLUSH...").  An NBD client writes, then flushes: by the time
# the FLUSH reply arrives, the primary's log must already hold that line,
# so the reply waited for the peer's fdatasync of that very FLUSH.  The
# client's FLUSH still succeeds (the data is durable on the primary); the
# primary drops the link; beta detaches its failing disk (on-io-error =
# detach: it cannot be promoted) and, restarted, gets the whole disk
# resynced.  Without
# the fault no such line appears; with protocol async the FLUSH stays
# local (no line, the link stays up even though every peer flush fails).

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"

repl_setup 64M
repl_start alpha
repl_start beta
repl_wait_connected 20
bm alpha primary --force
repl_wait_synced 60
size=$(st alpha size_bytes)
# The secondary's first fdatasync fails.  (Armed after the initial sync:
# its clears reach beta's bitmap after flushes of their own.)
repl_stop beta
repl_start beta BLKMIRROR_FAULT="flush:*:5:1"
repl_log_has beta "fault injection armed" || fail "beta did not arm the flush fault"
repl_wait_synced 30

peer_failed='the peer failed (REPL_MSG_)?FLUSH'
msg "== sync: the FLUSH reply follows the peer's (failing) fdatasync"
out=$(repl_tool nbd-flush "$NBD_alpha" r0 1 "$LOG_alpha" "$peer_failed" 1 2>&1) ||
    fail "FLUSH did not wait for the peer: $out"
# The data is durable on the primary: the client's FLUSH succeeds.
assert_eq "$out" 0 "FLUSH reply with the peer's flush failing"
repl_log_has beta "flush.*failed.*Input/output error" ||
    fail "beta's log does not show its failed flush"
# The peer's disk can no longer be trusted: all of it is resynced.
repl_log_has alpha "link down: .*flush" || fail "alpha did not drop the link after the failed flush"
repl_wait1 beta 10 's["disk"] == "diskless" and s["connection"] == "standalone"' \
    "beta detached its disk"
out=$(bm_fails beta primary)
assert_match "$out" "detached" "promoting beta with its disk detached"
repl_stop beta
repl_start beta
repl_wait_synced 60
assert_ge "$(st alpha resync_bytes_shipped)" $((2 * size)) \
    "bytes shipped (initial sync + full resync after the failed flush)"
repl_compare

msg "== sync, fault worn off: FLUSH replies after the peer's fdatasync, no failure"
out=$(repl_tool nbd-flush "$NBD_alpha" r0 3 "$LOG_alpha" "$peer_failed" 0 2>&1) ||
    fail "FLUSH without the fault: $out"
assert_eq "$out" "0 0 0" "FLUSH replies without the fault"
assert_eq "$(grep -Ec -- "$peer_failed" "$LOG_alpha")" 1 "lines '$peer_failed' in alpha's log"
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
connects=$(st alpha connects)
out=$(repl_tool nbd-flush "$NBD_alpha" r0 3 "$LOG_alpha" "$peer_failed" 0 2>&1) ||
    fail "async FLUSH: $out"
assert_eq "$out" "0 0 0" "async FLUSH replies"
repl_wait_synced 30
assert_eq "$(st alpha connects)" "$connects" "alpha's connects (the link stayed up)"
repl_compare
msg "PASS"
