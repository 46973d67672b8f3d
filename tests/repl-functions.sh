# SPDX-License-Identifier: BSD-2-Clause
# shellcheck shell=bash
#
# Two-node replication tests: sourced after tests/functions.sh.
#
#   source "$SRCDIR/tests/functions.sh"
#   source "$SRCDIR/tests/repl-functions.sh"
#   repl_setup 128M                # netns, veth, loop disks, config, create-md
#   repl_start alpha; repl_start beta
#   bm alpha primary --force
#   repl_wait_synced 60
#   repl_fio alpha --rw=randwrite ...
#   repl_compare
#
# Topology: two network namespaces (bmt-PID-a, bmt-PID-b) joined by a veth
# pair, alpha at 192.0.2.1/24 and beta at 192.0.2.2/24; each daemon runs
# inside its namespace (ip netns exec), so its replication ports 7789/7790
# are its own.  Control and NBD sockets are UNIX paths in $TESTDIR, usable
# from the host namespace.  Disks are loop devices on sparse files.
#
# Variables set by repl_setup / repl_conf:
#   CONF                  the resource configuration
#   NS_alpha NS_beta      network namespace names
#   IP_alpha IP_beta      addresses
#   DISK_alpha DISK_beta  loop devices;  FILE_alpha FILE_beta their files
#   SOCK_alpha SOCK_beta  control sockets
#   NBD_alpha NBD_beta    NBD sockets;  URI_alpha URI_beta  NBD URIs
#   PID_alpha PID_beta    running daemons (repl_start)
#   LOG_alpha LOG_beta    their current logs (every start gets a new one)
#
# Functions:
#   repl_setup SIZE [CONF_LINES...]   everything up to create-md on both nodes
#   repl_conf [CONF_LINES...]  (re)write $CONF; lines go to [resource]
#                         ("protocol = async", "csums = xxh3", ...)
#   repl_start NODE [VAR=VALUE...]   start NODE's daemon (environment extras;
#                         config $CONF_NODE if set, else $CONF; extra daemon
#                         arguments from the array REPL_DAEMON_ARGS)
#   repl_stop NODE        SIGTERM; the daemon must exit 0
#   repl_kill NODE        SIGKILL (a crash), reaped
#   bm NODE COMMAND [--opt...]   an admin command (blkmirrorctl when it knows
#                         the command, else the raw control protocol)
#   bm_fails NODE COMMAND [--opt...]   the command must be refused
#   st NODE PATH          one field of NODE's status --json
#   repl_wait TIMEOUT EXPR   wait until the Python expression over a (alpha's
#                         status) and b (beta's) holds; fail on timeout
#   repl_wait1 NODE TIMEOUT EXPR   the same on one node (s = its status)
#   repl_wait_synced [TIMEOUT]   connected, established, both uptodate,
#                         nothing out of sync or pending on either node
#   repl_partition / repl_heal   drop / restore all traffic between the nodes
#                         (nftables table in beta's namespace)
#   repl_compare          the data areas (status size_bytes) of both disks
#                         must be identical byte for byte
#   repl_fio NODE FIO_ARGS...   fio's nbd engine on NODE's NBD socket
#   repl_fio_bg NODE FIO_ARGS... / repl_fio_wait   the same in the background
#   repl_events NODE      record NODE's event stream in $TESTDIR/events.NODE
#   repl_fault NODE SPEC  arm fault SPEC (BLKMIRROR_FAULT syntax; "" disarms)
#                         on NODE, started with
#                         BLKMIRROR_FAULT_FILE=$TESTDIR/fault.NODE
#   repl_show_logs        tail -50 of every daemon log of the test
# A failure (fail, timeout guard) prints the tail of both daemons' logs.

REPL_DATA_PORT=7789
# repl_tool ARGS...: tests/integration/repl_tool.py (see its usage).
repl_tool()
{
	python3 "$SRCDIR/tests/integration/repl_tool.py" "$@"
}

_repl_logs=()			# every daemon log of the test, in start order
_repl_logs_shown=0
declare -A _repl_nstarts=()	# node -> number of starts so far

# ---- failure reporting ----

# Print the tail of every daemon log of the test (once).
repl_show_logs()
{
	local l
	[ "$_repl_logs_shown" = 0 ] || return 0
	_repl_logs_shown=1
	for l in ${_repl_logs[@]+"${_repl_logs[@]}"}; do
		msg "---- tail -50 $l ----"
		tail -n 50 "$l" >&2 2>/dev/null
	done
	msg "---- end of daemon logs ----"
}

