#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Listeners from systemd socket activation (LISTEN_FDS/LISTEN_PID):
#   1. listen_fds.py hands over a TCP and a UNIX listener at once;
#   2. systemd-socket-activate -l 127.0.0.1:PORT starts the daemon on the
#      first connection;
#   3. libnbd's connect_systemd_socket_activation: nbdinfo/nbdcopy
#      [ blkmirrord ... ] run the daemon themselves on a private socket and
#      stop it with SIGTERM when done.
# The configurations have no nbd-listen: the passed sockets are the only
# way in.

source "$SRCDIR/tests/functions.sh"
requires python3 nbdinfo nbdcopy qemu-io cmp

SIZE=$((64 << 20))
make_disk "$TESTDIR/disk.img" "$SIZE"

# sa_conf NAME: a config without nbd-listen; control socket $TESTDIR/NAME.ctl.sock
sa_conf()
{
	write_conf "$TESTDIR/$1.conf" <<EOF
[resource]
name = r0
io-engine = io_uring
block-size = 4096
[node alpha]
disk = $TESTDIR/disk.img
control = $TESTDIR/$1.ctl.sock
EOF
}

# check_export URI: nbdinfo sees our export with its size and flags.
check_export()
{
	local js
	js=$(timeout 60 nbdinfo --json "$1") || fail "nbdinfo $1"
	assert_eq "$(jget "$js" exports.0.export-size)" "$SIZE" "size via $1"
	assert_eq "$(jget "$js" exports.0.can_multi_conn)" true "multi-conn via $1"
	assert_eq "$(jget "$js" exports.0.block_size_minimum)" 4096 "min block via $1"
}

# ---- 1. LISTEN_FDS=2: TCP and UNIX ----
msg "LISTEN_FDS with a TCP and a UNIX listener"
sa_conf fds
port=$(free_port)
usock=$TESTDIR/fds.nbd.sock
start_daemon_cmd "$TESTDIR/fds.ctl.sock" "" \
    python3 "$SRCDIR/tests/integration/listen_fds.py" \
    --tcp "127.0.0.1:$port" --unix "$usock" -- \
    "$BLKMIRRORD" -c "$TESTDIR/fds.conf" -n alpha -f
check_export "nbd://127.0.0.1:$port/r0"
check_export "nbd+unix:///r0?socket=$usock"
timeout 60 qemu-io -f raw "nbd://127.0.0.1:$port/r0" \
    -c 'write -P 0x5c 0 1M' >/dev/null || fail "qemu-io write over TCP"
timeout 60 qemu-io -f raw "nbd+unix:///r0?socket=$usock" \
    -c 'read -P 0x5c 0 1M' >/dev/null || fail "qemu-io read-back over UNIX"
js=$(ctl status --json) || fail "status"
n=$(python3 -c 'import json,sys; print(sum(1 for l in json.loads(sys.argv[1])["listeners"] if l["kind"] == "nbd"))' "$js") ||
    fail "status listeners: $js"
assert_eq "$n" 2 "NBD listeners (both passed sockets, nothing else)"
stop_daemon

# ---- 2. systemd-socket-activate ----
if command -v systemd-socket-activate >/dev/null; then
	msg "systemd-socket-activate -l 127.0.0.1:PORT"
	sa_conf ssa
	port=$(free_port)
	spawn_daemon "" systemd-socket-activate -l "127.0.0.1:$port" \
	    "$BLKMIRRORD" -c "$TESTDIR/ssa.conf" -n alpha -f
	for i in $(seq 100); do
		grep -q "Listening on" "$DAEMON_LOG" && break
		sleep 0.1
	done
	grep -q "Listening on" "$DAEMON_LOG" ||
	    { _show_log "$DAEMON_LOG"; fail "systemd-socket-activate did not listen"; }
	# the first connection starts the daemon, which then answers it
	check_export "nbd://127.0.0.1:$port/r0"
	wait_daemon_ready "$TESTDIR/ssa.ctl.sock"
	check_export "nbd://127.0.0.1:$port/"
	timeout 60 qemu-io -f raw "nbd://127.0.0.1:$port/r0" \
	    -c 'read -P 0x5c 0 1M' >/dev/null || fail "data over the activated socket"
	stop_daemon
else
	msg "systemd-socket-activate not installed: part 2 skipped"
fi

# ---- 3. libnbd runs the daemon: nbdinfo/nbdcopy [ CMD ] ----
msg "nbdinfo -- [ blkmirrord ... ]"
sa_conf lib
cmd=("$BLKMIRRORD" -c "$TESTDIR/lib.conf" -n alpha -f)
js=$(timeout 60 nbdinfo --json -- [ "${cmd[@]}" ] 2>"$TESTDIR/lib.err") ||
    { cat "$TESTDIR/lib.err" >&2; fail "nbdinfo [ blkmirrord ]"; }
assert_eq "$(jget "$js" exports.0.export-size)" "$SIZE" "size via nbdinfo [ ]"
assert_eq "$(jget "$js" exports.0.can_fua)" true "FUA via nbdinfo [ ]"
[ -e "$TESTDIR/lib.ctl.sock" ] && fail "daemon left its control socket (SIGTERM from libnbd)"

msg "nbdcopy file -> [ blkmirrord ] -> file"
head -c 16M /dev/urandom >"$TESTDIR/rand.bin" || fail "urandom"
timeout 120 nbdcopy -- "$TESTDIR/rand.bin" [ "${cmd[@]}" ] 2>>"$TESTDIR/lib.err" ||
    { cat "$TESTDIR/lib.err" >&2; fail "nbdcopy to [ blkmirrord ]"; }
timeout 120 nbdcopy -- [ "${cmd[@]}" ] "$TESTDIR/out.bin" 2>>"$TESTDIR/lib.err" ||
    { cat "$TESTDIR/lib.err" >&2; fail "nbdcopy from [ blkmirrord ]"; }
cmp -n $((16 << 20)) "$TESTDIR/rand.bin" "$TESTDIR/out.bin" ||
    fail "data through socket-activated daemons differs"
if grep -Eq 'Sanitizer|runtime error:' "$TESTDIR/lib.err"; then
	cat "$TESTDIR/lib.err" >&2
	fail "sanitizer report from a socket-activated daemon"
fi
[ -e "$TESTDIR/lib.ctl.sock" ] && fail "daemon left its control socket"
msg "PASS"
