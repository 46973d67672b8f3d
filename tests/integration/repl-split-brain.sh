#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Split brain: the nodes are disconnected, alpha (primary) writes, beta is
# forced primary and writes too (partly the same blocks), then demoted.  On
# connect both detect from the generation UUIDs that both changed the data:
# an event "split-brain" on both, both stay standalone and do not retry on
# their own.  'connect --discard-my-data' on beta (the loser) and 'connect'
# on alpha resolve it: the regions either side changed (and only those)
# are resynced from alpha, and beta ends with alpha's data.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"

repl_up 96M
repl_events alpha
repl_events beta

msg "== both nodes write while disconnected"
bm alpha disconnect
bm beta disconnect
repl_wait 10 'a["connection"] == "standalone" and b["connection"] == "standalone"' \
    "both standalone"
repl_tool nbd-write "$NBD_alpha" r0 $((4 << 20)) $((1 << 20)) 170 ||
    fail "write on alpha failed"
bm beta primary --force
repl_tool nbd-write "$NBD_beta" r0 $((8 << 20)) $((1 << 20)) 187 ||
    fail "write on beta failed"
repl_tool nbd-write "$NBD_beta" r0 $(((4 << 20) + (512 << 10))) $((64 << 10)) 204 ||
    fail "second write on beta failed"
bm beta secondary
size=$(st alpha size_bytes)
if repl_tool compare "$DISK_alpha" "$DISK_beta" "$size" >/dev/null 2>&1; then
	fail "the disks are identical after writes on both sides"
fi
assert_ge "$(st alpha out_of_sync_bytes)" $((1 << 20)) "alpha's out_of_sync_bytes"
assert_ge "$(st beta out_of_sync_bytes)" $((1 << 20)) "beta's out_of_sync_bytes"

msg "== connect: split brain detected"
bm alpha connect
bm beta connect
repl_wait 20 'a["split_brains"] >= 1 and b["split_brains"] >= 1 and
    a["connection"] == "standalone" and b["connection"] == "standalone"' \
    "split brain detected on both nodes"
for n in alpha beta; do
	grep -q '"split-brain"' "$TESTDIR/events.$n" || fail "no split-brain event on $n"
	repl_log_has "$n" "split.brain" || fail "no split brain line in $n's log"
done
sleep 3
assert_eq "$(st alpha connection)/$(st beta connection)" "standalone/standalone" \
    "connections a while after the split brain"
# (DESIGN.md: a primary that sees a higher epoch steps down; beta's forced
# promotion took a higher epoch, so alpha may be secondary now.)
msg "alpha is $(st alpha role) after the split brain"
if repl_tool compare "$DISK_alpha" "$DISK_beta" "$size" >/dev/null 2>&1; then
	fail "a split brain changed data before it was resolved"
fi

msg "== resolved: beta discards its changes"
shipped0=$(st alpha resync_bytes_shipped)
bm beta connect --discard-my-data
bm alpha connect
repl_wait_synced 60
[ "$(st alpha role)" = primary ] || bm alpha primary
shipped=$(( $(st alpha resync_bytes_shipped) - shipped0 ))
msg "split brain resync: $shipped bytes shipped"
# alpha changed [4M, 5M), beta [8M, 9M) and 64K inside [4M, 5M): 2 MiB.
assert_eq "$shipped" $((2 << 20)) "bytes resynced after the split brain"
assert_eq "$(st alpha role)/$(st beta role)" "primary/secondary" "roles after the resolution"
assert_eq "$(st alpha uuids.current)" "$(st beta uuids.current)" "current uuids"
repl_compare

# A source's superblock write that clears its bitmap UUID at the end of a
# resync, lost in a crash, leaves a stale bitmap UUID.  Writes made alone
# after the restart must still start a new generation: else a peer
# promoted meanwhile (its bitmap UUID = alpha's current one) would take
# alpha for unchanged (rule 50) and overwrite alpha's writes.
msg "== a stale bitmap UUID after a crash: still a split brain"
sbo=$("$BLKMIRRORCTL" -c "$CONF" -n alpha dump-md | awk '/^sb-offsets:/ {print $2, $3}')
read -r sb0 sb1 <<<"$sbo"
[ -n "$sb1" ] && [ "$sb1" -eq $((sb0 + 4096)) ] || fail "superblock slots at $sbo"
bm alpha disconnect
bm beta disconnect
repl_wait 10 'a["connection"] == "standalone" and b["connection"] == "standalone"' \
    "both standalone"
repl_tool nbd-write "$NBD_alpha" r0 $((16 << 20)) $((1 << 20)) 49 ||
    fail "write on alpha failed"
gen=$(st alpha uuids.current)
[ "$(st alpha uuids.bitmap)" != 0000000000000000 ] || fail "alpha took no generation"
# alpha's superblocks as they are now, with the bitmap UUID set
dd if="$DISK_alpha" of="$TESTDIR/alpha-sb" bs=4096 skip=$((sb0 / 4096)) count=2 \
    iflag=direct status=none || fail "reading alpha's superblocks"
bm alpha connect
bm beta connect
repl_wait_synced 60
assert_eq "$(st alpha uuids.bitmap)" 0000000000000000 "alpha's bitmap uuid after the resync"
repl_kill alpha
dd if="$TESTDIR/alpha-sb" of="$DISK_alpha" bs=4096 seek=$((sb0 / 4096)) count=2 \
    oflag=direct conv=notrunc status=none || fail "writing alpha's old superblocks"
bm beta disconnect
bm beta primary
repl_tool nbd-write "$NBD_beta" r0 $((20 << 20)) $((1 << 20)) 50 ||
    fail "write on beta failed"
bm beta secondary
repl_start alpha
repl_events alpha
assert_eq "$(st alpha uuids.current)" "$gen" "alpha's current uuid after the crash"
[ "$(st alpha uuids.bitmap)" != 0000000000000000 ] || fail "alpha's bitmap uuid is not stale"
bm alpha primary
repl_tool nbd-write "$NBD_alpha" r0 $((24 << 20)) $((1 << 20)) 51 ||
    fail "write on alpha after the crash failed"
[ "$(st alpha uuids.current)" != "$gen" ] || fail "alpha wrote alone in its old generation"
sb_a=$(st alpha split_brains)
sb_b=$(st beta split_brains)
bm beta connect
repl_wait 20 "a['split_brains'] > $sb_a and b['split_brains'] > $sb_b and
    a['connection'] == 'standalone' and b['connection'] == 'standalone'" \
    "split brain detected on both nodes"
assert_eq "$(first_byte alpha $((24 << 20)))" 33 "alpha's write made alone, still there"
bm beta connect --discard-my-data
bm alpha connect
repl_wait_synced 60
[ "$(st alpha role)" = primary ] || bm alpha primary
assert_eq "$(first_byte beta $((24 << 20)))" 33 "alpha's write made alone, on beta"
assert_eq "$(first_byte beta $((20 << 20)))" "$(first_byte alpha $((20 << 20)))" \
    "beta's discarded write"
repl_compare
msg "PASS"
