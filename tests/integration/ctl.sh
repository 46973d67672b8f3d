#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# The daemon's command line and configuration handling, seen from outside,
# and the control socket's basic commands:
#   - bad configuration files: non-zero exit and "FILE:LINE: key: ..." on
#     stderr, nothing left behind (unknown key, unknown section, bad
#     block-size, bad io-engine, bad nbd-listen, duplicate key, missing
#     disk, missing [resource]);
#   - a disk path that does not exist, an unknown node, a missing file;
#   - status (table and --json), events lines are JSON, down exits 0 and
#     removes the sockets, SIGTERM exits 0;
#   - a second daemon (another config) on the same control socket is
#     refused and the first one keeps working;
#   - without -f the starting command returns once the daemon is ready
#     (its control socket answers at once), or with the daemon's exit
#     status and its error on stderr when start-up fails.

source "$SRCDIR/tests/functions.sh"
requires python3 nbdinfo timeout

# run_bad CONF REGEX WHAT [RC]: the daemon must refuse CONF within 10 s with
# exit status RC (default 78, EX_CONFIG), a stderr line matching REGEX and
# no sanitizer report.
run_bad()
{
	local conf=$1 re=$2 what=$3 want=${4:-78} rc
	timeout 10 "$BLKMIRRORD" -c "$conf" -n alpha -f \
	    >"$TESTDIR/bad.out" 2>"$TESTDIR/bad.err"
	rc=$?
	[ "$rc" -ne 124 ] || fail "$what: the daemon did not exit (hangs)"
	[ "$rc" -ne 0 ] || fail "$what: the daemon accepted it"
	[ "$rc" -lt 128 ] || fail "$what: the daemon died of signal $((rc - 128))"
	if grep -Eq 'Sanitizer|runtime error:' "$TESTDIR/bad.err"; then
		cat "$TESTDIR/bad.err" >&2
		fail "$what: sanitizer report"
	fi
	[ "$rc" -eq "$want" ] ||
	    { cat "$TESTDIR/bad.err" >&2; fail "$what: exit status $rc, expected $want"; }
	if ! grep -Eq -- "$re" "$TESTDIR/bad.err"; then
		cat "$TESTDIR/bad.err" >&2
		fail "$what: no stderr line matching /$re/"
	fi
	[ -e "$TESTDIR/bad.ctl.sock" ] && fail "$what: control socket left behind"
	[ -e "$TESTDIR/bad.nbd.sock" ] && fail "$what: NBD socket left behind"
	msg "refused as expected: $what: $(grep -E -- "$re" "$TESTDIR/bad.err" | head -n 1)"
}

# bad_conf BODY: a config file whose [node alpha] part is correct unless
# BODY says otherwise; BODY is the whole file with @DISK@ and @T@ replaced.
bad_conf()
{
	sed -e "s|@DISK@|$TESTDIR/disk.img|g" -e "s|@T@|$TESTDIR|g" \
	    >"$TESTDIR/bad.conf"
}

make_disk "$TESTDIR/disk.img" 32M
B=$TESTDIR/bad.conf

# ---- configuration errors: FILE:LINE: key: message ----
bad_conf <<'EOF'
[resource]
name = r0
bogus = 1
[node alpha]
disk = @DISK@
control = @T@/bad.ctl.sock
EOF
run_bad "$B" "(^|: )$B:3: bogus: " "unknown key"

bad_conf <<'EOF'
[resource]
name = r0
protocol = sync
block-size = 1000
[node alpha]
disk = @DISK@
control = @T@/bad.ctl.sock
EOF
run_bad "$B" "(^|: )$B:4: block-size: " "bad block-size"

bad_conf <<'EOF'
[resource]
name = r0
io-engine = spdk
[node alpha]
disk = @DISK@
control = @T@/bad.ctl.sock
EOF
run_bad "$B" "(^|: )$B:3: io-engine: " "bad io-engine"

bad_conf <<'EOF'
[resource]
name = r0
[node alpha]
disk = @DISK@
nbd-listen = unix:@T@/bad.nbd.sock
nbd-listen = 127.0.0.1:notaport
control = @T@/bad.ctl.sock
EOF
run_bad "$B" "(^|: )$B:6: nbd-listen: " "bad nbd-listen"