# fail MSG: as in functions.sh, with the daemon logs.
fail()
{
	msg "FAIL: $*"
	repl_show_logs
	_fail_mark
	exit 1
}

# A cleanup: show the logs when the test ends non-zero some other way (the
# timeout guard).  $rc is _run_cleanups' local (bash scoping is dynamic).
_repl_logs_at_exit()
{
	if [ "${rc:-0}" -ne 0 ] && [ "${rc:-0}" -ne 77 ]; then
		repl_show_logs
	fi
}

# ---- network ----

_repl_netns_del()
{
	local n
	for n in "$@"; do
		ip netns del "$n" 2>/dev/null
	done
	return 0
}

# _repl_net: two namespaces and a veth pair between them.
_repl_net()
{
	local va=bmv$$a vb=bmv$$b
	NS_alpha=bmt-$$-a
	NS_beta=bmt-$$-b
	IP_alpha=192.0.2.1
	IP_beta=192.0.2.2
	ip netns add "$NS_alpha" || fail "ip netns add $NS_alpha"
	cleanup_fn _repl_netns_del "$NS_alpha"
	ip netns add "$NS_beta" || fail "ip netns add $NS_beta"
	cleanup_fn _repl_netns_del "$NS_beta"
	ip link add "$va" netns "$NS_alpha" type veth peer name "$vb" \
	    netns "$NS_beta" || fail "cannot create the veth pair"
	ip -n "$NS_alpha" addr add "$IP_alpha/24" dev "$va" &&
	ip -n "$NS_beta" addr add "$IP_beta/24" dev "$vb" &&
	ip -n "$NS_alpha" link set lo up && ip -n "$NS_beta" link set lo up &&
	ip -n "$NS_alpha" link set "$va" up && ip -n "$NS_beta" link set "$vb" up ||
	    fail "cannot configure the veth pair"
	# Both ends must be up (carrier) before the daemons start.
	local i
	for i in $(seq 50); do
		ip -n "$NS_alpha" link show "$va" | grep -q LOWER_UP &&
		    ip -n "$NS_beta" link show "$vb" | grep -q LOWER_UP && return 0
		sleep 0.1
	done
	fail "the veth pair $va/$vb did not come up"
}

# repl_partition: drop every packet between the nodes (both directions),
# in beta's namespace; TCP sees silence, not resets.
repl_partition()
{
	ip netns exec "$NS_beta" nft -f - <<EOF || fail "nft: cannot partition"
table inet bmtest {
	chain input { type filter hook input priority 0; policy accept; ip saddr $IP_alpha drop; }
	chain output { type filter hook output priority 0; policy accept; ip daddr $IP_alpha drop; }
}
EOF
	msg "network partitioned"
}

# repl_heal: remove the partition.
repl_heal()
{
	ip netns exec "$NS_beta" nft delete table inet bmtest || fail "nft: cannot heal"
	msg "network healed"
}

# ---- clients ----

# qemu_io NODE ARGS...: qemu-io commands through NODE's NBD export.
qemu_io()
{
	local uri=URI_$1 out
	shift
	out=$(timeout 60 qemu-io -f raw "${!uri}" "$@" 2>&1) || fail "qemu-io $*: $out"
	if grep -Eqi "fail|error|mismatch" <<<"$out"; then
		fail "qemu-io $*: $out"
	fi
}

# qemu_io_fails NODE ARGS...: the commands must fail; prints the output.
qemu_io_fails()
{
	local uri=URI_$1 out
	shift
	out=$(timeout 60 qemu-io -f raw "${!uri}" "$@" 2>&1)
	grep -Eqi "error" <<<"$out" || fail "qemu-io $* did not fail: $out"
	echo "$out"
}

# ---- configuration and metadata ----

# repl_conf [LINE...]: write $CONF for resource r0 with nodes alpha and
# beta; LINEs are added to [resource] and replace the default of the same
# key (protocol sync, timeout 2s).  The secret file is $REPL_SECRET if set
# (default $TESTDIR/secret), the resource name $REPL_RES (default r0).
repl_conf()
{
	local l have_proto=0 have_timeout=0 n
	for l in "$@"; do
		case $l in
		protocol*) have_proto=1 ;;
		timeout*) have_timeout=1 ;;
		esac
	done
	{
		echo "[resource]"
		echo "name = ${REPL_RES:-r0}"
		echo "secret-file = ${REPL_SECRET:-$TESTDIR/secret}"
		[ "$have_proto" = 1 ] || echo "protocol = sync"
		[ "$have_timeout" = 1 ] || echo "timeout = 2s"
		for l in "$@"; do
			echo "$l"
		done
		for n in alpha beta; do
			local ip=IP_$n disk=DISK_$n
			echo "[node $n]"
			echo "disk = ${!disk}"
			echo "address = ${!ip}:$REPL_DATA_PORT"
			echo "nbd-listen = unix:$TESTDIR/$n.nbd"
			echo "control = $TESTDIR/$n.sock"
		done
	} | write_conf "$CONF"
}

