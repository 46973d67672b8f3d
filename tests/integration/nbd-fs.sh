#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# A real filesystem on the NBD export: nbdfuse exposes the export as a file,
# losetup turns that into a block device, mkfs.ext4 + mount + write files +
# umount; then e2fsck -fn must find the filesystem clean (through NBD and on
# the backing file), and after a daemon restart and a remount every file
# must read back with the same checksum.

source "$SRCDIR/tests/functions.sh"
requires nbdfuse losetup mkfs.ext4 e2fsck mount umount fusermount3 \
    sha256sum fstrim awk
requires_root
requires_file /dev/fuse

FUSE_DIR=$TESTDIR/fuse		# nbdfuse mountpoint; the export is $FUSE_DIR/disk
MNT=$TESTDIR/mnt		# the ext4 mountpoint
FS_LOOP=			# loop device on $FUSE_DIR/disk while attached
FUSE_PID=			# nbdfuse process while running
mkdir -p "$FUSE_DIR" "$MNT"

make_disk "$TESTDIR/disk.img" 256M
standalone_conf "$TESTDIR/r0.conf" "$TESTDIR/disk.img" io_uring 4096
start_daemon "$TESTDIR/r0.conf"

# mounted DIR: DIR is a mount point, even one whose FUSE server died (stat
# fails on those, so mountpoint(1) cannot tell).
mounted()
{
	awk -v d="$1" '$2 == d { found = 1 } END { exit !found }' /proc/mounts
}

# fuse_unmount: fusermount3 -u, retried for 30 s: the loop device lets go
# of the FUSE file a little after losetup -d returns (EBUSY meanwhile); on
# a loaded machine (a CI run beside this one) that took over 5 s once.
fuse_unmount()
{
	local i
	for i in $(seq 300); do
		fusermount3 -u "$FUSE_DIR" 2>/dev/null && return 0
		sleep 0.1
	done
	fusermount3 -u "$FUSE_DIR"
}

# Undo whatever stack is still up, top down: ext4 mount, loop, FUSE.
fs_cleanup()
{
	local i
	if mounted "$MNT"; then
		umount "$MNT" || umount -l "$MNT" || _test_failed=1
	fi
	if [ -n "$FS_LOOP" ]; then
		_detach_loop "$FS_LOOP" || _test_failed=1
		FS_LOOP=
	fi
	if mounted "$FUSE_DIR"; then
		fuse_unmount || fusermount3 -uz "$FUSE_DIR" ||
		    umount -l "$FUSE_DIR" || _test_failed=1
	fi
	if [ -n "$FUSE_PID" ]; then
		for i in $(seq 100); do
			pid_alive "$FUSE_PID" || break
			sleep 0.1
		done
		pid_alive "$FUSE_PID" && kill -TERM "$FUSE_PID"
		wait "$FUSE_PID" 2>/dev/null
		FUSE_PID=
	fi
	if mounted "$FUSE_DIR"; then		# nbdfuse gone, mount left
		umount -l "$FUSE_DIR" || _test_failed=1
	fi
}
cleanup_fn fs_cleanup

# fs_up: nbdfuse + losetup (+ mount unless "nomount").
fs_up()
{
	local i
	rm -f "$TESTDIR/nbdfuse.pid"
	nbdfuse -P "$TESTDIR/nbdfuse.pid" "$FUSE_DIR/disk" "$NBD_URI" \
	    >>"$TESTDIR/nbdfuse.log" 2>&1 &
	FUSE_PID=$!
	for i in $(seq 100); do
		[ -s "$TESTDIR/nbdfuse.pid" ] && break
		pid_alive "$FUSE_PID" || break
		sleep 0.1
	done
	[ -s "$TESTDIR/nbdfuse.pid" ] ||
	    { cat "$TESTDIR/nbdfuse.log" >&2; fail "nbdfuse did not come up"; }
	assert_eq "$(stat -c %s "$FUSE_DIR/disk")" $((256 << 20)) "size of the FUSE file"
	# The export's minimum block is 4096 and nbdfuse passes requests
	# through as they come: a 4096-byte loop block size keeps them aligned.
	FS_LOOP=$(losetup -b 4096 -f --show "$FUSE_DIR/disk") ||
	    fail "losetup on the FUSE file"
	if [ "${1:-}" != nomount ]; then
		mount -t ext4 "$FS_LOOP" "$MNT" || fail "mount $FS_LOOP"
	fi
}

