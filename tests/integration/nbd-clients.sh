#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# nbd-clients.sh ENGINE [DIRECT [tuned]]: real NBD clients against a
# standalone volume using io engine ENGINE (io_uring | libaio | sync) and
# direct-io = DIRECT (yes, the default, or no: the page cache), with
# "tuned" also inline-writes = yes and busy-poll = 50us (status must show
# both at work, or busy polling off where the engine is not io_uring; and
# without "tuned" neither), on a loop device (when root)
# and on a regular file, over a UNIX socket and TCP:
#   nbdinfo   size, block sizes, flags, --list, --map (base:allocation)
#   qemu-io   pattern writes and verified reads, FUA, write-zeroes, discard
#   nbdcopy   random file -> NBD -> file, compared with cmp
#   fio       --ioengine=nbd, 4 jobs (multi-conn), --verify=crc32c
# and the status counters.  With BLKMIRROR_NO_IO_URING=1 and ENGINE io_uring
# the daemon must fall back to libaio (sync with direct-io = no) and say so
# in one log line.

source "$SRCDIR/tests/functions.sh"

ENGINE=${1:?usage: nbd-clients.sh io_uring|libaio|sync [yes|no]}
DIRECT=${2:-yes}
TUNED=${3:-}
requires nbdinfo qemu-io nbdcopy fio python3 cmp truncate

EXPECT_ENGINE=$ENGINE
if [ "${BLKMIRROR_NO_IO_URING:-}" = 1 ] && [ "$ENGINE" = io_uring ]; then
	EXPECT_ENGINE=libaio
	[ "$DIRECT" = no ] && EXPECT_ENGINE=sync
elif [ "$ENGINE" = io_uring ] &&
    [ "$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)" != 0 ]; then
	msg "SKIP: io_uring is disabled here (kernel.io_uring_disabled)"
	exit 77
fi
SIZE=$((128 << 20))

# check_info URI BS: nbdinfo --json on URI reports our export exactly.
check_info()
{
	local uri=$1 bs=$2 js f
	js=$(timeout 60 nbdinfo --json "$uri") || fail "nbdinfo --json $uri failed"
	assert_eq "$(jget "$js" exports.0.export-size)" "$SIZE" "export size ($uri)"
	assert_eq "$(jget "$js" exports.0.block_size_minimum)" "$bs" "minimum block size"
	# preferred: the block size, but never below a page
	assert_eq "$(jget "$js" exports.0.block_size_preferred)" \
	    $((bs > 4096 ? bs : 4096)) "preferred block size"
	assert_eq "$(jget "$js" exports.0.block_size_maximum)" $((32 << 20)) "maximum block size"
	assert_eq "$(jget "$js" exports.0.is_read_only)" false "is_read_only"
	for f in can_flush can_fua can_trim can_zero can_fast_zero can_cache \
	    can_multi_conn; do
		assert_eq "$(jget "$js" exports.0.$f)" true "$f ($uri)"
	done
	assert_eq "$(jget "$js" structured)" true "structured replies"
	assert_match "$(jget "$js" exports.0.contexts)" '"base:allocation"' \
	    "meta contexts"
}

# map_type URI OFFSET: the base:allocation type of the extent at OFFSET.
map_type()
{
	local js
	js=$(timeout 60 nbdinfo --map --json "$1") || fail "nbdinfo --map $1 failed"
	python3 - "$js" "$2" "$SIZE" <<'PYEOF' || fail "nbdinfo --map $1: the extents do not tile the export"
import json, sys
m = json.loads(sys.argv[1])
off, size = int(sys.argv[2]), int(sys.argv[3])
pos = 0
for e in m:				# extents must tile the whole export
    assert e["offset"] == pos, "extent at %d, expected %d" % (e["offset"], pos)
    pos += e["length"]
assert pos == size, "map covers %d of %d bytes" % (pos, size)
print(next(e["type"] for e in m if e["offset"] <= off < e["offset"] + e["length"]))
PYEOF
}

# qio ARGS...: qemu-io on the UNIX socket export; fails the test on any
# failed command or pattern mismatch.
qio()
{
	local out
	out=$(timeout 120 qemu-io -f raw "$NBD_URI" "$@" 2>&1) ||
	    fail "qemu-io $* failed: $out"
	if grep -Eiq 'fail|error' <<<"$out"; then
		fail "qemu-io $*: $out"
	fi
}

