#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# blkmirrorctl's replication commands (primary, secondary, connect,
# disconnect, resync, invalidate, verify, pause-sync, resume-sync,
# new-current-uuid) and the replication part of status:
#   - against a real STANDALONE daemon: every command is refused with exit 1
#     and exactly one line carrying the daemon's reason, and the daemon
#     carries on;
#   - raw requests: arguments that are not true/false or that the command
#     does not know are refused before the command runs;
#   - argument parsing: unknown or misplaced options and bad values give
#     EX_USAGE (64) with one line naming the usage, --help prints the usage
#     and exits 0 (without a daemon);
#   - against fake_ctl.py, a scripted control socket that answers as a
#     two-node daemon: the arguments sent on the wire, primary's polling
#     until the role changed (and its time-out), verify's subscription
#     before the request and its end on "verify-done" (or on a link loss,
#     the daemon going away or ending the subscription: "overflow"),
#     events ending on "overflow", resync --wait, and the status table.

source "${SRCDIR:?}/tests/functions.sh"
requires python3

# assert_err RC WANT_RC REGEX: the exit code, one stderr line matching REGEX.
assert_err()
{
	local rc=$1 want=$2 re=$3
	assert_eq "$rc" "$want" "exit code ($(cat "$TESTDIR/err"))"
	assert_eq "$(wc -l <"$TESTDIR/err")" 1 "stderr lines ($(cat "$TESTDIR/err"))"
	assert_match "$(cat "$TESTDIR/err")" "$re" "error message"
}

# Every command with the options that must pass parsing, and its usage.
declare -A usage=(
	[primary]='[--force] [--wait SECONDS]'
	[secondary]='[--wait SECONDS]'
	[connect]='[--discard-my-data]'
	[disconnect]=''
	[resync]='[--wait SECONDS]'
	[invalidate]='[--wait SECONDS]'
	[verify]='[--no-wait | --wait SECONDS]'
	[pause-sync]=''
	[resume-sync]=''
	[new-current-uuid]='--clear-bitmap'
)
invocations=(
	"primary" "primary --force" "primary --wait 1" "primary --force --wait=2"
	"secondary" "secondary --wait 1"
	"connect" "connect --discard-my-data" "disconnect"
	"resync" "resync --wait 1" "invalidate" "invalidate --wait=1"
	"verify" "verify --no-wait" "verify --wait 1" "pause-sync" "resume-sync"
	"new-current-uuid --clear-bitmap"
)

make_disk "$TESTDIR/disk.img" 16M
standalone_conf "$TESTDIR/r0.conf" "$TESTDIR/disk.img"
start_daemon "$TESTDIR/r0.conf"

# ---- a standalone resource refuses every replication command ----
for inv in "${invocations[@]}"; do
	read -r -a words <<<"$inv"
	ctl "${words[@]}" >"$TESTDIR/out" 2>"$TESTDIR/err"
	assert_err $? 1 "^blkmirrorctl: ${words[0]}: resource r0 is standalone \(one node configured\)$"
	assert_eq "$(cat "$TESTDIR/out")" "" "$inv: stdout"
done
pid_alive "$DAEMON_PID" || fail "the daemon died on the refused commands"
assert_eq "$(status_field replication)" off "status replication (standalone)"
assert_eq "$(status_field role)" primary "role unchanged"
assert_eq "$(status_field clients)" 0 "no NBD client"
table=$(ctl status) || fail "status failed"
assert_match "$table" '^replication +off$' "table: replication off"
if grep -Eq '^(peer|epoch|out of sync|uuids) ' <<<"$table"; then
	fail "standalone table shows two-node fields: $table"
fi
log_has "notice: control: (primary|secondary|connect|disconnect|resync|invalidate|verify|pause-sync|resume-sync|new-current-uuid)$" &&
    fail "the daemon logged a refused command as done"

# ---- raw requests: arguments are checked before the command runs ----
# Only true/false for a boolean ("false" as a string is not false, and once
# forced a promotion), and only the keys the command knows (a misspelt one
# is not silently ignored).  Accepted arguments reach the command's check.
python3 - "$CTL_SOCK" >"$TESTDIR/raw.out" 2>&1 <<'EOF2' || fail "raw argument checks: $(cat "$TESTDIR/raw.out")"
import json, socket, sys
def call(cmd, args):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sys.argv[1])
    s.sendall((json.dumps({"cmd": cmd, "args": args}) + "\n").encode())
    buf = b""
    while b"\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, "closed without a reply"
        buf += chunk
    s.close()
    return json.loads(buf.split(b"\n", 1)[0])