# fs_down: umount, detach, fusermount3 -u; nbdfuse must exit 0.
fs_down()
{
	local i rc
	if mounted "$MNT"; then
		umount "$MNT" || fail "umount $MNT"
	fi
	_detach_loop "$FS_LOOP" || fail "losetup -d $FS_LOOP"
	FS_LOOP=
	fuse_unmount || fail "fusermount3 -u $FUSE_DIR keeps failing"
	for i in $(seq 100); do
		pid_alive "$FUSE_PID" || break
		sleep 0.1
	done
	pid_alive "$FUSE_PID" && fail "nbdfuse did not exit after fusermount3 -u"
	mounted "$FUSE_DIR" && fail "$FUSE_DIR still mounted after fusermount3 -u"
	wait "$FUSE_PID"
	rc=$?
	FUSE_PID=
	assert_eq "$rc" 0 "nbdfuse exit status"
}

msg "mkfs.ext4 on nbdfuse + loop, mount, write files"
fs_up nomount
mkfs.ext4 -q -F -b 4096 "$FS_LOOP" || fail "mkfs.ext4"
mount -t ext4 "$FS_LOOP" "$MNT" || fail "mount $FS_LOOP"
mkdir -p "$MNT/a/b/c" "$MNT/d" || fail "mkdir"
for i in $(seq 1 24); do
	head -c $(((i * 37 % 97 + 1) * 40960)) /dev/urandom >"$MNT/a/b/f$i" ||
	    fail "write f$i"
done
head -c 48M /dev/urandom >"$MNT/d/big" || fail "write big"
for i in $(seq 1 200); do echo "small file $i" >"$MNT/a/b/c/s$i"; done
(cd "$MNT" && find . -type f -print0 | sort -z | xargs -0 sha256sum) \
    >"$TESTDIR/sums" || fail "sha256sum"
assert_eq "$(wc -l <"$TESTDIR/sums")" 225 "files written"
sync || fail "sync"
rm "$MNT/a/b/f3" "$MNT/a/b/f4"		# freed blocks get discarded (maybe)
fstrim "$MNT" 2>/dev/null
grep -v -e '/f3$' -e '/f4$' "$TESTDIR/sums" >"$TESTDIR/sums2"
fs_down

msg "e2fsck -fn on the backing file"
e2fsck -fn "$TESTDIR/disk.img" >"$TESTDIR/fsck1.log" 2>&1 ||
    { cat "$TESTDIR/fsck1.log" >&2; fail "e2fsck on the backing file"; }

msg "restart the daemon; e2fsck -fn through NBD; remount, checksums"
stop_daemon
start_daemon "$TESTDIR/r0.conf"
fs_up nomount
e2fsck -fn "$FS_LOOP" >"$TESTDIR/fsck2.log" 2>&1 ||
    { cat "$TESTDIR/fsck2.log" >&2; fail "e2fsck through NBD"; }
mount -t ext4 -o ro "$FS_LOOP" "$MNT" || fail "remount $FS_LOOP"
(cd "$MNT" && sha256sum --quiet -c "$TESTDIR/sums2") ||
    fail "files read back after the remount differ"
[ ! -e "$MNT/a/b/f3" ] || fail "a deleted file came back"
fs_down

js=$(ctl status --json) || fail "status"
assert_ge "$(jget "$js" ops.reads)" 100 "ops.reads"
assert_ge "$(jget "$js" ops.read_bytes)" $((48 << 20)) "ops.read_bytes"
stop_daemon
