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

# Acknowledged is not durable: a write the peer acknowledged stays in this
# node's books until a FLUSH after it is acknowledged too; the link lost
# before that, its range is marked out of sync like an unconfirmed write.
msg "== sync: a write the peer has not flushed yet is marked when the link goes"
repl_stop alpha
repl_start alpha BLKMIRROR_TEST_PEER_FLUSH_MS=600000
repl_wait_synced 30
bm alpha primary
rs0=$(st alpha resync_bytes_shipped)
repl_tool nbd-write "$NBD_alpha" r0 $((8 << 20)) $((64 << 10)) 101 noflush ||
    fail "write on alpha failed"
bm alpha disconnect
assert_eq "$(st alpha out_of_sync_bytes)" $((64 << 10)) "alpha's out_of_sync_bytes (unflushed write)"
assert_eq "$(st alpha unflushed_marked_bytes)" $((64 << 10)) "alpha's unflushed_marked_bytes"
repl_log_has alpha "65536 bytes the peer had not flushed yet marked" ||
    fail "alpha's log does not name the unflushed write"
bm alpha connect
repl_wait_synced 30
assert_eq "$(($(st alpha resync_bytes_shipped) - rs0))" $((64 << 10)) "bytes resynced"
msg "== sync: flushed, nothing is marked"
repl_tool nbd-write "$NBD_alpha" r0 $((9 << 20)) $((64 << 10)) 102 ||
    fail "write on alpha failed"
bm alpha disconnect
assert_eq "$(st alpha out_of_sync_bytes)" 0 "alpha's out_of_sync_bytes (flushed write)"
assert_eq "$(st alpha unflushed_marked_bytes)" $((64 << 10)) "alpha's unflushed_marked_bytes"
bm alpha connect
repl_wait_synced 30
repl_compare

msg "== sync: this node's own FLUSH covers writes no client flushed"
repl_stop alpha
repl_start alpha
repl_wait_synced 30
bm alpha primary
f0=$(st alpha peer_flushes)
repl_tool nbd-write "$NBD_alpha" r0 $((10 << 20)) $((64 << 10)) 103 noflush ||
    fail "write on alpha failed"
repl_wait1 alpha 5 "s['peer_flushes'] > $f0" "alpha's own FLUSH to the peer"
bm alpha disconnect
assert_eq "$(st alpha out_of_sync_bytes)" 0 "alpha's out_of_sync_bytes (write flushed by alpha's own FLUSH)"
bm alpha connect
repl_wait_synced 30
repl_compare

msg "== async: a client FLUSH is not sent to the peer"
repl_stop alpha
repl_stop beta
repl_conf "protocol = async"
repl_start alpha BLKMIRROR_TEST_PEER_FLUSH_MS=600000
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

msg "== async: this node's own FLUSH finds the peer's failing disk"
repl_stop alpha
repl_start alpha
repl_wait_synced 30
bm alpha primary
repl_tool nbd-write "$NBD_alpha" r0 $((11 << 20)) $((64 << 10)) 104 ||
    fail "write on alpha failed"
repl_wait1 beta 10 's["disk"] == "diskless"' "beta detached after its failed flush"
repl_log_has alpha "$peer_failed" || fail "alpha's log does not show the peer's failed FLUSH"
repl_stop beta
repl_start beta
repl_wait_synced 60
repl_compare
msg "PASS"
