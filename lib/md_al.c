/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The activity log (see md.h): an LRU set of active 4 MiB extents, the
 * transaction codec and the replay of the on-disk ring.
 *
 * Why replaying the ring gives a superset of what was active: every slot
 * change is an update in a transaction that is durable before any write to
 * the new extent; every transaction also carries a slice of the whole slot
 * table, the slices cycling through it.  The ring holds at least one full
 * cycle of slices plus one possibly torn transaction (md_al_ring_size), so a
 * slot whose last update has been overwritten is still covered by a newer
 * slice.  Replaying valid transactions in tr_number order, updates then
 * slice, leaves each slot with its newest durable value.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "md.h"
#include "util.h"

/* Transaction v1 (4096 bytes, big-endian); see docs/on-disk-format.md. */
#define TR_MAGIC	0	/* u32 MD_AL_MAGIC */
#define TR_TYPE		4	/* u8 0 = update transaction */
#define TR_RESERVED1	5	/* u8 zero */
#define TR_N_UPDATES	6	/* u16 updates used */
#define TR_NUMBER	8	/* u64 tr_number, from 1, increasing */
#define TR_CTX_START	16	/* u32 first slot of the context slice */
#define TR_CTX_COUNT	20	/* u16 slots in the slice */
#define TR_RESERVED2	22	/* u16 zero */
#define TR_UPD_SLOT	24	/* u16[64] update: slot */
#define TR_UPD_EXT	152	/* u32[64] update: extent */
#define TR_CTX		408	/* u32[920] slot table slice */
#define TR_CSUM		4088	/* u64 XXH3-64 of bytes [0, 4088) */

enum slot_state {
	SLOT_EMPTY = 0,		/* no extent */
	SLOT_ACTIVE,		/* extent committed: writes may go */
	SLOT_COMMITTING,	/* extent in the transaction in flight */
};

/* ---- hash: extent -> slot ---- */

static uint32_t
hash_bucket(const struct md_al *al, uint32_t ext)
{

	return (ext * 2654435761u) & al->hmask;
}

static uint32_t
hash_find(const struct md_al *al, uint32_t ext)
{
	uint32_t s;

	for (s = al->hash[hash_bucket(al, ext)]; s != al->nr; s = al->hnext[s])
		if (al->ext[s] == ext)
			return s;
	return al->nr;
}

static void
hash_add(struct md_al *al, uint32_t s)
{
	uint32_t b = hash_bucket(al, al->ext[s]);

	al->hnext[s] = al->hash[b];
	al->hash[b] = s;
}

static void
hash_del(struct md_al *al, uint32_t s)
{
	uint32_t *pp = &al->hash[hash_bucket(al, al->ext[s])];

	/* The slot is in its bucket's chain; the chain ends with nr. */
	while (*pp != al->nr && *pp != s)
		pp = &al->hnext[*pp];
	if (*pp == s)
		*pp = al->hnext[s];
}

/* ---- LRU list of unpinned, not committing slots ---- */

static void
lru_del(struct md_al *al, uint32_t s)
{
	uint32_t p = al->lru_prev[s], n = al->lru_next[s];

	if (p != al->nr)
		al->lru_next[p] = n;
	else
		al->lru_head = n;
	if (n != al->nr)
		al->lru_prev[n] = p;
	else
		al->lru_tail = p;
	al->lru_prev[s] = al->lru_next[s] = al->nr;
}

/* Append s as most recently used. */
static void
lru_add_tail(struct md_al *al, uint32_t s)
{

	al->lru_prev[s] = al->lru_tail;
	al->lru_next[s] = al->nr;
	if (al->lru_tail != al->nr)
		al->lru_next[al->lru_tail] = s;
	else
		al->lru_head = s;
	al->lru_tail = s;
}

/* Insert s as least recently used (a freed slot is taken first). */
static void
lru_add_head(struct md_al *al, uint32_t s)
{

	al->lru_next[s] = al->lru_head;
	al->lru_prev[s] = al->nr;
	if (al->lru_head != al->nr)
		al->lru_prev[al->lru_head] = s;
	else
		al->lru_tail = s;
	al->lru_head = s;
}

