#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Both nodes sync source (docs/replication.md, Resync, "Roles"): a
# promotion that races with the choice of a resync's direction.  Both nodes
# hold the same marks (a verify found a block changed behind beta's back).
# During a short partition 'resync' is given on alpha, which is then the
# source (lower node id, no primary), and beta is promoted, which makes it
# the source of the marks as primary.  When the partition heals each
# receives RESYNC_DATA while it is a sync source itself.  That used to be
# written (each node overwrote the other's copy of the range, or both
# waited for ever behind their own resync reads); now the link goes down
# with a protocol reason, the nodes decide again at the reconnect (beta,
# primary, is the source) and end identical.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"

repl_setup 64M "timeout = 10s"
repl_start alpha
repl_start beta
repl_wait_connected 20
bm alpha primary --force
repl_wait_synced 60

msg "== marks on both nodes, equal generations"
repl_stop beta
dd if=/dev/urandom of="$DISK_beta" bs=4096 seek=100 count=1 oflag=direct conv=notrunc \
    status=none || fail "dd on beta's disk"
repl_start beta
repl_wait_synced 30
bm alpha verify
repl_wait 60 'not a["resync"]["verify_running"] and b["out_of_sync_bytes"] == 4096' "verify done"
assert_eq "$(st alpha out_of_sync_bytes)" 4096 "alpha's out-of-sync bytes after the verify"
bm alpha secondary
repl_wait1 beta 10 's["peer"]["role"] == "secondary"' "beta sees alpha secondary"

msg "== promotion and resync on both during a partition"
c0=$(st alpha connects)
repl_partition
bm alpha resync
# The promotion runs the decision again: beta, primary, is the source.
bm beta primary
assert_eq "$(st alpha replication)/$(st beta replication)" sync-source/sync-source \
    "both nodes chose to be the source"
sleep 0.5
repl_heal
repl_wait_synced 30
repl_log_has alpha "RESYNC_DATA while this node is the sync source too" ||
    repl_log_has beta "RESYNC_DATA while this node is the sync source too" ||
    fail "neither log names the RESYNC_DATA refused by a sync source"
[ "$(st alpha connects)" -gt "$c0" ] || fail "the link did not go down and come back"
assert_eq "$(st alpha role)/$(st beta role)" secondary/primary "roles"
repl_compare
msg "PASS"