standalone = "resource r0 is standalone (one node configured)"
cases = [
    ("primary", {"force": "false"}, "args.force must be true or false"),
    ("primary", {"force": 0}, "args.force must be true or false"),
    ("primary", {"force": None}, "args.force must be true or false"),
    ("primary", {"froce": True}, "command 'primary' has no argument 'froce' (it takes: force)"),
    ("connect", {"discard_my_data": "yes"}, "args.discard_my_data must be true or false"),
    ("connect", {"discard-my-data": True},
     "command 'connect' has no argument 'discard-my-data' (it takes: discard_my_data)"),
    ("new-current-uuid", {"clear_bitmap": 1}, "args.clear_bitmap must be true or false"),
    ("secondary", {"force": True}, "command 'secondary' takes no arguments"),
    ("resync", {"wait": 5}, "command 'resync' takes no arguments"),
    ("verify", {"no_wait": True}, "command 'verify' takes no arguments"),
    ("primary", {"force": False}, standalone),
    ("primary", {"force": True}, standalone),
    ("primary", {}, standalone),
    ("connect", {"discard_my_data": False}, standalone),
    ("new-current-uuid", {"clear_bitmap": True}, standalone),
]
for cmd, args, want in cases:
    r = call(cmd, args)
    assert r == {"ok": False, "error": want}, (cmd, args, r)
    print("refused as expected: %s %s: %s" % (cmd, json.dumps(args), r["error"]))
EOF2
msg "$(wc -l <"$TESTDIR/raw.out") raw requests with bad or good arguments answered as expected"
assert_eq "$(status_field role)" primary "role after the raw requests"