# repl_create_md NODE [--force]
repl_create_md()
{
	local out
	out=$("$BLKMIRRORCTL" -c "$CONF" -n "$1" create-md "${@:2}" 2>&1) ||
	    fail "create-md on $1 failed: $out"
}

# repl_setup SIZE [CONF_LINES...]: namespaces, veth, two loop disks of
# SIZE, a secret, $CONF, metadata on both disks.
repl_setup()
{
	local size=$1 n
	shift
	requires_root
	requires ip nft python3 losetup
	cleanup_fn _repl_logs_at_exit
	_repl_net
	for n in alpha beta; do
		make_disk "$TESTDIR/$n.img" "$size"
		attach_loop "$TESTDIR/$n.img"
		printf -v "DISK_$n" %s "$LOOP_DEV"
		printf -v "FILE_$n" %s "$TESTDIR/$n.img"
		printf -v "SOCK_$n" %s "$TESTDIR/$n.sock"
		printf -v "NBD_$n" %s "$TESTDIR/$n.nbd"
		printf -v "URI_$n" %s "nbd+unix:///r0?socket=$TESTDIR/$n.nbd"
		_repl_nstarts[$n]=0
	done
	(umask 077 && echo "blkmirror test secret $$ $RANDOM" >"$TESTDIR/secret")
	CONF=$TESTDIR/r0.conf
	repl_conf "$@"
	for n in alpha beta; do
		repl_create_md "$n"
	done
}

# ---- daemons ----

_repl_other()
{
	[ "$1" = alpha ] && echo beta || echo alpha
}

# repl_start NODE [VAR=VALUE...]: start NODE's daemon in its namespace, with
# extra environment; waits until its control socket answers.
repl_start()
{
	local node=$1 ns=NS_$1 sock=SOCK_$1 conf=CONF_$1 k
	shift
	k=$((${_repl_nstarts[$node]} + 1))
	_repl_nstarts[$node]=$k
	spawn_daemon "$TESTDIR/$node.$k.log" env "$@" ip netns exec "${!ns}" \
	    "$BLKMIRRORD" -c "${!conf:-$CONF}" -n "$node" -f \
	    ${REPL_DAEMON_ARGS[@]+"${REPL_DAEMON_ARGS[@]}"}
	_repl_logs+=("$DAEMON_LOG")
	printf -v "PID_$node" %s "$DAEMON_PID"
	printf -v "LOG_$node" %s "$DAEMON_LOG"
	wait_daemon_ready "${!sock}"
}

# repl_stop NODE: SIGTERM, clean exit required.
repl_stop()
{
	local pid=PID_$1
	stop_daemon "${!pid}"
}

# repl_kill NODE: SIGKILL, as a crash.
repl_kill()
{
	local pid=PID_$1
	kill -KILL "${!pid}" 2>/dev/null || fail "$1's daemon (${!pid}) was not running"
	wait "${!pid}" 2>/dev/null
	_forget_daemon "${!pid}"
	msg "killed $1 (SIGKILL)"
}

# Does blkmirrorctl itself know COMMAND?  (Its --help lists the commands.)
_bmctl_knows()
{
	"$BLKMIRRORCTL" -h 2>&1 | grep -Eq "^  $1( |$)"
}

