# SPDX-License-Identifier: BSD-2-Clause
# shellcheck shell=bash
#
# Sourced by every integration test (modelled on nbdkit's tests/functions.sh).
#
#   source "$SRCDIR/tests/functions.sh"
#
# Exit status of a test: 0 pass, 77 skip, anything else fail.
#
# Environment (set by tests/integration/meson.build):
#   BLKMIRRORD     path of the daemon binary
#   BLKMIRRORCTL   path of blkmirrorctl
#   SRCDIR         top of the source tree
#   BUILDDIR       top of the build tree
#   BLKMIRROR_TEST_TIMEOUT   seconds before the guard kills the test (300)
#   BLKMIRROR_TEST_KEEP=1    keep the test's temporary directory
#   BLKMIRROR_TEST_KEEP_FAILED=1   keep it only when the test fails
#
# What this file gives a test:
#   requires CMD...        skip (77) unless every CMD is on PATH
#   requires_root          skip unless running as root
#   requires_file PATH     skip unless PATH exists
#   cleanup_fn CMD...      run CMD at exit, in reverse order of registration
#   cleanup_kill PID       kill (SIGTERM) and reap a helper process at exit
#   $TESTDIR               a private temporary directory (removed at exit)
#   free_port              print an unused TCP port on 127.0.0.1
#   make_disk FILE SIZE    create a sparse file of SIZE (e.g. 64M)
#   attach_loop FILE       attach FILE to a loop device, set LOOP_DEV
#   detach_loop DEV        detach it before the end of the test
#   write_conf FILE        write a config read from stdin
#   standalone_conf FILE DISK [ENGINE] [BLOCK_SIZE] [TCP_PORT]
#                          write a one-node config; sets NBD_SOCK, CTL_SOCK,
#                          NBD_URI (unix), NBD_TCP_URI (if TCP_PORT)
#   start_daemon CONF [NODE]   start blkmirrord -f and wait until it answers
#                          (extra daemon arguments: the array DAEMON_ARGS);
#                          sets DAEMON_PID, DAEMON_LOG, CTL_SOCK
#   start_daemon_cmd CTL_SOCK LOG CMD...   same for an arbitrary command line
#   spawn_daemon LOG CMD...    start only (no wait); wait_daemon_ready SOCK
#   stop_daemon [PID]      SIGTERM the daemon and require exit 0 within 10 s
#   wait_daemon_exit PID   wait (10 s) for a daemon told to stop some other way
#   ctl ARGS...            blkmirrorctl -s "$CTL_SOCK" ARGS...
#   status_field PATH      one field of "status --json" (e.g. ops.writes)
#   jget JSON PATH         one field of a JSON document (PATH a.b.0.c)
#   log_has REGEX [LOG]    the daemon log has a matching line
#   pid_alive PID          PID runs (zombies count as dead)
#   fail MSG               print MSG and exit 1
#   assert_eq GOT WANT MSG, assert_ge GOT MIN MSG, assert_match TEXT REGEX MSG
#
# Daemons started here are stopped at exit with SIGTERM; one that does not
# exit 0 within 10 s, was already dead, or wrote a sanitizer report fails the
# test.  The guard kills the test after BLKMIRROR_TEST_TIMEOUT seconds (the
# cleanups still run).

set -u
set -o pipefail

: "${BLKMIRRORD:?BLKMIRRORD is not set (run the tests through meson test)}"
: "${BLKMIRRORCTL:?BLKMIRRORCTL is not set (run the tests through meson test)}"
: "${SRCDIR:?SRCDIR is not set}"
: "${BUILDDIR:?BUILDDIR is not set}"

TEST_NAME=$(basename "$0" .sh)
_cleanup_cmds=()		# registered cleanups (each one eval'd string)
_daemon_pids=()			# daemons started and not yet reaped
declare -A _daemon_log=()	# pid -> its log file
_test_failed=0			# set by cleanups that detect a failure

# ---- messages and assertions ----

# Print a message prefixed with the test's name, on stderr.
msg()
{
	echo "$TEST_NAME: $*" >&2
}

# Fail the test now (the cleanups still run).
fail()
{
	msg "FAIL: $*"
	_fail_mark
	exit 1
}