# ---- usage errors: 64 and one line with the usage ----
for cmd in "${!usage[@]}"; do
	u=${usage[$cmd]}
	want="usage: $cmd${u:+ $u})"
	ctl "$cmd" --bogus 2>"$TESTDIR/err"
	assert_err $? 64 "^blkmirrorctl: $cmd: unknown argument '--bogus' \(.*\)$"
	assert_eq "$(grep -o "(usage: .*" "$TESTDIR/err")" "($want" "$cmd: usage in the error"
	"$BLKMIRRORCTL" -s "$TESTDIR/nothere.sock" "$cmd" --help >"$TESTDIR/out" 2>"$TESTDIR/err"
	assert_eq $? 0 "$cmd --help exit code"
	assert_eq "$(head -n 1 "$TESTDIR/out")" \
	    "usage: blkmirrorctl [-s SOCKET | -c FILE [-n NODE]] $cmd${u:+ $u}" "$cmd --help"
	assert_eq "$(cat "$TESTDIR/err")" "" "$cmd --help: stderr"
done
# Options of another command, and bad values.
bad=(
	"secondary --force|unknown argument '--force'"
	"disconnect --discard-my-data|unknown argument '--discard-my-data'"
	"verify --wait 5 --no-wait|--no-wait and --wait exclude each other"
	"verify --wait 0|--wait wants a number from 1 to 604800, not '0'"
	"pause-sync now|unknown argument 'now'"
	"primary --forced|unknown argument '--forced'"
	"primary --wait|--wait needs a value"
	"primary --wait 0|--wait wants a number from 1 to 604800, not '0'"
	"resync --wait soon|--wait wants a number from 1 to 604800, not 'soon'"
	"invalidate --wait=-3|--wait wants a number from 1 to 604800, not '-3'"
	"new-current-uuid|--clear-bitmap is required"
)
for b in "${bad[@]}"; do
	read -r -a words <<<"${b%%|*}"
	ctl "${words[@]}" 2>"$TESTDIR/err"
	assert_err $? 64 "^blkmirrorctl: ${words[0]}: ${b#*|}"
done
"$BLKMIRRORCTL" -h >"$TESTDIR/out" || fail "blkmirrorctl -h failed"
for cmd in "${!usage[@]}"; do
	grep -q "^  $cmd" "$TESTDIR/out" || fail "blkmirrorctl -h does not list $cmd"
done
assert_eq "$(status_field clients)" 0 "daemon after the usage errors"

# ---- a scripted two-node daemon (fake_ctl.py) ----
FAKE_SOCK=$TESTDIR/fake.sock
REQ_LOG=$TESTDIR/requests.log

# fake SCENARIO: (re)start the fake daemon; its requests go to REQ_LOG.
fake()
{
	local i
	fake_stop
	rm -f "$FAKE_SOCK" "$REQ_LOG"
	: >"$REQ_LOG"
	python3 "$SRCDIR/tests/integration/fake_ctl.py" "$FAKE_SOCK" "$1" "$REQ_LOG" \
	    2>"$TESTDIR/fake.err" &
	FAKE_PID=$!
	for i in $(seq 100); do
		[ -S "$FAKE_SOCK" ] && return 0
		sleep 0.05
	done
	fail "fake_ctl.py did not start: $(cat "$TESTDIR/fake.err")"
}

fake_stop()
{
	if [ -n "${FAKE_PID:-}" ]; then
		kill "$FAKE_PID" 2>/dev/null
		wait "$FAKE_PID" 2>/dev/null
		FAKE_PID=
	fi
}
cleanup_fn fake_stop

# fctl ARGS...: blkmirrorctl on the fake socket, stdout in out, stderr in err.
fctl()
{
	timeout 20 "$BLKMIRRORCTL" -s "$FAKE_SOCK" "$@" >"$TESTDIR/out" 2>"$TESTDIR/err"
}

# requests: the logged requests as "conn cmd args" lines.
requests()
{
	python3 -c '
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    a = json.dumps(r["args"], sort_keys=True) if r["args"] is not None else "-"
    print(r["conn"], r["cmd"], a)' "$REQ_LOG"
}

# The arguments each command puts on the wire.
fake resync-wait
wire=(
	"primary --force|primary {\"force\": true}"
	"primary|primary -"
	"connect --discard-my-data|connect {\"discard_my_data\": true}"
	"connect|connect -"
	"disconnect|disconnect -"
	"pause-sync|pause-sync -"
	"resume-sync|resume-sync -"
	"new-current-uuid --clear-bitmap|new-current-uuid {\"clear_bitmap\": true}"
	"resync|resync -"
	"invalidate|invalidate -"
	"verify --no-wait|verify -"
)
for w in "${wire[@]}"; do
	read -r -a words <<<"${w%%|*}"
	: >"$REQ_LOG"
	fctl "${words[@]}" || fail "${w%%|*}: exit $? ($(cat "$TESTDIR/err"))"
	assert_eq "$(requests | head -n 1 | cut -d' ' -f2-)" "${w#*|}" "${w%%|*}: request"
	assert_eq "$(cat "$TESTDIR/out")" "" "${w%%|*}: stdout"
done
# resync without --wait does not ask for the status.
: >"$REQ_LOG"
fctl resync || fail "resync failed"
assert_eq "$(requests | cut -d' ' -f2 | tr '\n' ' ')" "resync " "resync: requests"

# primary polls the status until the role is primary.
fake promote-slow
fctl primary --force || fail "primary (slow promotion): exit $? ($(cat "$TESTDIR/err"))"
assert_eq "$(requests | cut -d' ' -f2 | tr '\n' ' ')" \
    "primary status status status status " "primary: request, then status until primary"
assert_eq "$(requests | cut -d' ' -f1 | sort -u)" 1 "primary: one connection"

# fctl_timed ARGS...: fctl, its exit code in rc and its run time in ms.
fctl_timed()
{
	local start
	start=$(date +%s%N)
	fctl "$@"
	rc=$?
	ms=$((($(date +%s%N) - start) / 1000000))
}

# ... and gives up after --wait seconds with the state it saw.
fake promote-never
fctl_timed primary --wait 1
assert_err $rc 75 "^blkmirrorctl: primary: gave up after 1 s: role is still secondary \(disk uptodate, replication established; the daemon's log says why\)$"
assert_ge "$ms" 1000 "primary --wait 1: ms before giving up"
[ "$ms" -lt 5000 ] || fail "primary --wait 1 took $ms ms"
assert_ge "$(requests | grep -c ' status ')" 5 "primary: status polls in 1 s"

# verify: subscribed before the request; verify-done ends it.
fake verify
fctl verify || fail "verify: exit $? ($(cat "$TESTDIR/err"))"
assert_eq "$(cat "$TESTDIR/out")" \
    "verify: 3145728 bytes differ (marked out of sync; run 'blkmirrorctl resync' to repair)" \
    "verify: output"
assert_eq "$(requests | tr '\n' ';')" "1 events -;2 verify -;3 status -;" \
    "verify: events first, then verify, then status (each on its own connection)"

# A verify-done while a verify still runs (the peer's) does not end it.
fake verify-again
fctl verify || fail "verify (again): exit $? ($(cat "$TESTDIR/err"))"
assert_match "$(cat "$TESTDIR/out")" '^verify: 3145728 bytes differ' "verify (again): output"
assert_eq "$(requests | grep -c ' status ')" 2 "verify (again): status after each verify-done"

# A state event older than the verify (before its verify-start) does not
# end the wait.
fake verify-old-state
fctl verify || fail "verify (old state event): exit $? ($(cat "$TESTDIR/err"))"
assert_match "$(cat "$TESTDIR/out")" '^verify: 3145728 bytes differ' "verify (old state event): output"

# The link going down or the daemon going away ends it with an error.
fake verify-link-down
fctl verify
assert_err $? 1 "^blkmirrorctl: verify: interrupted: replication is now connecting: peer: link down: timeout$"
fake verify-gone
fctl verify
assert_err $? 69 "^blkmirrorctl: verify: the daemon went away before the verify finished$"
# The daemon ending the subscription (overflow) is not the daemon going away.
fake verify-overflow
fctl verify
assert_err $? 75 "^blkmirrorctl: verify: lost track of the verify: the daemon ended the event subscription \(events lost from here on: this subscriber fell more than 1048576 bytes behind\); 'blkmirrorctl status' shows whether it still runs$"

# --wait bounds the wait for a verify that does not end; it goes on.
fake verify-slow
fctl_timed verify --wait 1
assert_err $rc 75 "^blkmirrorctl: verify: gave up after 1 s: the verify still runs in the daemon \('blkmirrorctl status' shows its progress and result\)$"
assert_ge "$ms" 1000 "verify --wait 1: ms before giving up"
[ "$ms" -lt 5000 ] || fail "verify --wait 1 took $ms ms"
assert_eq "$(requests | cut -d' ' -f2 | tr '\n' ' ')" "events verify " "verify --wait: requests"

# events: an overflow is printed, then reported with EX_TEMPFAIL (not the
# exit 0 of a daemon that went away).
fake events-overflow
fctl events
assert_err $? 75 "^blkmirrorctl: events: the daemon ended the subscription \(events lost from here on: this subscriber fell more than 1048576 bytes behind\)$"
assert_eq "$(python3 -c '
import json, sys
print(" ".join(json.loads(l)["event"] for l in open(sys.argv[1])))' "$TESTDIR/out")" \
    "state state overflow" "events: lines printed before the overflow"

# resync --wait: until established with nothing out of sync.
fake resync-wait
fctl resync --wait 10 || fail "resync --wait: exit $? ($(cat "$TESTDIR/err"))"
assert_eq "$(requests | cut -d' ' -f2 | tr '\n' ' ')" "resync status status status status " \
    "resync --wait: status until in sync"
fake resync-off
fctl invalidate --wait 10
assert_err $? 1 "^blkmirrorctl: invalidate: replication is off, the resync cannot go on \(disconnected by blkmirrorctl\)$"

# ---- the status table's replication part; --json is the daemon's object ----
fake table
fctl status || fail "status (two nodes): exit $?"
table=$(cat "$TESTDIR/out")
assert_match "$table" '^replication +sync-source$' "table: replication"
assert_match "$table" '^peer +beta at 192\.0\.2\.2:7789, connected$' "table: peer"
assert_match "$table" '^peer role +secondary$' "table: peer role"
assert_match "$table" '^peer disk +inconsistent$' "table: peer disk"
assert_match "$table" '^epoch +4$' "table: epoch"
assert_match "$table" '^out of sync +48\.0 MiB \(50331648 bytes\)$' "table: out of sync"
assert_match "$table" \
    '^resync +16\.0 MiB of 64\.0 MiB \(25\.0%\), 8\.0 MiB/s, 0h 00m 06s left$' \
    "table: resync progress"
assert_match "$table" '^uuids +current 00000000000000a5, bitmap 0000000000000000$' \
    "table: uuids"
assert_match "$table" '^uuid history +00000000000000a4$' "table: uuid history"
assert_match "$table" '^sent +1\.0 MiB \(1048576 bytes\)$' "table: bytes sent"
assert_match "$table" '^received +2\.0 KiB \(2048 bytes\)$' "table: bytes received"
assert_match "$table" '^protocol +sync$' "table: protocol"
if grep -q '^last error' <<<"$table"; then
	fail "table shows the last link error of a connected link"
fi
fctl status --json || fail "status --json (two nodes) failed"
python3 - "$TESTDIR/out" <<'EOF' || fail "status --json is not the daemon's object"
import json, sys
got = json.load(open(sys.argv[1]))
assert got["resync"]["done_bytes"] == 16 << 20, got
assert got["peer"]["node"] == "beta" and got["replication"] == "sync-source", got
assert got["uuids"]["history"][0] == "00000000000000a4", got
EOF
fake_stop
msg "PASS"