# _bm_run NODE COMMAND [--opt...]: run the command; output on stdout, the
# daemon's error on stderr; returns non-zero when refused.
_bm_run()
{
	local node=$1 cmd=$2 sock=SOCK_$1 o args=()
	shift 2
	if _bmctl_knows "$cmd"; then
		"$BLKMIRRORCTL" -s "${!sock}" "$cmd" "$@"
		return
	fi
	for o in "$@"; do
		o=${o#--}
		args+=("\"${o//-/_}\":true")
	done
	local IFS=,
	repl_tool cmd "${!sock}" "$cmd" "{${args[*]-}}" >/dev/null
}

# bm NODE COMMAND [--opt...]: an admin command that must succeed.
bm()
{
	local out
	out=$(_bm_run "$@" 2>&1) || fail "'$*' refused: $out"
	msg "$1: $2 ${*:3}: ok"
}

# bm_fails NODE COMMAND [--opt...]: must be refused; prints the error.
bm_fails()
{
	local out
	if out=$(_bm_run "$@" 2>&1); then
		fail "'$*' was accepted, expected a refusal"
	fi
	echo "$out"
}

# repl_status NODE: status --json of NODE.
repl_status()
{
	local sock=SOCK_$1
	repl_tool status "${!sock}" || fail "status of $1 failed"
}

# st NODE PATH: one status field (e.g. resync.shipped_bytes).
st()
{
	local js
	js=$(repl_status "$1") || exit 1
	jget "$js" "$2" || fail "status of $1 has no $2"
}

# first_byte NODE OFFSET: the byte at OFFSET on NODE's own disk (hex).
first_byte()
{
	local disk=DISK_$1
	dd if="${!disk}" bs=4k skip=$(($2 / 4096)) count=1 iflag=direct status=none |
	    od -An -tx1 -N1 | tr -d ' '
}

# repl_wait TIMEOUT EXPR [WHAT]: wait until EXPR (Python, over a = alpha's
# status, b = beta's) holds.
repl_wait()
{
	repl_tool wait "$1" "$2" "$SOCK_alpha" "$SOCK_beta" ||
	    fail "${3:-condition} not reached within $1 s: $2"
}

# repl_wait1 NODE TIMEOUT EXPR [WHAT]: the same on one node's status (s).
repl_wait1()
{
	local sock=SOCK_$1
	repl_tool wait "$2" "$3" "${!sock}" ||
	    fail "${4:-condition} not reached on $1 within $2 s: $3"
}

# Python condition: the two nodes are connected and in sync, nothing pending.
REPL_SYNCED='all(x["connection"] == "connected" and x["replication"] == "established"
    and x["disk"] == "uptodate" and x["peer"]["disk"] == "uptodate"
    and x["out_of_sync_bytes"] == 0 and x["pending_writes"] == 0
    and x["lag_bytes"] == 0 and not x["resync"]["verify_running"]
    for x in (a, b))'

# repl_wait_synced [TIMEOUT]
repl_wait_synced()
{
	repl_wait "${1:-60}" "$REPL_SYNCED" "in sync"
}

# repl_wait_connected [TIMEOUT]: the link is up (any replication state).
repl_wait_connected()
{
	repl_wait "${1:-30}" 'a["connection"] == "connected" and b["connection"] == "connected"
	    and a["replication"] not in ("off", "connecting")
	    and b["replication"] not in ("off", "connecting")' "connection"
}

# repl_compare: both data areas identical.  The exported sizes must agree
# and be smaller than the disks (internal metadata at the end).
repl_compare()
{
	local sa sb da out
	sa=$(st alpha size_bytes)
	sb=$(st beta size_bytes)
	assert_eq "$sa" "$sb" "exported sizes of alpha and beta"
	da=$(blockdev --getsize64 "$DISK_alpha")
	[ "$sa" -gt 0 ] && [ "$sa" -lt "$da" ] ||
	    fail "size_bytes $sa is not inside the disk ($da bytes)"
	out=$(repl_tool compare "$DISK_alpha" "$DISK_beta" "$sa" 2>&1) ||
	    fail "the disks differ: $out"
	msg "$out"
}

# repl_fio NODE FIO_ARGS...: fio's nbd engine against NODE.
repl_fio()
{
	local uri=URI_$1 out
	shift
	out=$(timeout 300 fio --ioengine=nbd --uri="${!uri}" --name=repl \
	    --output-format=terse --terse-version=3 "$@" 2>&1) ||
	    fail "fio $* failed: $out"
	# Terse lines: field 5 is the job's error code; fio prints verify
	# failures ("verify: bad magic", "crc32c: verify failed") besides.
	if awk -F';' '$1 == 3 && $5 != 0 { bad = 1 } END { exit !bad }' <<<"$out" ||
	    grep -Eqi 'verify|bad magic|error' <<<"$out"; then
		fail "fio $*: $out"
	fi
}

