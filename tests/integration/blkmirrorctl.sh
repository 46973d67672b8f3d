#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# blkmirrorctl against a real blkmirrord: status (table and --json) with
# counters that follow real NBD I/O, -c/-n socket lookup, one-line errors
# with sysexits codes (also EX_TEMPFAIL, not a hang, when a stopped daemon's
# listen backlog is full), the raw protocol's error handling, a second daemon
# refused without harming the first, events until the daemon goes away, and
# down waiting for the process to exit.

source "${SRCDIR:?}/tests/functions.sh"
requires python3 qemu-io

# assert_one_line_err RC WANT_RC REGEX: exit code and a single stderr line.
assert_one_line_err()
{
	local rc=$1 want=$2 re=$3 lines
	assert_eq "$rc" "$want" "exit code ($(cat "$TESTDIR/err"))"
	lines=$(wc -l <"$TESTDIR/err")
	assert_eq "$lines" 1 "stderr lines ($(cat "$TESTDIR/err"))"
	assert_match "$(cat "$TESTDIR/err")" "$re" "error message"
}

# Kill a helper process at exit if it still runs.
quiet_kill()
{
	kill "$1" 2>/dev/null
	return 0
}

# Continue a stopped daemon at exit if it still runs.
cont_quietly()
{
	kill -CONT "$1" 2>/dev/null
	return 0
}

make_disk "$TESTDIR/disk.img" 64M
standalone_conf "$TESTDIR/r0.conf" "$TESTDIR/disk.img"
start_daemon "$TESTDIR/r0.conf"

# ---- status --json: valid JSON with the documented members ----
js=$(ctl status --json) || fail "status --json failed"
assert_eq "$(jget "$js" resource)" r0 "resource"
assert_eq "$(jget "$js" node)" alpha "node"
assert_eq "$(jget "$js" role)" primary "role"
assert_eq "$(jget "$js" disk)" uptodate "disk"
assert_eq "$(jget "$js" connection)" standalone "connection"
assert_eq "$(jget "$js" size_bytes)" $((64 << 20)) "size_bytes"
assert_eq "$(jget "$js" block_size)" 4096 "block_size"
assert_eq "$(jget "$js" protocol)" sync "protocol"
assert_eq "$(jget "$js" clients)" 0 "clients"
assert_eq "$(jget "$js" stopping)" false "stopping"
assert_match "$(jget "$js" io_engine)" '^(io_uring|libaio|sync)$' "io_engine"
assert_eq "$(jget "$js" listeners.0.kind)" nbd "first listener"
assert_eq "$(jget "$js" listeners.0.address)" "unix:$NBD_SOCK" "NBD address"
assert_eq "$(jget "$js" listeners.1.kind)" control "second listener"
assert_eq "$(jget "$js" listeners.1.address)" "unix:$CTL_SOCK" "control address"
assert_eq "$(jget "$js" ops.writes)" 0 "writes before I/O"
engine=$(jget "$js" io_engine)
assert_eq "$(stat -c %a "$CTL_SOCK")" 600 "control socket mode"

# ---- counters follow real I/O ----
qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0x5a 1M 64k' \
    -c 'read -P 0x5a 0 1M' -c flush "$NBD_URI" >"$TESTDIR/qemu-io.out" ||
    fail "qemu-io failed: $(cat "$TESTDIR/qemu-io.out")"
assert_eq "$(status_field ops.writes)" 2 "ops.writes"
assert_eq "$(status_field ops.write_bytes)" $((1048576 + 65536)) "ops.write_bytes"
assert_ge "$(status_field ops.reads)" 1 "ops.reads"
assert_ge "$(status_field ops.flushes)" 1 "ops.flushes"
assert_eq "$(status_field ops.errors)" 0 "ops.errors"
assert_eq "$(status_field clients_total)" 1 "clients_total"

# ---- the human table shows the same state ----
table=$(ctl status) || fail "status failed"
assert_match "$table" '^resource +r0$' "table resource"
assert_match "$table" '^role +primary$' "table role"
assert_match "$table" '^disk +uptodate$' "table disk"
assert_match "$table" '^connection +standalone$' "table connection"
if [ "$(status_field direct_io)" = true ]; then mode="O_DIRECT"; else mode="page cache"; fi
assert_match "$table" "^io engine +$engine \\($mode\\)\$" "table io engine"
assert_match "$table" '^size +64\.0 MiB \(67108864 bytes\)$' "table size"
assert_match "$table" '^write +2 +1114112$' "table write counters"
assert_match "$table" "control unix:$CTL_SOCK" "table listeners"