int
md_al_init(struct md_al *al, uint32_t al_extents, uint32_t tr_count)
{
	uint32_t i, nb = 1;

	memset(al, 0, sizeof(*al));
	if (al_extents < MD_AL_EXTENTS_MIN || al_extents > MD_AL_EXTENTS_MAX ||
	    tr_count < md_al_ring_size(al_extents))
		return -EINVAL;
	while (nb < 2 * al_extents)
		nb <<= 1;
	al->nr = al_extents;
	al->tr_count = tr_count;
	al->hmask = nb - 1;
	al->ext = malloc(al_extents * sizeof(uint32_t));
	al->refs = calloc(al_extents, sizeof(uint32_t));
	al->put_seq = calloc(al_extents, sizeof(uint64_t));
	al->state = calloc(al_extents, 1);
	al->lru_prev = malloc(al_extents * sizeof(uint32_t));
	al->lru_next = malloc(al_extents * sizeof(uint32_t));
	al->hnext = malloc(al_extents * sizeof(uint32_t));
	al->hash = malloc(nb * sizeof(uint32_t));
	if (!al->ext || !al->refs || !al->put_seq || !al->state || !al->lru_prev ||
	    !al->lru_next || !al->hnext || !al->hash) {
		md_al_free(al);
		return -ENOMEM;
	}
	for (i = 0; i < nb; i++)
		al->hash[i] = al->nr;
	al->lru_head = al->lru_tail = al->nr;
	for (i = 0; i < al_extents; i++) {
		al->ext[i] = MD_AL_EMPTY;
		al->hnext[i] = al->nr;
		lru_add_tail(al, i);
	}
	al->next_tr = 1;
	return 0;
}

void
md_al_free(struct md_al *al)
{

	free(al->ext);
	free(al->refs);
	free(al->put_seq);
	free(al->state);
	free(al->lru_prev);
	free(al->lru_next);
	free(al->hnext);
	free(al->hash);
	memset(al, 0, sizeof(*al));
}

void
md_al_set_position(struct md_al *al, uint64_t next_tr, uint32_t next_index)
{

	al->next_tr = next_tr == 0 ? 1 : next_tr;
	al->next_index = next_index % al->tr_count;
}

int
md_al_touch(struct md_al *al, uint32_t extent, bool *need_tr)
{
	uint32_t s, i;

	*need_tr = true;
	if (extent == MD_AL_EMPTY)
		return -ERANGE;
	s = hash_find(al, extent);
	if (s != al->nr && al->state[s] == SLOT_ACTIVE) {
		*need_tr = false;
		if (al->refs[s] == 0) {
			lru_del(al, s);
			lru_add_tail(al, s);
		}
		return 0;
	}
	if (s != al->nr)
		return 0;		/* committing: active at commit */
	for (i = 0; i < al->n_pending; i++)
		if (al->pending[i] == extent)
			return 0;
	if (al->n_pending == MD_AL_UPDATES_PER_TR)
		return -EBUSY;
	al->pending[al->n_pending++] = extent;
	return 0;
}

int
md_al_get(struct md_al *al, uint32_t extent)
{
	uint32_t s = hash_find(al, extent);

	if (s == al->nr || al->state[s] != SLOT_ACTIVE)
		return -ENOENT;
	if (al->refs[s]++ == 0) {
		lru_del(al, s);
		al->n_pinned++;
	}
	return 0;
}

int
md_al_put(struct md_al *al, uint32_t extent)
{
	uint32_t s = hash_find(al, extent);

	if (s == al->nr || al->refs[s] == 0)
		return -ENOENT;
	if (--al->refs[s] == 0) {
		/* Never reset (not even when the slot takes another extent):
		 * a time too late costs a flush, one too early loses data. */
		al->put_seq[s] = ++al->puts;
		al->n_pinned--;
		lru_add_tail(al, s);
	}
	return 0;
}

uint32_t
md_al_pinned(const struct md_al *al)
{

	return al->n_pinned;
}

uint64_t
md_al_put_clock(const struct md_al *al)
{

	return al->puts;
}

uint64_t
md_al_victims_last_put(const struct md_al *al)
{
	uint64_t last = 0;
	uint32_t i = 0, s;

	/* The slots md_al_victims() names. */
	for (s = al->lru_head; s != al->nr && i < al->n_pending; s = al->lru_next[s], i++)
		if (al->ext[s] != MD_AL_EMPTY)
			last = MAX(last, al->put_seq[s]);
	return last;
}

bool
md_al_active(const struct md_al *al, uint32_t extent)
{
	uint32_t s = hash_find(al, extent);

	return s != al->nr && al->state[s] == SLOT_ACTIVE;
}

bool
md_al_need_tr(const struct md_al *al)
{

	return al->n_pending > 0 && !al->tr_busy;
}