# run_fio URI: 4 jobs (4 connections) of 4k random writes, each on its own
# 16 MiB region, then crc32c verification of every block.
run_fio()
{
	local out=$TESTDIR/fio.json
	timeout 300 fio --name=multiconn --ioengine=nbd --uri="$1" \
	    --rw=randwrite --bs=4k --iodepth=16 --numjobs=4 --size=16M \
	    --offset=32M --offset_increment=16M --verify=crc32c \
	    --verify_fatal=1 --runtime=240 --output-format=json \
	    --output="$out" >"$TESTDIR/fio.log" 2>&1 ||
	    { cat "$TESTDIR/fio.log" >&2; fail "fio failed"; }
	python3 - "$out" <<'PYEOF' || fail "fio results"
import json, sys
text = open(sys.argv[1]).read()
d = json.loads(text[text.index("{"):])
assert len(d["jobs"]) == 4, "%d jobs" % len(d["jobs"])
for j in d["jobs"]:
    w, r = j["write"]["io_bytes"], j["read"]["io_bytes"]
    assert j["error"] == 0, "job error %d" % j["error"]
    assert w == 16 << 20, "job wrote %d bytes" % w
    assert r == w, "job verified %d of %d bytes" % (r, w)
PYEOF
}

# disk_fd_direct DISK: "true" if the daemon holds DISK open with O_DIRECT,
# else "false" (from /proc/PID/fdinfo; fails if it does not hold DISK).
disk_fd_direct()
{
	local fd flags want
	want=$(readlink -f "$1")
	for fd in /proc/"$DAEMON_PID"/fd/*; do
		[ "$(readlink "$fd")" = "$want" ] || continue
		flags=$(awk '/^flags:/ { print $2 }' "/proc/$DAEMON_PID/fdinfo/${fd##*/}")
		# O_DIRECT is 040000 (octal) on x86 and arm64
		if (( (8#$flags & 8#40000) != 0 )); then echo true; else echo false; fi
		return 0
	done
	fail "the daemon does not hold $want open"
}

# run_fio_mixed URI: one connection, 32 in flight, writes of mixed sizes
# (4k to 1M) with verifying reads interleaved (verify_backlog), over 32M..96M:
# the stream mixes WRITE lengths and READs, which the daemon's receive-ahead
# must unwind (nbd_transmit.c), and every block is checked.
run_fio_mixed()
{
	local out=$TESTDIR/fio-mixed.json
	timeout 300 fio --name=mixed --ioengine=nbd --uri="$1" \
	    --rw=randwrite --bssplit=4k/40:8k/20:64k/20:512k/10:1m/10 \
	    --iodepth=32 --numjobs=1 --size=64M --offset=32M \
	    --verify=crc32c --verify_backlog=16 --verify_fatal=1 \
	    --runtime=240 --output-format=json --output="$out" \
	    >"$TESTDIR/fio.log" 2>&1 ||
	    { cat "$TESTDIR/fio.log" >&2; fail "fio (mixed sizes) failed"; }
	python3 - "$out" <<'PYEOF' || fail "fio (mixed sizes) results"
import json, sys
text = open(sys.argv[1]).read()
j = json.loads(text[text.index("{"):])["jobs"][0]
assert j["error"] == 0, "job error %d" % j["error"]
assert j["write"]["io_bytes"] >= 64 << 20, "wrote %d bytes" % j["write"]["io_bytes"]
assert j["read"]["io_bytes"] > 0, "nothing verified"
PYEOF
}

# check_tuning STATUS_JSON: busy polling and inline writes did what the
# configuration asked for, and nothing without it.
check_tuning()
{
	local js=$1
	msg "loop: busy_polls $(jget "$js" loop.busy_polls)" \
	    "hits $(jget "$js" loop.busy_poll_hits)" \
	    "inline_writes $(jget "$js" loop.inline_writes)" \
	    "backoffs $(jget "$js" loop.inline_write_backoffs)"
	if [ "$TUNED" != tuned ]; then
		assert_eq "$(jget "$js" loop.busy_poll_us)" 0 "busy-poll off by default"
		assert_eq "$(jget "$js" loop.busy_polls)" 0 "no busy polls by default"
		assert_eq "$(jget "$js" loop.inline_writes)" 0 "no inline writes by default"
	elif [ "$EXPECT_ENGINE" = io_uring ]; then
		assert_eq "$(jget "$js" loop.busy_poll_us)" 50 "busy_poll_us"
		assert_ge "$(jget "$js" loop.busy_polls)" 1 "busy polls"
		# most fio and qemu-io writes are small and not FUA; a write
		# slower than 1 ms (a loaded machine) sends the next second's
		# to io_uring, so expect many only when none was that slow
		assert_ge "$(jget "$js" loop.inline_writes)" 1 "inline writes"
		if [ "$(jget "$js" loop.inline_write_backoffs)" = 0 ]; then
			assert_ge "$(jget "$js" loop.inline_writes)" 100 \
			    "inline writes without a back-off"
		fi
	else
		assert_eq "$(jget "$js" loop.busy_poll_us)" 0 "busy_poll_us without io_uring"
		assert_eq "$(jget "$js" loop.busy_polls)" 0 "busy polls without io_uring"
		assert_eq "$(jget "$js" loop.inline_writes)" 0 "inline writes without io_uring"
		log_has "busy-poll off: it needs io-engine = io_uring" ||
		    { _show_log "$DAEMON_LOG"; fail "no log line about busy-poll being off"; }
	fi
}

# run_backing KIND DISK BS: the whole client suite on one backing.
run_backing()
{
	local kind=$1 disk=$2 bs=$3 port js t0 t

	msg "== $kind backing ($disk), engine $ENGINE, direct-io $DIRECT, block size $bs"
	port=$(free_port)
	standalone_conf "$TESTDIR/$kind.conf" "$disk" "$ENGINE" "$bs" "$port"
	sed -i "/^io-engine = /a direct-io = $DIRECT" "$TESTDIR/$kind.conf"
	if [ "$TUNED" = tuned ]; then
		sed -i "/^direct-io = /a inline-writes = yes\nbusy-poll = 50us" \
		    "$TESTDIR/$kind.conf"
	fi
	start_daemon "$TESTDIR/$kind.conf"

	js=$(ctl status --json) || fail "status --json"
	assert_eq "$(jget "$js" io_engine)" "$EXPECT_ENGINE" "io engine in use"
	# status tells the truth about O_DIRECT; "no" never uses it, "yes"
	# always can on a loop device with 4096-byte blocks
	t=$(disk_fd_direct "$disk")
	assert_eq "$(jget "$js" direct_io)" "$t" "status direct_io vs the fd's flags"
	if [ "$DIRECT" = no ]; then
		assert_eq "$t" false "O_DIRECT with direct-io = no"
	elif [ "$kind" = loop ]; then
		assert_eq "$t" true "O_DIRECT on a loop device with direct-io = yes"
	fi
	assert_eq "$(jget "$js" size_bytes)" "$SIZE" "status size_bytes"
	assert_eq "$(jget "$js" block_size)" "$bs" "status block_size"
	assert_eq "$(jget "$js" role)" primary "status role"
	if [ "$EXPECT_ENGINE" != "$ENGINE" ]; then
		log_has "io_uring unavailable.*using $EXPECT_ENGINE engine" ||
		    { _show_log "$DAEMON_LOG"; fail "no log line about the $EXPECT_ENGINE fallback"; }
		assert_eq "$(grep -Eci 'io_uring.*(libaio|sync)|(libaio|sync).*io_uring' "$DAEMON_LOG")" \
		    1 "log lines about the fallback"
	fi

	msg "nbdinfo: sizes, flags, list, exports by name and by \"\", TCP"
	check_info "$NBD_URI" "$bs"
	check_info "nbd+unix:///?socket=$NBD_SOCK" "$bs"
	check_info "$NBD_TCP_URI" "$bs"
	js=$(timeout 60 nbdinfo --list --json "nbd+unix://?socket=$NBD_SOCK") ||
	    fail "nbdinfo --list failed"
	assert_match "$(jget "$js" exports)" "\"export-name\": \"$RES\"" "nbdinfo --list"

	if [ "$kind" = file ]; then
		msg "nbdinfo --map: a fresh sparse file is one hole"
		t=$(map_type "$NBD_URI" 0) || fail "map of the sparse file"
		assert_eq $((t & 1)) 1 "hole bit at offset 0 of a sparse file"
	fi

	msg "qemu-io: patterns, FUA, write-zeroes, discard, unaligned"
	qio -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M' \
	    -c 'write -f -P 0xcd 1M 1M' -c 'read -P 0xcd 1M 1M' \
	    -c 'write -P 0xef 2M 1M' -c 'write -z 2M 1M' -c 'read -P 0 2M 1M' \
	    -c 'write -P 0x12 3M 1M' -c 'write -z -u 3M 1M' -c 'read -P 0 3M 1M' \
	    -c 'write -P 0x34 5M 1M' -c 'discard 5M 1M' -c 'flush' \
	    -c 'write -P 0x77 4194816 512' -c 'read -P 0 4194304 512' \
	    -c 'read -P 0x77 4194816 512' -c 'read -P 0 4195328 3072' \
	    -c 'read -P 0xab 0 1M' -c 'read -P 0xcd 1M 1M'
	if [ "$kind" = file ]; then
		qio -c 'read -P 0 5M 1M'	# a punched hole reads back as zeroes
		t=$(map_type "$NBD_URI" 0)
		assert_eq $((t & 1)) 0 "hole bit at offset 0 after writing"
		t=$(map_type "$NBD_URI" $((100 << 20)))
		assert_eq $((t & 1)) 1 "hole bit at offset 100M (never written)"
	else
		map_type "$NBD_URI" 0 >/dev/null
	fi

	msg "nbdcopy: random file -> NBD (UNIX) -> file (TCP), cmp"
	head -c 32M /dev/urandom >"$TESTDIR/rand.bin" || fail "urandom"
	timeout 120 nbdcopy "$TESTDIR/rand.bin" "$NBD_URI" || fail "nbdcopy to NBD"
	rm -f "$TESTDIR/out.bin"
	timeout 120 nbdcopy "$NBD_TCP_URI" "$TESTDIR/out.bin" || fail "nbdcopy from NBD"
	assert_eq "$(stat -c %s "$TESTDIR/out.bin")" "$SIZE" "copied size"
	cmp -n $((32 << 20)) "$TESTDIR/rand.bin" "$TESTDIR/out.bin" ||
	    fail "data copied back differs"
	cmp -n $((96 << 20)) -i $((32 << 20)):0 "$TESTDIR/out.bin" /dev/zero ||
	    fail "the never-written part is not zero"
	rm -f "$TESTDIR/out.bin"

	msg "fio: 4 connections, randwrite + crc32c verify (TCP)"
	t0=$SECONDS
	run_fio "$NBD_TCP_URI"
	msg "fio done in $((SECONDS - t0)) s"
	msg "fio: mixed write sizes with interleaved verifying reads (UNIX)"
	run_fio_mixed "$NBD_URI"
	# the daemon received WRITE payloads ahead, straight into their I/O
	# buffers, and unwound the guesses the mixed stream broke
	log_has 'closed: .* [1-9][0-9]* WRITE payloads received ahead, [1-9][0-9]* guesses missed' ||
	    { _show_log "$DAEMON_LOG"; fail "no connection received payloads ahead and unwound"; }
	# the first 32M still hold nbdcopy's data (fio wrote 32M..96M only)
	timeout 120 nbdcopy "$NBD_URI" "$TESTDIR/out.bin" || fail "nbdcopy from NBD"
	cmp -n $((32 << 20)) "$TESTDIR/rand.bin" "$TESTDIR/out.bin" ||
	    fail "fio's jobs overwrote data outside their regions"
	rm -f "$TESTDIR/out.bin" "$TESTDIR/rand.bin"

	msg "status: counters went up, no client left"
	js=$(ctl status --json) || fail "status --json"
	assert_ge "$(jget "$js" ops.writes)" 16384 "ops.writes"
	assert_ge "$(jget "$js" ops.reads)" 16384 "ops.reads"
	assert_ge "$(jget "$js" ops.write_bytes)" $((96 << 20)) "ops.write_bytes"
	assert_ge "$(jget "$js" ops.read_bytes)" $((64 << 20)) "ops.read_bytes"
	assert_ge "$(jget "$js" ops.flushes)" 1 "ops.flushes"
	assert_ge "$(jget "$js" ops.trims)" 1 "ops.trims"
	assert_ge "$(jget "$js" ops.zeroes)" 2 "ops.zeroes"
	assert_ge "$(jget "$js" ops.block_status)" 1 "ops.block_status"
	assert_eq "$(jget "$js" ops.errors)" 0 "ops.errors"
	assert_ge "$(jget "$js" clients_total)" 10 "clients_total"
	check_tuning "$js"
	for t in $(seq 50); do
		[ "$(status_field clients)" = 0 ] && break
		sleep 0.1
	done
	assert_eq "$(status_field clients)" 0 "clients still connected"

	stop_daemon
}

make_disk "$TESTDIR/file.img" "$SIZE"
run_backing file "$TESTDIR/file.img" 512

if [ "$(id -u)" -eq 0 ] && command -v losetup >/dev/null; then
	make_disk "$TESTDIR/loop.img" "$SIZE"
	attach_loop "$TESTDIR/loop.img"
	run_backing loop "$LOOP_DEV" 4096
else
	msg "not root: loop device part skipped"
fi