# ---- -c FILE [-n NODE] finds the same socket ----
js2=$("$BLKMIRRORCTL" -c "$TESTDIR/r0.conf" -n alpha status --json) || fail "-c -n status failed"
assert_eq "$(jget "$js2" node)" alpha "status via -c"
"$BLKMIRRORCTL" -c "$TESTDIR/r0.conf" -n nosuch status 2>"$TESTDIR/err"
assert_one_line_err $? 78 "no \[node nosuch\] section"
"$BLKMIRRORCTL" -c "$TESTDIR/missing.conf" status 2>"$TESTDIR/err"
assert_one_line_err $? 78 "missing.conf"

# ---- one clear line and a sysexits code on every failure ----
"$BLKMIRRORCTL" -s "$TESTDIR/nothere.sock" status 2>"$TESTDIR/err"
assert_one_line_err $? 69 "^blkmirrorctl: cannot connect to $TESTDIR/nothere.sock: No such file or directory \(is blkmirrord running\?\)$"
"$BLKMIRRORCTL" status 2>"$TESTDIR/err"
assert_one_line_err $? 64 "give -s SOCKET or -c FILE"
"$BLKMIRRORCTL" -s "$CTL_SOCK" frob 2>"$TESTDIR/err"
assert_one_line_err $? 64 "unknown command 'frob'"
"$BLKMIRRORCTL" -s "$CTL_SOCK" status --bogus 2>"$TESTDIR/err"
assert_one_line_err $? 64 "unknown argument '--bogus'"
"$BLKMIRRORCTL" -s "$CTL_SOCK" -c "$TESTDIR/r0.conf" status 2>"$TESTDIR/err"
assert_one_line_err $? 64 "exclude each other"
"$BLKMIRRORCTL" 2>"$TESTDIR/err"
assert_one_line_err $? 64 "no command given"
"$BLKMIRRORCTL" -s "$CTL_SOCK" down --timeout 0 2>"$TESTDIR/err"
assert_one_line_err $? 64 "--timeout wants a number"
"$BLKMIRRORCTL" -s "$CTL_SOCK" status --help >"$TESTDIR/out"
assert_eq $? 0 "status --help"
assert_match "$(cat "$TESTDIR/out")" "status \[--json\]" "status usage"
pid_alive "$DAEMON_PID" || fail "the daemon died during the error checks"

# ---- a stopped daemon whose listen backlog is full: connect is bounded ----
# connect(2) on a UNIX socket blocks while the backlog is full; blkmirrorctl
# must give up after its 10 s answer timeout with EX_TEMPFAIL, not hang.
cleanup_fn cont_quietly "$DAEMON_PID"
kill -STOP "$DAEMON_PID"
python3 - "$CTL_SOCK" "$BLKMIRRORCTL" >"$TESTDIR/stopped.out" 2>"$TESTDIR/err" <<'EOF2'
import socket, subprocess, sys, time
held = []
while len(held) < 1000:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(sys.argv[1])
    except BlockingIOError:
        s.close()
        break
    held.append(s)
assert 0 < len(held) < 1000, "could not fill the backlog (%d)" % len(held)
t0 = time.monotonic()
r = subprocess.run(["timeout", "30", sys.argv[2], "-s", sys.argv[1], "status"],
                   stdout=subprocess.DEVNULL, stderr=sys.stderr)
print(r.returncode, int((time.monotonic() - t0) * 1000), len(held))
EOF2
rc=$?
kill -CONT "$DAEMON_PID"
[ "$rc" = 0 ] || fail "backlog check failed: $(cat "$TESTDIR/err")"
read -r st_rc st_ms st_held <"$TESTDIR/stopped.out"
msg "stopped daemon, $st_held connections in its backlog: exit $st_rc after $st_ms ms"
assert_one_line_err "$st_rc" 75 "^blkmirrorctl: cannot connect to $CTL_SOCK: the daemon accepted no connection within 10 s \\(stopped or overloaded\\?\\)$"
[ "$st_ms" -ge 9000 ] && [ "$st_ms" -le 12000 ] ||
    fail "blkmirrorctl gave up after $st_ms ms, expected about 10 s"
