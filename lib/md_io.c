/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Synchronous metadata I/O for the tools (blkmirrorctl create-md, dump-md)
 * and tests: pread/pwrite/fdatasync on a file or block device.  The daemon
 * does not call these from its loop; it uses the codecs with its io engine.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "md.h"
#include "util.h"

#define IO_CHUNK	(1u << 20)	/* bytes per pread/pwrite of big regions */
#define DUMP_MAX_RANGES	64		/* ranges printed per list in md_dump */

/* pread/pwrite everything, retrying EINTR and short transfers. */
static int
pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	ssize_t n;

	while (len > 0) {
		n = pread(fd, buf, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;		/* beyond the end */
		buf = (char *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int
pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	ssize_t n;

	while (len > 0) {
		n = pwrite(fd, buf, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf = (const char *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int
sync_fd(int fd)
{

	return fdatasync(fd) == 0 ? 0 : -errno;
}

int
md_fd_size(int fd, uint64_t *bytes)
{
	struct stat st;

	if (fstat(fd, &st) != 0)
		return -errno;
	if (S_ISREG(st.st_mode)) {
		*bytes = (uint64_t)st.st_size;
		return 0;
	}
	if (S_ISBLK(st.st_mode))
		return ioctl(fd, BLKGETSIZE64, bytes) == 0 ? 0 : -errno;
	return -ENOTBLK;
}

int
md_read_sb(const struct md_loc *loc, struct md_sb *sb, int *slot, int *ra,
    int *rb)
{
	uint8_t buf[2 * MD_SB_SIZE];
	uint64_t off[2];
	int r;

	if ((r = md_sb_offsets(loc->disk_bytes, loc->internal, off)) != 0)
		return r;
	if ((r = pread_full(loc->fd, buf, MD_SB_SIZE, off[0])) != 0 ||
	    (r = pread_full(loc->fd, buf + MD_SB_SIZE, MD_SB_SIZE, off[1])) != 0)
		return r;
	return md_sb_pick(buf, buf + MD_SB_SIZE, sb, slot, ra, rb);
}

int
md_write_sb(const struct md_loc *loc, struct md_sb *sb, int *slot)
{
	uint8_t buf[MD_SB_SIZE];
	uint64_t off[2];
	int r, s = *slot;

	if ((r = md_sb_offsets(loc->disk_bytes, loc->internal, off)) != 0)
		return r;
	md_sb_next(sb, &s);
	md_sb_encode(sb, buf);
	if ((r = pwrite_full(loc->fd, buf, MD_SB_SIZE, off[s])) != 0 ||
	    (r = sync_fd(loc->fd)) != 0) {
		sb->seq--;
		return r;
	}
	*slot = s;
	return 0;
}

/* Read the bitmap region into a freshly initialized bm. */
static int
read_bitmap(const struct md_loc *loc, const struct md_layout *l,
    struct md_bitmap *bm)
{
	uint8_t *buf;
	uint64_t blk = 0, n, i;
	int r;

	if ((r = md_bitmap_init(bm, l->data_bytes, l->granularity)) != 0)
		return r;
	if ((buf = malloc(IO_CHUNK)) == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	/* One chunk of blocks per iteration. */
	while (blk < bm->nblocks) {
		n = MIN(bm->nblocks - blk, (uint64_t)(IO_CHUNK / MD_BLOCK_SIZE));
		r = pread_full(loc->fd, buf, n * MD_BLOCK_SIZE,
		    l->bitmap_offset + blk * MD_BLOCK_SIZE);
		for (i = 0; r == 0 && i < n; i++)
			r = md_bitmap_decode_block(bm, blk + i,
			    buf + i * MD_BLOCK_SIZE, MD_BLOCK_SIZE);
		if (r != 0)
			break;
		blk += n;
	}
	free(buf);
	if (r == 0)
		return 0;
fail:
	md_bitmap_free(bm);
	return r;
}

/* Read and replay the AL ring; *extents is allocated for the caller. */
static int
read_al(const struct md_loc *loc, const struct md_layout *l,
    struct md_al_recovery *al, uint32_t **extents)
{
	uint8_t *ring;
	int r;

	ring = malloc(l->al_bytes);
	*extents = malloc((size_t)l->al_extents * sizeof(uint32_t));
	if (ring == NULL || *extents == NULL) {
		r = -ENOMEM;
	} else {
		r = pread_full(loc->fd, ring, l->al_bytes, l->al_offset);
		if (r == 0)
			r = md_al_recover(ring, l->al_tr_count, l->al_extents,
			    *extents, al);
	}
	free(ring);
	if (r != 0) {
		free(*extents);
		*extents = NULL;
	}
	return r;
}

int
md_read(const struct md_loc *loc, struct md_sb *sb, int *slot,
    struct md_layout *layout, struct md_bitmap *bm,
    struct md_al_recovery *al, uint32_t **extents)
{
	int r;

	if ((r = md_read_sb(loc, sb, slot, NULL, NULL)) != 0)
		return r;
	if ((r = md_sb_layout(sb, loc->disk_bytes, layout)) != 0)
		return r;
	if (bm != NULL && (r = read_bitmap(loc, layout, bm)) != 0)
		return r;
	if (al != NULL && (r = read_al(loc, layout, al, extents)) != 0) {
		if (bm != NULL)
			md_bitmap_free(bm);
		return r;
	}
	return 0;
}

int
md_write_bitmap(const struct md_loc *loc, const struct md_layout *l,
    struct md_bitmap *bm)
{
	uint8_t buf[MD_BLOCK_SIZE];
	uint64_t blk, *done, n = 0, i;
	uint64_t *gens;
	int r = 0;

	done = malloc(bm->nblocks * sizeof(*done));
	gens = malloc(bm->nblocks * sizeof(*gens));
	if (done == NULL || gens == NULL) {
		r = -ENOMEM;
		goto out;
	}
	/* Each dirty block once, in order. */
	for (blk = md_bitmap_next_dirty_block(bm, 0); blk != MD_BM_NONE;
	    blk = md_bitmap_next_dirty_block(bm, blk + 1)) {
		md_bitmap_encode_block(bm, blk, buf, &gens[n]);
		r = pwrite_full(loc->fd, buf, MD_BLOCK_SIZE,
		    l->bitmap_offset + blk * MD_BLOCK_SIZE);
		if (r != 0)
			goto out;
		done[n++] = blk;
	}
	if ((r = sync_fd(loc->fd)) != 0)
		goto out;
	for (i = 0; i < n; i++)
		md_bitmap_block_written(bm, done[i], gens[i]);
out:
	free(done);
	free(gens);
	return r;
}

/* Write zeros over [off, off + len). */
static int
zero_region(int fd, uint64_t off, uint64_t len)
{
	uint8_t *z = calloc(1, IO_CHUNK);
	uint64_t n;
	int r = 0;

	if (z == NULL)
		return -ENOMEM;
	while (len > 0 && r == 0) {
		n = MIN(len, (uint64_t)IO_CHUNK);
		r = pwrite_full(fd, z, n, off);
		off += n;
		len -= n;
	}
	free(z);
	return r;
}

/* Open path for create-md: O_EXCL on block devices, and the lock a running
 * blkmirrord holds on its disk and meta-disk (-EBUSY if in use). */
static int
open_rw(const char *path, bool create)
{
	struct stat st;
	int flags = O_RDWR | O_CLOEXEC, fd;

	if (stat(path, &st) == 0 && S_ISBLK(st.st_mode))
		flags |= O_EXCL;
	else if (create)
		flags |= O_CREAT;
	fd = open(path, flags, 0600);
	if (fd < 0)
		return -errno;
	if (lock_exclusive(fd) == -EWOULDBLOCK) {
		close(fd);
		return -EBUSY;
	}
	return fd;
}

/* The superblock of fresh metadata. */
static int
fresh_sb(const struct md_layout *l, const struct md_create_opts *o,
    struct md_sb *sb)
{
	ssize_t n;

	memset(sb, 0, sizeof(*sb));
	sb->version = MD_SB_VERSION;
	sb->seq = 1;
	if (o->volume_uuid != NULL)
		memcpy(sb->volume_uuid, o->volume_uuid, 16);
	else if ((n = getrandom(sb->volume_uuid, 16, 0)) != 16)
		return n < 0 ? -errno : -EIO;
	sb->node_id = o->node_id;
	sb->flags = MD_FL_CLEAN_SHUTDOWN;
	sb->disk_state = MD_DISK_INCONSISTENT;
	sb->last_role = MD_ROLE_SECONDARY;
	sb->uuids.current = MD_UUID_JUST_CREATED;
	sb->internal = l->internal;
	sb->disk_bytes = l->disk_bytes;
	sb->data_bytes = l->data_bytes;
	sb->granularity = l->granularity;
	sb->al_extents = l->al_extents;
	sb->al_tr_count = l->al_tr_count;
	sb->bitmap_offset = l->bitmap_offset;
	sb->al_offset = l->al_offset;
	return 0;
}

/* Clear both slots, zero AL and bitmap, write slot A; all durable. */
static int
write_fresh(int fd, const struct md_layout *l, const struct md_sb *sb)
{
	uint8_t buf[MD_SB_SIZE];
	int r;

	if ((r = zero_region(fd, l->sb_offset[0], MD_SB_SIZE)) != 0 ||
	    (r = zero_region(fd, l->sb_offset[1], MD_SB_SIZE)) != 0 ||
	    (r = sync_fd(fd)) != 0)
		return r;
	if ((r = zero_region(fd, l->al_offset, l->al_bytes)) != 0 ||
	    (r = zero_region(fd, l->bitmap_offset, l->bitmap_bytes)) != 0 ||
	    (r = sync_fd(fd)) != 0)
		return r;
	md_sb_encode(sb, buf);
	if ((r = pwrite_full(fd, buf, MD_SB_SIZE, l->sb_offset[0])) != 0)
		return r;
	return sync_fd(fd);
}

/* Make sure the meta-disk holds md_bytes (extend a regular file). */
static int
fit_meta_disk(int fd, uint64_t need)
{
	struct stat st;
	uint64_t have;
	int r;

	if ((r = md_fd_size(fd, &have)) != 0)
		return r;
	if (have >= need)
		return 0;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		return ftruncate(fd, (off_t)need) == 0 ? 0 : -errno;
	return -ENOSPC;
}

int
md_create(const char *disk, const char *meta_disk,
    const struct md_create_opts *opts, bool force, struct md_sb *out)
{
	struct md_layout l;
	struct md_loc loc;
	struct md_sb sb, old;
	int dfd, mfd = -1, r, slot;

	if ((dfd = open_rw(disk, false)) < 0)
		return dfd;
	memset(&loc, 0, sizeof(loc));
	loc.internal = meta_disk == NULL;
	if ((r = md_fd_size(dfd, &loc.disk_bytes)) != 0)
		goto out;
	r = md_layout_compute(loc.disk_bytes, loc.internal,
	    opts->granularity ? opts->granularity : MD_GRAN_DEFAULT,
	    opts->al_extents ? opts->al_extents : MD_AL_EXTENTS_DEFAULT, &l);
	if (r != 0)
		goto out;
	loc.fd = dfd;
	if (!loc.internal) {
		if ((mfd = open_rw(meta_disk, true)) < 0) {
			r = mfd;
			goto out;
		}
		if ((r = fit_meta_disk(mfd, l.md_bytes)) != 0)
			goto out;
		loc.fd = mfd;
	}
	r = md_read_sb(&loc, &old, &slot, NULL, NULL);
	if ((r == 0 || r == -EPROTO) && !force) {
		r = -EEXIST;
		goto out;
	}
	if (r == -EUCLEAN && !force)
		goto out;	/* damaged metadata is metadata too */
	if (r != 0 && r != -EPROTO && r != -ENOENT && r != -EUCLEAN)
		goto out;
	if ((r = fresh_sb(&l, opts, &sb)) != 0 ||
	    (r = write_fresh(loc.fd, &l, &sb)) != 0)
		goto out;
	if (out != NULL)
		*out = sb;
out:
	if (mfd >= 0)
		close(mfd);
	close(dfd);
	return r;
}

/* ---- dump ---- */

static const char *
slot_result_str(int r)
{

	switch (r) {
	case 0: return "valid";
	case -ENODATA: return "empty (no magic)";
	case -EBADMSG: return "invalid: checksum mismatch (torn or corrupt)";
	case -EPROTO: return "invalid: unknown format version";
	case -EINVAL: return "invalid: field out of range";
	default: return "invalid";
	}
}

static void
dump_sb(const struct md_sb *sb, FILE *out)
{
	char buf[160];
	unsigned i;

	fprintf(out, "version: %" PRIu32 "\n", sb->version);
	fprintf(out, "sequence: %" PRIu64 "\n", sb->seq);
	fprintf(out, "volume-uuid: %s\n", md_volume_uuid_str(sb->volume_uuid, buf));
	fprintf(out, "node-id: %" PRIu32 "\n", sb->node_id);
	fprintf(out, "flags: %s\n", md_flags_str(sb->flags, buf, sizeof(buf)));
	fprintf(out, "disk-state: %s\n", md_disk_state_name(sb->disk_state));
	fprintf(out, "last-role: %s\n", md_role_name(sb->last_role));
	fprintf(out, "epoch: %" PRIu64 "\n", sb->epoch);
	fprintf(out, "uuid-current: %016" PRIx64 "\n", sb->uuids.current);
	fprintf(out, "uuid-bitmap: %016" PRIx64 "\n", sb->uuids.bitmap);
	fprintf(out, "uuid-history:");
	for (i = 0; i < MD_UUID_HISTORY; i++)
		fprintf(out, " %016" PRIx64, sb->uuids.history[i]);
	fprintf(out, "\n");
}

static void
dump_layout(const struct md_layout *l, FILE *out)
{

	fprintf(out, "meta-disk: %s\n", l->internal ? "internal" : "external");
	fprintf(out, "disk-bytes: %" PRIu64 "\n", l->disk_bytes);
	fprintf(out, "data-bytes: %" PRIu64 "\n", l->data_bytes);
	fprintf(out, "bitmap-granularity: %" PRIu32 "\n", l->granularity);
	fprintf(out, "al-extents: %" PRIu32 "\n", l->al_extents);
	fprintf(out, "bitmap-offset: %" PRIu64 "\n", l->bitmap_offset);
	fprintf(out, "bitmap-bytes: %" PRIu64 "\n", l->bitmap_bytes);
	fprintf(out, "al-offset: %" PRIu64 "\n", l->al_offset);
	fprintf(out, "al-transactions: %" PRIu32 "\n", l->al_tr_count);
	fprintf(out, "sb-offsets: %" PRIu64 " %" PRIu64 "\n",
	    l->sb_offset[0], l->sb_offset[1]);
}

/* AL extents as ranges of extent numbers: "0-3 17 42-43". */
static void
dump_al(const struct md_al_recovery *al, const uint32_t *ext, FILE *out)
{
	uint32_t i = 0, j, shown = 0;

	fprintf(out, "al-valid-transactions: %" PRIu32 "\n", al->n_valid);
	fprintf(out, "al-invalid-transactions: %" PRIu32 "\n", al->n_invalid);
	fprintf(out, "al-last-transaction: %" PRIu64 "\n", al->last_tr);
	fprintf(out, "al-active-extents: %" PRIu32 "\n", al->n_extents);
	fprintf(out, "al-extent-list:");
	/* One run of consecutive extent numbers per iteration. */
	while (i < al->n_extents && shown < DUMP_MAX_RANGES) {
		for (j = i; j + 1 < al->n_extents && ext[j + 1] == ext[j] + 1; j++)
			;
		if (j == i)
			fprintf(out, " %" PRIu32, ext[i]);
		else
			fprintf(out, " %" PRIu32 "-%" PRIu32, ext[i], ext[j]);
		i = j + 1;
		shown++;
	}
	fprintf(out, "%s\n", i < al->n_extents ? " ..." : "");
}

/* Out-of-sync byte ranges "[start, end)" of the bitmap. */
static void
dump_bitmap(const struct md_bitmap *bm, FILE *out)
{
	uint64_t bit, end, shown = 0, end_off;

	fprintf(out, "bitmap-set-bits: %" PRIu64 "\n", md_bitmap_count(bm));
	fprintf(out, "out-of-sync-bytes: %" PRIu64 "\n", md_bitmap_set_bytes(bm));
	fprintf(out, "out-of-sync-ranges:");
	bit = md_bitmap_find_next_set(bm, 0);
	/* One run of set bits per iteration. */
	while (bit != MD_BM_NONE && shown < DUMP_MAX_RANGES) {
		end = md_bitmap_find_next_zero(bm, bit);
		end_off = MIN(md_bitmap_offset_of(bm, end), bm->data_bytes);
		fprintf(out, " %" PRIu64 "-%" PRIu64,
		    md_bitmap_offset_of(bm, bit), end_off);
		bit = md_bitmap_find_next_set(bm, end);
		shown++;
	}
	fprintf(out, "%s\n", bit != MD_BM_NONE ? " ..." : "");
}

int
md_dump(const struct md_loc *loc, FILE *out)
{
	struct md_al_recovery al;
	struct md_layout l;
	struct md_bitmap bm;
	struct md_sb sb;
	uint32_t *ext = NULL;
	int r, ra, rb, slot;

	r = md_read_sb(loc, &sb, &slot, &ra, &rb);
	fprintf(out, "slot-a: %s\n", slot_result_str(ra));
	fprintf(out, "slot-b: %s\n", slot_result_str(rb));
	if (r != 0)
		return r;
	fprintf(out, "active-slot: %s\n", slot == 0 ? "a" : "b");
	dump_sb(&sb, out);
	if ((r = md_read(loc, &sb, &slot, &l, &bm, &al, &ext)) != 0)
		return r;
	dump_layout(&l, out);
	dump_al(&al, ext, out);
	dump_bitmap(&bm, out);
	free(ext);
	md_bitmap_free(&bm);
	return 0;
}
