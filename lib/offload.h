/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A small pool of worker threads for system calls that block: ioctls
 * (BLKDISCARD), fallocate(2), fdatasync(2), and all of the sync io engine's
 * pread/pwrite.  A job's fn runs on a worker; then its done callback runs on
 * the loop thread: finished jobs are handed back through an eventfd that the
 * loop polls (one-shot, armed only while jobs are pending).
 *
 * Rules: offload_submit() and offload_free() are called on the loop thread
 * only; a job belongs to the pool from submit until its done callback runs;
 * done callbacks may submit more jobs but must not free the pool.
 */
#ifndef BLKMIRROR_OFFLOAD_H
#define BLKMIRROR_OFFLOAD_H

struct loop;
struct offload;

struct offload_job {
	void (*fn)(struct offload_job *j);	/* runs on a worker thread */
	void (*done)(struct offload_job *j);	/* then runs on the loop thread */
	void *data;				/* owner's context, untouched */
	struct offload_job *next;		/* pool-private queue link */
};

/*
 * Start threads workers (1..64) whose completions come back through loop l.
 * Workers block every signal.  Returns 0 or a negative errno.
 */
int offload_new(struct loop *l, unsigned threads, struct offload **out);
/* Queue j; j->done runs on a later loop iteration, never from here. */
void offload_submit(struct offload *o, struct offload_job *j);
/* Jobs submitted whose done callback has not run yet. */
unsigned offload_pending(const struct offload *o);
/* Stop and join the workers; offload_pending() must be 0. */
void offload_free(struct offload *o);

#endif