assert_eq "$(status_field resource)" r0 "status after the daemon was continued"

# ---- raw protocol: errors are answered, the daemon carries on ----
python3 - "$CTL_SOCK" <<'EOF' || fail "raw protocol check failed"
import json, socket, sys
# Send data, optionally half-close, read replies until the daemon closes.
def talk(data, half_close=False):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sys.argv[1])
    s.sendall(data)
    if half_close:
        s.shutdown(socket.SHUT_WR)
    buf = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        buf += chunk
    s.close()
    return [json.loads(l) for l in buf.decode().splitlines()]
r = talk(b"this is not json\n")
assert r == [{"ok": False, "error": "bad request: invalid JSON"}], r
r = talk(b"x" * 70000)
assert r == [{"ok": False, "error": "request line too long (max 65536 bytes)"}], r
r = talk(b'{"cmd":"frob"}\n{"cmd":"status"}\n', half_close=True)
assert r[0] == {"ok": False, "error": "unknown command 'frob'"}, r
assert r[1]["ok"] is True and r[1]["result"]["resource"] == "r0", r
EOF
assert_eq "$(status_field resource)" r0 "status after raw errors"

# ---- a second daemon on the same sockets is refused; the first is unharmed ----
"$BLKMIRRORD" -f -c "$TESTDIR/r0.conf" -n alpha >"$TESTDIR/second.log" 2>&1
rc=$?
assert_eq "$rc" 69 "second daemon exit code ($(tail -n 3 "$TESTDIR/second.log"))"
[ -S "$NBD_SOCK" ] || fail "the second daemon removed the first one's NBD socket"
[ -S "$CTL_SOCK" ] || fail "the second daemon removed the first one's control socket"
qemu-io -f raw -c 'read -P 0x5a 0 64k' "$NBD_URI" >/dev/null ||
    fail "NBD broken after a second daemon tried to start"
assert_eq "$(status_field resource)" r0 "control after a second daemon tried to start"

# ---- events: subscribed until the daemon goes away, then exit 0 ----
"$BLKMIRRORCTL" -s "$CTL_SOCK" events >"$TESTDIR/events.out" 2>"$TESTDIR/events.err" &
ev_pid=$!
cleanup_fn quiet_kill "$ev_pid"
# A second subscriber interrupted by SIGINT exits 0 too.
"$BLKMIRRORCTL" -s "$CTL_SOCK" events >/dev/null 2>"$TESTDIR/events2.err" &
ev2_pid=$!
cleanup_fn quiet_kill "$ev2_pid"
sleep 0.5
pid_alive "$ev_pid" || fail "events exited early: $(cat "$TESTDIR/events.err")"
# SIGINT once its handler is in place (SigCgt has bit 1), not before.
for i in $(seq 100); do
	cgt=$(awk '/^SigCgt:/ { print $2 }' "/proc/$ev2_pid/status" 2>/dev/null)
	[ -n "$cgt" ] && (( 0x$cgt & 2 )) && break
	sleep 0.1
done
kill -INT "$ev2_pid"
wait "$ev2_pid"
assert_eq $? 0 "events after SIGINT ($(cat "$TESTDIR/events2.err"))"

# ---- down: replies, waits until the process is gone ----
ctl down || fail "down failed"
pid_alive "$DAEMON_PID" && fail "down returned while the daemon still runs"
wait_daemon_exit "$DAEMON_PID"
[ -e "$CTL_SOCK" ] && fail "control socket left behind after down"
for i in $(seq 50); do
	pid_alive "$ev_pid" || break
	sleep 0.1
done
wait "$ev_pid"
assert_eq $? 0 "events when the daemon went away ($(cat "$TESTDIR/events.err"))"
"$BLKMIRRORCTL" -s "$CTL_SOCK" down 2>"$TESTDIR/err"
assert_one_line_err $? 69 "is blkmirrord running"
log_has "control: client [0-9]+ asked the daemon to stop" ||
    fail "the daemon did not log who stopped it"
msg "PASS"
