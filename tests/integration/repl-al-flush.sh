#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# An extent leaves the activity log only once its writes are on stable
# storage (docs/replication.md, "Activity log"): after a crash only the
# extents the log names are resynced, so a write still in a volatile cache
# when its extent was evicted would be lost unmarked.  The primary flushes
# the data device before a transaction that evicts an extent, and only
# when a write to one of the victims finished after the last such flush.
# alpha runs alone (al-extents = 7, the minimum: extents 0-6 fill the log),
# its flushes held by the io engine's "stall" fault while the AL write
# itself (a FUA write, not a flush) is not:
#  1. filling empty slots evicts nothing: no flush;
#  2. a write to an eighth extent evicts the least recently used one,
#     after one flush;
#  3. every active extent written again, with flushes stalled: a write that
#     needs an eviction waits; one to an active extent completes; released,
#     the waiting write completes after one more flush;
#  4. evictions whose victims were last written before that flush need no
#     new one.
#  5. connected to beta: an extent also stays in the log until the peer
#     flushed the writes to it (a crash of both nodes would otherwise find
#     this disk newer than beta's, unmarked).  With the log full of such
#     extents, a write that needs an eviction makes alpha send a FLUSH of
#     its own at once; while beta's flushes are stalled, that write waits.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"

M=$((1 << 20))

# write_ext N: a 4 KiB write (no FLUSH) at the start of 4 MiB extent N.
write_ext()
{
	repl_tool nbd-write "$NBD_alpha" r0 $(($1 * 4 * M)) 4096 $((0x40 + $1)) noflush ||
	    fail "write to extent $1 failed"
}

# held_write N WHY: write_ext N in the background; it must still wait 2 s
# later (else fail with WHY).  Its pid is in WPID; finish it with
# held_write_done N.
held_write()
{
	timeout 60 python3 "$SRCDIR/tests/integration/repl_tool.py" nbd-write "$NBD_alpha" r0 \
	    $(($1 * 4 * M)) 4096 $((0x40 + $1)) noflush >"$TESTDIR/w.$1" 2>&1 &
	WPID=$!
	cleanup_kill "$WPID"
	sleep 2
	kill -0 "$WPID" 2>/dev/null || fail "$2"
}

# held_write_done N: the write of held_write N completes, successfully.
held_write_done()
{
	local rc=0
	wait "$WPID" || rc=$?
	assert_eq "$rc" 0 "the held write to extent $1 (output: $(cat "$TESTDIR/w.$1"))"
}

repl_setup 64M "al-extents = 7"
repl_start alpha BLKMIRROR_FAULT_FILE="$TESTDIR/fault.alpha"
bm alpha primary --force

msg "== 1. filling the activity log: no flush"
for e in 0 1 2 3 4 5 6; do
	write_ext "$e"
done
assert_eq "$(st alpha al_flushes)" 0 "flushes before any eviction"

msg "== 2. the first eviction flushes first"
write_ext 7
assert_eq "$(st alpha al_flushes)" 1 "flushes after the first eviction"

msg "== 3. flushes stalled: an evicting write waits"
# Every active extent written after that flush: the next victim needs one.
for e in 1 2 3 4 5 6 7; do
	write_ext "$e"
done
assert_eq "$(st alpha al_flushes)" 1 "flushes (no eviction)"
repl_fault alpha "flush:*:stall"
held_write 8 "a write that evicts an extent completed while the data flush was stalled"
assert_eq "$(st alpha al_flushes)" 2 "flushes (one stalled)"
# The daemon is not wedged: a write to an active extent completes.
write_ext 7
kill -0 "$WPID" 2>/dev/null || fail "the evicting write completed before the flush"
repl_fault alpha ""
held_write_done 8
assert_eq "$(st alpha al_flushes)" 2 "flushes after the stalled one"

msg "== 4. a victim flushed already: no new flush"
write_ext 9
write_ext 10
assert_eq "$(st alpha al_flushes)" 2 "flushes for victims written before the last flush"
qemu_io alpha -r -c "read -P 0x48 $((32 * M)) 4k" -c "read -P 0x4a $((40 * M)) 4k" \
    -c "read -P 0x40 0 4k"
repl_stop alpha

msg "== 5. connected: extents wait for the peer's flush"
repl_start alpha BLKMIRROR_TEST_PEER_FLUSH_MS=3600000
repl_start beta BLKMIRROR_FAULT_FILE="$TESTDIR/fault.beta"
repl_wait_connected 20
bm alpha primary
repl_wait_synced 60
for e in 0 1 2 3 4 5 6; do
	write_ext "$e"
done
assert_eq "$(st alpha al_starved_flushes)" 0 "early FLUSHes before the log is full"
assert_eq "$(st alpha peer_flushes)" 0 "own FLUSHes (the timer is off)"
repl_fault beta "flush:*:stall"
held_write 7 "an eviction went ahead while the peer had not flushed the victim's writes"
assert_eq "$(st alpha al_starved_flushes)" 1 "early FLUSHes"
repl_fault beta ""
held_write_done 7
assert_eq "$(st alpha al_starved_flushes)" 1 "early FLUSHes after the write"
repl_wait_synced 30
repl_compare
repl_stop alpha
repl_stop beta
msg "ok"