/* Put queued extents into slots; returns how many (updates of the tr). */
static uint32_t
place_pending(struct md_al *al, uint16_t *upd_slot, uint32_t *upd_ext)
{
	uint32_t n = 0, s;

	/* One queued extent per iteration, until the queue or free slots end. */
	while (n < al->n_pending && al->lru_head != al->nr) {
		s = al->lru_head;
		lru_del(al, s);
		if (al->ext[s] != MD_AL_EMPTY) {
			hash_del(al, s);
			al->n_active--;
			al->evictions++;
		}
		al->ext[s] = al->pending[n];
		al->state[s] = SLOT_COMMITTING;
		hash_add(al, s);
		upd_slot[n] = (uint16_t)s;
		upd_ext[n] = al->pending[n];
		al->inflight[n] = s;
		n++;
	}
	memmove(al->pending, al->pending + n,
	    (al->n_pending - n) * sizeof(al->pending[0]));
	al->n_pending -= n;
	al->n_inflight = n;
	return n;
}

/* Encode the transaction header, updates and the next context slice. */
static void
encode_tr(struct md_al *al, uint8_t *p, uint32_t n, const uint16_t *slot,
    const uint32_t *ext)
{
	uint32_t i, cnt = MIN(MD_AL_CONTEXT_PER_TR, al->nr - al->ctx_start);

	memset(p, 0, MD_AL_TR_SIZE);
	put_be32(p + TR_MAGIC, MD_AL_MAGIC);
	put_be16(p + TR_N_UPDATES, (uint16_t)n);
	put_be64(p + TR_NUMBER, al->next_tr);
	put_be32(p + TR_CTX_START, al->ctx_start);
	put_be16(p + TR_CTX_COUNT, (uint16_t)cnt);
	for (i = 0; i < n; i++) {
		put_be16(p + TR_UPD_SLOT + 2 * i, slot[i]);
		put_be32(p + TR_UPD_EXT + 4 * i, ext[i]);
	}
	for (i = 0; i < cnt; i++)
		put_be32(p + TR_CTX + 4 * i, al->ext[al->ctx_start + i]);
	put_be64(p + TR_CSUM, XXH3_64bits(p, TR_CSUM));
	al->ctx_start = al->ctx_start + cnt >= al->nr ? 0 : al->ctx_start + cnt;
}

uint32_t
md_al_victims(const struct md_al *al, uint32_t *ext, uint32_t max)
{
	uint32_t n = 0, i = 0, s;

	/* place_pending() takes the LRU head once per queued extent. */
	for (s = al->lru_head; s != al->nr && i < al->n_pending && n < max;
	    s = al->lru_next[s], i++)
		if (al->ext[s] != MD_AL_EMPTY)
			ext[n++] = al->ext[s];
	return n;
}

int
md_al_make_tr(struct md_al *al, void *buf, uint32_t *index)
{
	uint16_t slot[MD_AL_UPDATES_PER_TR];
	uint32_t ext[MD_AL_UPDATES_PER_TR];
	uint32_t n;

	if (al->tr_busy)
		return -EBUSY;
	if (al->n_pending > 0 && al->lru_head == al->nr)
		return -EBUSY;		/* every slot pinned */
	n = place_pending(al, slot, ext);
	al->ctx_prev = al->ctx_start;
	encode_tr(al, buf, n, slot, ext);
	*index = al->next_index;
	al->tr_busy = true;
	return (int)n;
}

void
md_al_commit(struct md_al *al)
{
	uint32_t i, s;

	if (!al->tr_busy)
		return;
	for (i = 0; i < al->n_inflight; i++) {
		s = al->inflight[i];
		al->state[s] = SLOT_ACTIVE;
		al->n_active++;
		lru_add_tail(al, s);
	}
	al->n_inflight = 0;
	al->tr_busy = false;
	al->next_tr++;
	al->next_index = (al->next_index + 1) % al->tr_count;
	al->transactions++;
}

void
md_al_abort(struct md_al *al)
{
	uint32_t i, s, back = 0, keep[MD_AL_UPDATES_PER_TR];

	if (!al->tr_busy)
		return;
	/* Queue the extents again, ahead of newer ones, as far as room allows. */
	for (i = 0; i < al->n_inflight; i++) {
		s = al->inflight[i];
		keep[back++] = al->ext[s];
		hash_del(al, s);
		al->ext[s] = MD_AL_EMPTY;
		al->state[s] = SLOT_EMPTY;
		lru_add_head(al, s);
	}
	for (i = 0; i < al->n_pending && back < MD_AL_UPDATES_PER_TR; i++)
		keep[back++] = al->pending[i];
	memcpy(al->pending, keep, back * sizeof(keep[0]));
	al->n_pending = back;
	al->n_inflight = 0;
	al->tr_busy = false;
	/* The next transaction reuses the tr_number, ring index and context
	 * slice of the one that failed. */
	al->ctx_start = al->ctx_prev;
}

int
md_al_tr_decode(const void *buf, size_t len, uint32_t al_extents,
    struct md_al_tr *out)
{
	const uint8_t *p = buf;
	uint32_t i;