# Record a failure where the test's exit code cannot: a fail inside $(...)
# or a pipeline ends only that subshell, and the caller would go on with an
# empty value.  _run_cleanups fails the test when the mark exists.
_fail_mark()
{
	[ -n "${TESTDIR:-}" ] && [ -d "$TESTDIR" ] && : >>"$TESTDIR/.failed"
	return 0
}

# assert_eq GOT WANT WHAT: fail unless the two strings are equal.
assert_eq()
{
	if [ "$1" != "$2" ]; then
		fail "$3: got '$1', expected '$2'"
	fi
}

# assert_ge GOT MIN WHAT: fail unless the integer GOT >= MIN.
assert_ge()
{
	if ! [[ "$1" =~ ^-?[0-9]+$ ]] || [ "$1" -lt "$2" ]; then
		fail "$3: got '$1', expected at least $2"
	fi
}

# assert_match TEXT REGEX WHAT: fail unless TEXT matches the extended REGEX.
assert_match()
{
	# grep takes each line of a pattern as a pattern of its own, and an
	# empty one matches everything.
	case $2 in
	*$'\n'*) fail "$3: assert_match pattern /$2/ has a newline (use ^ and \$)" ;;
	esac
	if ! grep -Eq -- "$2" <<<"$1"; then
		fail "$3: '$1' does not match /$2/"
	fi
}

# assert_refused RC WANT TEXT WHAT: a command that must fail did, with exit
# status WANT and no sanitizer report in its output TEXT (under ASan an
# error report also ends in a non-zero status, which must not pass for the
# refusal).
assert_refused()
{
	if grep -Eq 'Sanitizer|runtime error:' <<<"$3"; then
		fail "$4: sanitizer report: $3"
	fi
	assert_eq "$1" "$2" "$4: exit status ($3)"
}

# ---- skipping ----

# requires CMD...: skip the test unless every CMD can be run.
requires()
{
	local c
	for c in "$@"; do
		if ! command -v "$c" >/dev/null 2>&1; then
			msg "SKIP: $c is not installed"
			exit 77
		fi
	done
}

# requires_root: skip unless we are root (loop devices, mount, FUSE).
requires_root()
{
	if [ "$(id -u)" -ne 0 ]; then
		msg "SKIP: needs root"
		exit 77
	fi
}

# requires_file PATH: skip unless PATH exists (e.g. /dev/fuse).
requires_file()
{
	if [ ! -e "$1" ]; then
		msg "SKIP: $1 does not exist"
		exit 77
	fi
}

# ---- cleanup ----

# cleanup_fn CMD [ARGS...]: run at exit, last registered first.
cleanup_fn()
{
	_cleanup_cmds+=("$(printf '%q ' "$@")")
}