bad_conf <<'EOF'
[resource]
name = r0
name = r1
[node alpha]
disk = @DISK@
control = @T@/bad.ctl.sock
EOF
run_bad "$B" "(^|: )$B:3: name: " "duplicate key"

bad_conf <<'EOF'
[resource]
name = r0
[frobnicate]
x = 1
[node alpha]
disk = @DISK@
control = @T@/bad.ctl.sock
EOF
run_bad "$B" "(^|: )$B:3: " "unknown section"

bad_conf <<'EOF'
[resource]
name = r0

[node alpha]
meta-disk = internal
nbd-listen = unix:@T@/bad.nbd.sock
control = @T@/bad.ctl.sock
EOF
run_bad "$B" "(^|: )$B:4: disk: " "missing disk"

bad_conf <<'EOF'
[node alpha]
disk = @DISK@
control = @T@/bad.ctl.sock
EOF
run_bad "$B" "(^|: )$B:0: \[resource\]: " "missing [resource]"

# ---- a disk that does not exist, an unknown node, a missing file ----
bad_conf <<'EOF'
[resource]
name = r0
[node alpha]
disk = @T@/no/such/disk.img
nbd-listen = unix:@T@/bad.nbd.sock
control = @T@/bad.ctl.sock
EOF
run_bad "$B" "$TESTDIR/no/such/disk.img.*(No such file|not found|does not exist)" \
    "missing disk path" 66

bad_conf <<'EOF'
[resource]
name = r0
[node beta]
disk = @DISK@
control = @T@/bad.ctl.sock
EOF
run_bad "$B" "alpha" "unknown node"

rm -f "$B"
run_bad "$B" "$B" "missing configuration file"

# ---- a good daemon: status, events, second daemon refused ----
standalone_conf "$TESTDIR/r0.conf" "$TESTDIR/disk.img" sync 4096
start_daemon "$TESTDIR/r0.conf"

js=$(ctl status --json) || fail "status --json"
for f in resource node role disk connection io_engine size_bytes block_size \
    clients ops.reads ops.writes ops.flushes ops.trims ops.zeroes; do
	jget "$js" "$f" >/dev/null || fail "status --json lacks $f"
done
assert_eq "$(jget "$js" resource)" r0 "resource"
assert_eq "$(jget "$js" node)" alpha "node"
assert_eq "$(jget "$js" role)" primary "role"
assert_eq "$(jget "$js" io_engine)" sync "io_engine"
assert_eq "$(jget "$js" size_bytes)" $((32 << 20)) "size_bytes"
assert_eq "$(stat -c %a "$CTL_SOCK")" 600 "control socket mode"
table=$(ctl status) || fail "status"
[ "${table:0:1}" != "{" ] || fail "status without --json printed JSON"
for row in "resource +r0" "node +alpha" "role +primary" "io engine +sync( |$)"; do
	assert_match "$table" "^$row" "status table"
done

# events: a subscriber stays, every line it prints is a JSON event
"$BLKMIRRORCTL" -s "$CTL_SOCK" events >"$TESTDIR/events.out" \
    2>"$TESTDIR/events.err" &
ev_pid=$!
cleanup_kill "$ev_pid"
sleep 0.3

# a second daemon, other disk and NBD socket, same control socket: refused
make_disk "$TESTDIR/disk2.img" 32M
sed -e "s|$TESTDIR/disk.img|$TESTDIR/disk2.img|" \
    -e "s|^nbd-listen = .*|nbd-listen = unix:$TESTDIR/second.nbd.sock|" \
    "$TESTDIR/r0.conf" >"$TESTDIR/second.conf"
timeout 10 "$BLKMIRRORD" -c "$TESTDIR/second.conf" -n alpha -f \
    >"$TESTDIR/second.log" 2>&1
rc=$?
assert_refused "$rc" 69 "$(cat "$TESTDIR/second.log")" "second daemon on the same control socket"
grep -Eqi "$CTL_SOCK|in use|already|running" "$TESTDIR/second.log" ||
    { cat "$TESTDIR/second.log" >&2; fail "second daemon: no clear error"; }
