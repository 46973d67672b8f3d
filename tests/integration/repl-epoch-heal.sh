#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# A partition heals with two primaries: alpha (primary) lost the link,
# beta was promoted meanwhile (a higher epoch) and wrote alone.  On the
# heal alpha sees the higher epoch and steps down (DESIGN.md), and beta,
# which ignored alpha's first STATE (a primary with a lower epoch that is
# about to step down), compares the generation UUIDs on alpha's next
# STATE, as on any connect: alpha becomes beta's sync target on the same
# link.  Neither node takes the link down on the way -- not beta for
# "uuids not compared within the timeout" (its client writes would wait
# parked until then), not either for an unexpected BITMAP -- and exactly
# beta's writes are resynced.  The disks end identical.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"

M=$((1 << 20))

# link_drops NODE: how many times NODE's log says the link went down for
# the reasons this test rules out.
link_drops()
{
	local log=LOG_$1
	grep -Eci "not compared within the timeout|unexpected or mismatched BITMAP" "${!log}"
}

repl_up 64M
epoch_alpha=$(st alpha epoch)

msg "== partition: beta is promoted and writes alone"
repl_partition
repl_wait 30 'a["connection"] != "connected" and b["connection"] != "connected"' \
    "the link down on both nodes"
bm beta primary
assert_ge "$(st beta epoch)" $((epoch_alpha + 1)) "beta's epoch after its promotion"
repl_tool nbd-write "$NBD_beta" r0 $((8 * M)) $((1 * M)) 187 || fail "write on beta failed"
assert_eq "$(st alpha role)/$(st beta role)" primary/primary "roles during the partition"
shipped0=$(st beta resync_bytes_shipped)
drops_a=$(link_drops alpha)
drops_b=$(link_drops beta)

msg "== heal: alpha steps down and becomes beta's sync target"
repl_heal
repl_wait_synced 60
assert_eq "$(st alpha role)/$(st beta role)" secondary/primary "roles after the heal"
assert_eq "$(link_drops alpha)/$(link_drops beta)" "$drops_a/$drops_b" \
    "links dropped for an unexpected BITMAP or uuids not compared (alpha/beta)"
assert_eq "$(($(st beta resync_bytes_shipped) - shipped0))" $((1 * M)) \
    "bytes resynced from beta"
repl_log_has alpha "higher epoch" || fail "alpha's log does not say it stepped down"
repl_compare
msg "ok"