# repl_fio_bg NODE FIO_ARGS...: the same in the background; sets FIO_PID
# (output in $TESTDIR/fio.$FIO_PID).  repl_fio_wait checks its result.
repl_fio_bg()
{
	local uri=URI_$1
	shift
	timeout 300 fio --ioengine=nbd --uri="${!uri}" --name=repl \
	    --output-format=terse --terse-version=3 "$@" >"$TESTDIR/fio.out" 2>&1 &
	FIO_PID=$!
	cleanup_kill "$FIO_PID"
}

# repl_fio_wait: wait for the background fio; it must have succeeded.
repl_fio_wait()
{
	local out
	wait "$FIO_PID"
	local rc=$?
	out=$(cat "$TESTDIR/fio.out")
	[ "$rc" -eq 0 ] || fail "background fio failed (exit $rc): $out"
	if awk -F';' '$1 == 3 && $5 != 0 { bad = 1 } END { exit !bad }' <<<"$out" ||
	    grep -Eqi 'verify|bad magic|error' <<<"$out"; then
		fail "background fio: $out"
	fi
}

# repl_events NODE: record NODE's events in $TESTDIR/events.NODE.
repl_events()
{
	local sock=SOCK_$1 pid
	"$BLKMIRRORCTL" -s "${!sock}" events >"$TESTDIR/events.$1" 2>&1 &
	pid=$!
	cleanup_kill "$pid"
	printf -v "EVPID_$1" %s "$pid"
	sleep 0.2
}

# repl_fault NODE SPEC: write SPEC to NODE's fault file and signal NODE
# (SIGUSR1); waits for a new log line saying it is armed or disarmed.
repl_fault()
{
	local pid=PID_$1 log=LOG_$1 line="SIGUSR1: fault injection armed: $2" n _
	[ -n "$2" ] || line="SIGUSR1: fault injection disarmed"
	n=$(grep -cF -- "$line" "${!log}")
	echo "$2" >"$TESTDIR/fault.$1"
	kill -USR1 "${!pid}"
	for _ in $(seq 50); do
		[ "$(grep -cF -- "$line" "${!log}")" -gt "$n" ] && return 0
		sleep 0.1
	done
	fail "$1 did not arm fault '$2'"
}

# repl_log_has NODE REGEX: NODE's current log matches REGEX (ERE, any case).
repl_log_has()
{
	local log=LOG_$1
	grep -Eqi -- "$2" "${!log}"
}

# repl_crash_primary OFFSET SEED: alpha (the primary) is killed (SIGKILL)
# 3 s into a stream of 4 KiB random writes over 12 MiB from OFFSET; sets
# CRASH_AL_EXTENTS to the extents its activity log holds active (dump-md),
# restarts alpha (its log must name the crash), makes it primary again and
# waits until the AL-based resync has brought both in sync.
repl_crash_primary()
{
	local dump
	repl_fio_bg alpha --rw=randwrite --bs=4k --offset="$1" --size=12M --iodepth=16 \
	    --time_based --runtime=20 --randseed="$2"
	sleep 3
	repl_kill alpha
	wait "$FIO_PID" 2>/dev/null	# fails: its server died
	repl_wait1 beta 15 's["connection"] != "connected"' "beta sees alpha gone"
	assert_eq "$(st beta role)" secondary "beta after the primary crash (no auto-promotion)"
	dump=$("$BLKMIRRORCTL" -c "$CONF" -n alpha dump-md) || fail "dump-md alpha failed"
	msg "alpha's metadata after the crash: $(grep -E '^al-active-extents|^al-extent-list' <<<"$dump" | tr '\n' ' ')"
	CRASH_AL_EXTENTS=$(sed -n 's/^al-active-extents: //p' <<<"$dump")
	assert_ge "$CRASH_AL_EXTENTS" 3 "active AL extents after writing 12 MiB"
	repl_restart_crashed_primary
}

# repl_restart_crashed_primary: alpha, killed as primary, is started again
# (its log must name the crash), made primary and waited for until the
# AL-based resync has brought both in sync.
repl_restart_crashed_primary()
{
	repl_start alpha
	repl_log_has alpha "did not shut down cleanly" ||
	    fail "alpha's log does not mention the crash of a primary"
	repl_wait_connected 20
	bm alpha primary
	repl_wait_synced 60
}

# repl_up SIZE: the usual start of a test: two fresh nodes with SIZE disks,
# both daemons started and connected, alpha made primary with --force and
# the initial full sync finished.
repl_up()
{
	repl_setup "$1"
	repl_start alpha
	repl_start beta
	repl_wait_connected 20
	bm alpha primary --force
	repl_wait_synced 60
}