[ -e "$TESTDIR/second.nbd.sock" ] && fail "second daemon left its NBD socket"
[ -S "$CTL_SOCK" ] || fail "second daemon removed the first one's socket"
assert_eq "$(status_field resource)" r0 "first daemon after the second one"
timeout 30 nbdinfo --size "$NBD_URI" >/dev/null || fail "NBD after the second daemon"

# down: exit 0, sockets removed, the subscriber ends
pid_alive "$ev_pid" || fail "events exited while subscribed: $(cat "$TESTDIR/events.err")"
ctl down || fail "down"
wait_daemon_exit "$DAEMON_PID"
[ -e "$CTL_SOCK" ] && fail "control socket left after down"
[ -e "$NBD_SOCK" ] && fail "NBD socket left after down"
for i in $(seq 100); do
	pid_alive "$ev_pid" || break
	sleep 0.1
done
pid_alive "$ev_pid" && fail "events still running after the daemon left"
python3 - "$TESTDIR/events.out" <<'EOF' || fail "events output"
import json, sys
for n, line in enumerate(open(sys.argv[1]), 1):
    ev = json.loads(line)
    assert isinstance(ev, dict), "line %d is not an object" % n
    assert isinstance(ev.get("event"), str), "line %d has no event" % n
    assert isinstance(ev.get("time"), (int, float)), "line %d has no time" % n
EOF
if ctl status >/dev/null 2>"$TESTDIR/err"; then
	fail "status answered with no daemon"
fi
[ -s "$TESTDIR/err" ] || fail "status with no daemon: no error message"

# SIGTERM: clean exit 0 (checked by stop_daemon)
start_daemon "$TESTDIR/r0.conf"
stop_daemon
[ -e "$CTL_SOCK" ] && fail "control socket left after SIGTERM"
# ---- without -f: detached, the starting command waits for it ----
bgconf()
{
	{
		echo "[resource]"
		echo "name = bg"
		echo "[node alpha]"
		echo "disk = $1"
		echo "nbd-listen = unix:$TESTDIR/bg.nbd.sock"
		echo "control = $TESTDIR/bg.ctl.sock"
	} | write_conf "$TESTDIR/bg.conf"
}
bgconf "$TESTDIR/nosuch.img"
timeout 20 "$BLKMIRRORD" -c "$TESTDIR/bg.conf" -n alpha >"$TESTDIR/bg.out" 2>"$TESTDIR/bg.err"
assert_eq "$?" 66 "status of a detached start whose disk is missing"
assert_match "$(cat "$TESTDIR/bg.err")" "cannot open disk $TESTDIR/nosuch.img" \
    "stderr of a detached start whose disk is missing"
[ -e "$TESTDIR/bg.ctl.sock" ] && fail "the failed detached start left its control socket"
make_disk "$TESTDIR/bg.img" 16M
bgconf "$TESTDIR/bg.img"
timeout 20 "$BLKMIRRORD" -c "$TESTDIR/bg.conf" -n alpha >"$TESTDIR/bg.out" 2>"$TESTDIR/bg.err" ||
    fail "detached start: status $? ($(cat "$TESTDIR/bg.err"))"
js=$("$BLKMIRRORCTL" -s "$TESTDIR/bg.ctl.sock" status --json) ||
    fail "the detached daemon's control socket does not answer right after the start"
bgpid=$(jget "$js" pid)
# Not our child (it detached): killed at the end only if still blkmirrord.
_kill_bg()
{
	grep -qa blkmirrord "/proc/$1/cmdline" 2>/dev/null && kill "$1" 2>/dev/null
	return 0
}
cleanup_fn _kill_bg "$bgpid"
assert_eq "$(jget "$js" resource)" bg "the detached daemon's resource"
"$BLKMIRRORCTL" -s "$TESTDIR/bg.ctl.sock" down || fail "down of the detached daemon"
for i in $(seq 100); do
	pid_alive "$bgpid" || break
	sleep 0.1
done
pid_alive "$bgpid" && fail "the detached daemon ($bgpid) did not exit after down"
msg "PASS"