# The EXIT trap: run every cleanup (each may fail on its own), then exit
# non-zero if one of them found a failure.
_run_cleanups()
{
	local rc=$? i
	set +e
	trap - EXIT INT TERM
	for ((i = ${#_cleanup_cmds[@]} - 1; i >= 0; i--)); do
		eval "${_cleanup_cmds[$i]}"
	done
	if [ "$rc" -eq 0 ] && [ "$_test_failed" -ne 0 ]; then
		rc=1
	fi
	if [ "$rc" -ne 1 ] && [ -e "$TESTDIR/.failed" ]; then
		msg "a check failed in a subshell (see FAIL above); the test fails"
		rc=1
	fi
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
		msg "test failed (exit $rc); files in $TESTDIR"
	fi
	if [ "${BLKMIRROR_TEST_KEEP:-0}" = 1 ] || { [ "$rc" -ne 0 ] &&
	    [ "$rc" -ne 77 ] && [ "${BLKMIRROR_TEST_KEEP_FAILED:-0}" = 1 ]; }; then
		msg "keeping $TESTDIR"
	else
		rm -rf "$TESTDIR"
	fi
	exit "$rc"
}
trap _run_cleanups EXIT
trap 'msg "interrupted"; exit 130' INT
trap 'msg "terminated (timeout guard?)"; exit 124' TERM

# cleanup_kill PID: kill a helper process (not a daemon) at exit if it
# still runs, and reap it.
cleanup_kill()
{
	cleanup_fn _kill_quietly "$1"
}

_kill_quietly()
{
	kill -TERM "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	return 0
}

# ---- temporary directory (short path: UNIX socket names are limited) ----

TESTDIR=$(mktemp -d "${TMPDIR:-/tmp}/bm-$TEST_NAME.XXXXXX") ||
    { echo "$TEST_NAME: mktemp failed" >&2; exit 1; }
export TESTDIR

# ---- timeout guard ----

# A background watchdog: after the timeout it records the fact and sends
# SIGTERM to the test shell and to its direct children other than the
# daemons (those are stopped by the cleanups, which then report).
_start_guard()
{
	local t=${BLKMIRROR_TEST_TIMEOUT:-300} me=$$
	(
		sleep "$t" </dev/null >/dev/null 2>&1 &
		sleeper=$!
		trap 'kill $sleeper 2>/dev/null; exit 0' TERM
		wait $sleeper
		echo "$TEST_NAME: timeout guard: ${t}s elapsed, killing the test" >&2
		: >"$TESTDIR/.timed-out"
		kill -TERM "$me" 2>/dev/null
		for c in $(cat "/proc/$me/task/$me/children" 2>/dev/null); do
			[ "$c" = "$BASHPID" ] && continue
			grep -qx "$c" "$TESTDIR/.daemons" 2>/dev/null && continue
			kill -TERM "$c" 2>/dev/null
		done
	) &
	_guard_pid=$!
	cleanup_fn _stop_guard
}

_stop_guard()
{
	kill -TERM "$_guard_pid" 2>/dev/null
	wait "$_guard_pid" 2>/dev/null
	if [ -e "$TESTDIR/.timed-out" ]; then
		_test_failed=1
	fi
}
_start_guard

# ---- small helpers ----

# jget JSON PATH: print one field of the JSON text (PATH like a.b.0.c);
# objects and arrays are printed as JSON, booleans as true/false.  Fails
# (status 1, message on stderr) when the path does not exist.
jget()
{
	python3 - "$1" "$2" <<'EOF'
import json, sys
v = json.loads(sys.argv[1])
for k in sys.argv[2].split("."):
    if isinstance(v, list):
        v = v[int(k)]
    elif isinstance(v, dict) and k in v:
        v = v[k]
    else:
        sys.exit("jget: no field %r in path %r" % (k, sys.argv[2]))
if isinstance(v, bool):
    print("true" if v else "false")
elif isinstance(v, (dict, list)) or v is None:
    print(json.dumps(v))
else:
    print(v)
EOF
}

# free_port: print a TCP port on 127.0.0.1 that nobody listens on now.
free_port()
{
	python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# make_disk FILE SIZE: a sparse regular file of SIZE (truncate syntax).
make_disk()
{
	rm -f "$1"
	truncate -s "$2" "$1" || fail "cannot create $1"
}

# attach_loop FILE: attach FILE to a free loop device, set LOOP_DEV to it;
# it is detached at exit unless detach_loop did it before.  (Not to be
# called in $(...): the cleanup must be registered in the test's shell.)
_loops=()			# loop devices attached and not yet detached
attach_loop()
{
	LOOP_DEV=$(losetup -f --show "$1") || fail "losetup -f --show $1 failed"
	if [ -z "${_loops_cleanup:-}" ]; then
		_loops_cleanup=1
		cleanup_fn _detach_all_loops
	fi
	_loops+=("$LOOP_DEV")
}

# detach_loop DEV: detach a loop device attach_loop gave us.
detach_loop()
{
	local l keep=()
	for l in ${_loops[@]+"${_loops[@]}"}; do
		[ "$l" = "$1" ] || keep+=("$l")
	done
	_loops=(${keep[@]+"${keep[@]}"})
	_detach_loop "$1" || fail "cannot detach $1"
}

# _detach_loop DEV: losetup -d, retried for 5 s while the device is busy.
_detach_loop()
{
	local i
	for i in $(seq 50); do
		losetup -d "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	msg "cannot detach $1"
	return 1
}

_detach_all_loops()
{
	local l
	for l in ${_loops[@]+"${_loops[@]}"}; do
		_detach_loop "$l" || _test_failed=1
	done
	_loops=()
}

# ---- configuration ----

# write_conf FILE: write the configuration given on stdin to FILE.
write_conf()
{
	cat >"$1" || fail "cannot write $1"
}

# standalone_conf FILE DISK [ENGINE [BLOCK_SIZE [TCP_PORT]]]: a one-node
# resource "r0" on node "alpha", NBD on a UNIX socket in $TESTDIR (and on
# 127.0.0.1:TCP_PORT if given); socket names derive from FILE's name.  Sets RES, NODE, NBD_SOCK, CTL_SOCK,
# NBD_URI, NBD_TCP_URI.
standalone_conf()
{
	local file=$1 disk=$2 engine=${3:-io_uring} bs=${4:-4096} port=${5:-}
	local base
	base=$(basename "$file" .conf)
	RES=r0
	NODE=alpha
	NBD_SOCK=$TESTDIR/$base.nbd.sock
	CTL_SOCK=$TESTDIR/$base.ctl.sock
	NBD_URI="nbd+unix:///$RES?socket=$NBD_SOCK"
	NBD_TCP_URI=
	if [ -n "$port" ]; then
		NBD_TCP_URI="nbd://127.0.0.1:$port/$RES"
	fi
	{
		echo "[resource]"
		echo "name = $RES"
		echo "protocol = sync"
		echo "io-engine = $engine"
		echo "block-size = $bs"
		echo "[node $NODE]"
		echo "disk = $disk"
		echo "meta-disk = internal"
		echo "nbd-listen = unix:$NBD_SOCK"
		if [ -n "$port" ]; then
			echo "nbd-listen = 127.0.0.1:$port"
		fi
		echo "control = $CTL_SOCK"
	} | write_conf "$file"
}

# conf_control CONF NODE: the control = path of NODE's section in CONF.
conf_control()
{
	awk -v node="$2" '
		/^[ \t]*\[/ { sect = $0; gsub(/^[ \t]*\[[ \t]*|[ \t]*\][ \t]*$/, "", sect) }
		sect == "node " node && /^[ \t]*control[ \t]*=/ {
			sub(/^[^=]*=[ \t]*/, ""); sub(/[ \t]*[;#].*$/, ""); print; exit
		}' "$1"
}

# ---- daemons ----

# ctl ARGS...: blkmirrorctl on the current control socket.
ctl()
{
	"$BLKMIRRORCTL" -s "$CTL_SOCK" "$@"
}

# status_field PATH: one field of status --json on $CTL_SOCK.
status_field()
{
	local js
	js=$(ctl status --json) || fail "blkmirrorctl status --json failed"
	jget "$js" "$1" || fail "status --json has no $1: $js"
}

# pid_alive PID: true while PID runs (a zombie counts as dead).
pid_alive()
{
	local st
	st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# start_daemon CONF [NODE]: start blkmirrord -f on CONF (node NODE, default
# $NODE or "alpha"), log in $TESTDIR/blkmirrord.N.log; waits until
# blkmirrorctl status answers.  Sets DAEMON_PID, DAEMON_LOG and CTL_SOCK.
# Extra daemon arguments may be given in the array DAEMON_ARGS.
start_daemon()
{
	local conf=$1 node=${2:-${NODE:-alpha}} sock
	sock=$(conf_control "$conf" "$node")
	[ -n "$sock" ] || fail "no control = for node $node in $conf"
	start_daemon_cmd "$sock" "" "$BLKMIRRORD" -c "$conf" -n "$node" -f \
	    ${DAEMON_ARGS[@]+"${DAEMON_ARGS[@]}"}
}

# start_daemon_cmd CTL_SOCK LOG CMD...: spawn_daemon, then wait_daemon_ready.
start_daemon_cmd()
{
	local sock=$1 log=$2
	shift 2
	spawn_daemon "$log" "$@"
	wait_daemon_ready "$sock"
}

# spawn_daemon LOG CMD...: run CMD (which must end up as the daemon process
# itself, e.g. through exec) in the background with its output in LOG
# (default $TESTDIR/blkmirrord.N.log), to be stopped and checked at exit.
# Sets DAEMON_PID and DAEMON_LOG.
spawn_daemon()
{
	local log=$1 pid
	shift
	[ -n "$log" ] || log=$TESTDIR/blkmirrord.${#_daemon_pids[@]}.log
	"$@" >"$log" 2>&1 &
	pid=$!
	_daemon_pids+=("$pid")
	_daemon_log[$pid]=$log
	echo "$pid" >>"$TESTDIR/.daemons"
	if [ -z "${_daemons_cleanup:-}" ]; then
		_daemons_cleanup=1
		cleanup_fn _stop_all_daemons
	fi
	DAEMON_PID=$pid
	DAEMON_LOG=$log
}

# wait_daemon_ready CTL_SOCK: wait up to 10 s until $DAEMON_PID answers
# status on CTL_SOCK; fails the test if it dies or does not.  Sets CTL_SOCK.
wait_daemon_ready()
{
	local sock=$1 i
	CTL_SOCK=$sock
	for i in $(seq 100); do
		if ! pid_alive "$DAEMON_PID"; then
			_show_log "$DAEMON_LOG"
			fail "daemon $DAEMON_PID exited during start-up"
		fi
		if [ -S "$sock" ] &&
		    "$BLKMIRRORCTL" -s "$sock" status --json >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	_show_log "$DAEMON_LOG"
	fail "daemon $DAEMON_PID not ready within 10 s (control socket $sock)"
}

# Print the tail of a daemon log on stderr, and the start of the first
# sanitizer report in it if there is one.
_show_log()
{
	local first
	first=$(grep -n -m 1 -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' \
	    "$1" 2>/dev/null | cut -d: -f1)
	if [ -n "$first" ]; then
		msg "---- sanitizer report in $1 ----"
		sed -n "$((first > 5 ? first - 5 : 1)),$((first + 60))p" "$1" >&2
	fi
	msg "---- last lines of $1 ----"
	tail -n 40 "$1" >&2 2>/dev/null
	msg "---- end of $1 ----"
}

# _forget_daemon PID: drop PID from the list of daemons to stop.
_forget_daemon()
{
	local p keep=()
	for p in "${_daemon_pids[@]}"; do
		[ "$p" = "$1" ] || keep+=("$p")
	done
	_daemon_pids=(${keep[@]+"${keep[@]}"})
}

# _reap PID WHAT: wait up to 10 s for PID to end, collect its status, check
# it is 0 and that its log has no sanitizer report.  Returns 0 or 1.
_reap()
{
	local pid=$1 what=$2 i rc log=${_daemon_log[$1]}
	for i in $(seq 100); do
		pid_alive "$pid" || break
		sleep 0.1
	done
	if pid_alive "$pid"; then
		msg "FAIL: daemon $pid did not exit within 10 s after $what"
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		_show_log "$log"
		return 1
	fi
	wait "$pid"
	rc=$?
	if [ "$rc" -ne 0 ]; then
		msg "FAIL: daemon $pid exited with status $rc after $what"
		_show_log "$log"
		return 1
	fi
	if grep -Eq 'Sanitizer|runtime error:' "$log"; then
		msg "FAIL: sanitizer report in $log"
		_show_log "$log"
		return 1
	fi
	return 0
}

# stop_daemon [PID]: SIGTERM the daemon (default $DAEMON_PID); fails the
# test unless it was alive and exits 0 within 10 s.
stop_daemon()
{
	local pid=${1:-$DAEMON_PID}
	if ! pid_alive "$pid"; then
		wait "$pid" 2>/dev/null
		_forget_daemon "$pid"
		_show_log "${_daemon_log[$pid]}"
		fail "daemon $pid was already dead at stop"
	fi
	kill -TERM "$pid"
	_forget_daemon "$pid"
	_reap "$pid" SIGTERM || fail "daemon $pid did not shut down cleanly"
}

# wait_daemon_exit [PID]: the daemon was told to stop (blkmirrorctl down):
# require exit 0 within 10 s.
wait_daemon_exit()
{
	local pid=${1:-$DAEMON_PID}
	_forget_daemon "$pid"
	_reap "$pid" "being told to stop" || fail "daemon $pid did not stop cleanly"
}

# Cleanup: stop every daemon still registered.
_stop_all_daemons()
{
	local pid
	for pid in ${_daemon_pids[@]+"${_daemon_pids[@]}"}; do
		if ! pid_alive "$pid"; then
			wait "$pid" 2>/dev/null
			msg "FAIL: daemon $pid was already dead at cleanup (status $?)"
			_show_log "${_daemon_log[$pid]}"
			_test_failed=1
			continue
		fi
		kill -TERM "$pid"
		_reap "$pid" "SIGTERM at cleanup" || _test_failed=1
	done
	_daemon_pids=()
}

# log_has REGEX [LOG]: true if the daemon log (default $DAEMON_LOG) has a
# line matching the extended, case-insensitive REGEX.
log_has()
{
	grep -Eqi -- "$1" "${2:-$DAEMON_LOG}"
}