	if (len < MD_AL_TR_SIZE)
		return -EMSGSIZE;
	if (get_be32(p + TR_MAGIC) != MD_AL_MAGIC)
		return -ENODATA;
	if (get_be64(p + TR_CSUM) != XXH3_64bits(p, TR_CSUM))
		return -EBADMSG;
	out->tr_number = get_be64(p + TR_NUMBER);
	out->n_updates = get_be16(p + TR_N_UPDATES);
	out->ctx_start = get_be32(p + TR_CTX_START);
	out->ctx_count = get_be16(p + TR_CTX_COUNT);
	if (p[TR_TYPE] != 0 || p[TR_RESERVED1] != 0 ||
	    get_be16(p + TR_RESERVED2) != 0 || out->tr_number == 0 ||
	    out->n_updates > MD_AL_UPDATES_PER_TR ||
	    out->ctx_count > MD_AL_CONTEXT_PER_TR ||
	    out->ctx_start >= al_extents ||
	    out->ctx_count > al_extents - out->ctx_start)
		return -EINVAL;
	for (i = 0; i < out->n_updates; i++) {
		out->upd_slot[i] = get_be16(p + TR_UPD_SLOT + 2 * i);
		out->upd_ext[i] = get_be32(p + TR_UPD_EXT + 4 * i);
		if (out->upd_slot[i] >= al_extents ||
		    out->upd_ext[i] == MD_AL_EMPTY)
			return -EINVAL;
	}
	for (i = 0; i < out->ctx_count; i++)
		out->ctx[i] = get_be32(p + TR_CTX + 4 * i);
	return 0;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Valid transactions of the ring: index and tr_number, sorted by number. */
struct tr_ref {
	uint64_t number;	/* tr_number */
	uint32_t index;		/* ring index */
};

static int
cmp_tr_ref(const void *a, const void *b)
{
	const struct tr_ref *x = a, *y = b;

	return x->number < y->number ? -1 : x->number > y->number;
}

/* Apply one decoded transaction to the slot table. */
static void
replay_tr(const struct md_al_tr *tr, uint32_t *slots)
{
	uint32_t i;

	for (i = 0; i < tr->n_updates; i++)
		slots[tr->upd_slot[i]] = tr->upd_ext[i];
	for (i = 0; i < tr->ctx_count; i++)
		slots[tr->ctx_start + i] = tr->ctx[i];
}

/* Sort and deduplicate the slot table into the set of extents. */
static uint32_t
slots_to_set(uint32_t *slots, uint32_t n)
{
	uint32_t i, out = 0;

	qsort(slots, n, sizeof(*slots), cmp_u32);
	for (i = 0; i < n; i++) {
		if (slots[i] == MD_AL_EMPTY)
			break;		/* sorted last */
		if (out == 0 || slots[out - 1] != slots[i])
			slots[out++] = slots[i];
	}
	return out;
}

int
md_al_recover(const void *ring, uint32_t n_tr, uint32_t al_extents,
    uint32_t *extents, struct md_al_recovery *out)
{
	const uint8_t *p = ring;
	struct tr_ref *refs;
	struct md_al_tr tr;
	uint32_t i, n = 0;
	int r;

	memset(out, 0, sizeof(*out));
	if (n_tr == 0 || al_extents < MD_AL_EXTENTS_MIN ||
	    al_extents > MD_AL_EXTENTS_MAX)
		return -EINVAL;
	if ((refs = calloc(n_tr, sizeof(*refs))) == NULL)
		return -ENOMEM;
	for (i = 0; i < n_tr; i++) {
		r = md_al_tr_decode(p + (size_t)i * MD_AL_TR_SIZE,
		    MD_AL_TR_SIZE, al_extents, &tr);
		if (r == 0) {
			refs[n].number = tr.tr_number;
			refs[n++].index = i;
		} else if (r != -ENODATA) {
			out->n_invalid++;
		}
	}
	qsort(refs, n, sizeof(*refs), cmp_tr_ref);
	for (i = 0; i < al_extents; i++)
		extents[i] = MD_AL_EMPTY;
	for (i = 0; i < n; i++) {
		md_al_tr_decode(p + (size_t)refs[i].index * MD_AL_TR_SIZE,
		    MD_AL_TR_SIZE, al_extents, &tr);
		replay_tr(&tr, extents);
	}
	out->n_valid = n;
	out->n_extents = slots_to_set(extents, al_extents);
	if (n > 0) {
		out->last_tr = refs[n - 1].number;
		out->next_tr = out->last_tr + 1;
		out->next_index = (refs[n - 1].index + 1) % n_tr;
	} else {
		out->next_tr = 1;
	}
	free(refs);
	return 0;
}
