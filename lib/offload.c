/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Offload thread pool: blocking system calls run on workers, completions
 * come back to the loop thread through an eventfd.  See offload.h.
 */
#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include "log.h"
#include "loop.h"
#include "offload.h"

#define OFFLOAD_MAX_THREADS	64

struct offload {
	struct loop *l;			/* loop that runs the done callbacks */
	pthread_mutex_t mu;		/* protects todo, done and stop */
	pthread_cond_t cv;		/* signalled when todo grows or on stop */
	struct offload_job *todo_head;	/* waiting for a worker, FIFO */
	struct offload_job *todo_tail;
	struct offload_job *done_head;	/* finished, waiting for the loop */
	struct offload_job *done_tail;
	bool stop;			/* workers exit when todo is empty */
	int efd;			/* eventfd: done list became non-empty */
	struct loop_op poll_op;		/* one-shot POLLIN on efd */
	bool armed;			/* poll_op is in flight */
	unsigned pending;		/* loop thread: submitted, done not run */
	unsigned nthreads;		/* workers started */
	pthread_t *threads;		/* nthreads worker ids */
};

/* Append j to a singly linked FIFO. */
static void
fifo_push(struct offload_job **head, struct offload_job **tail,
    struct offload_job *j)
{
	j->next = NULL;
	if (*tail != NULL)
		(*tail)->next = j;
	else
		*head = j;
	*tail = j;
}

/*
 * Worker: take jobs in order, run them, hand them to the done list.  The
 * eventfd is written only when the done list goes from empty to non-empty:
 * the loop reads the eventfd before it empties the list, so a job finished
 * after that read always causes a new wakeup.
 */
static void *
worker(void *arg)
{
	struct offload *o = arg;
	struct offload_job *j;
	uint64_t one = 1;
	bool wake;

	pthread_mutex_lock(&o->mu);
	for (;;) {
		while (o->todo_head == NULL && !o->stop)
			pthread_cond_wait(&o->cv, &o->mu);
		if (o->todo_head == NULL)
			break;
		j = o->todo_head;
		o->todo_head = j->next;
		if (o->todo_head == NULL)
			o->todo_tail = NULL;
		pthread_mutex_unlock(&o->mu);

		j->fn(j);

		pthread_mutex_lock(&o->mu);
		wake = o->done_head == NULL;
		fifo_push(&o->done_head, &o->done_tail, j);
		if (wake && write(o->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_errno(LOG_ERR, -errno, "offload: eventfd write");
	}
	pthread_mutex_unlock(&o->mu);
	return NULL;
}

static void poll_cb(struct loop_op *op, int res);

/* Make sure the loop watches the eventfd while jobs are pending. */
static void
arm(struct offload *o)
{
	if (o->armed || o->pending == 0)
		return;
	o->armed = true;
	o->poll_op.cb = poll_cb;
	o->poll_op.data = o;
	loop_poll(o->l, &o->poll_op, o->efd, POLLIN);
}

/* Loop side: take every finished job and run its done callback. */
static void
poll_cb(struct loop_op *op, int res)
{
	struct offload *o = op->data;
	struct offload_job *j;
	uint64_t v;

	o->armed = false;
	if (res < 0)
		log_errno(LOG_WARNING, res, "offload: poll on eventfd");
	if (read(o->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_errno(LOG_ERR, -errno, "offload: eventfd read");
	pthread_mutex_lock(&o->mu);
	j = o->done_head;
	o->done_head = o->done_tail = NULL;
	pthread_mutex_unlock(&o->mu);
	while (j != NULL) {
		struct offload_job *next = j->next;

		o->pending--;
		j->done(j);
		j = next;
	}
	arm(o);
}

void
offload_submit(struct offload *o, struct offload_job *j)
{
	o->pending++;
	pthread_mutex_lock(&o->mu);
	fifo_push(&o->todo_head, &o->todo_tail, j);
	pthread_cond_signal(&o->cv);
	pthread_mutex_unlock(&o->mu);
	arm(o);
}

unsigned
offload_pending(const struct offload *o)
{
	return o->pending;
}

/* Tell the workers to exit and join the first n of them. */
static void
stop_workers(struct offload *o, unsigned n)
{
	pthread_mutex_lock(&o->mu);
	o->stop = true;
	pthread_cond_broadcast(&o->cv);
	pthread_mutex_unlock(&o->mu);
	for (unsigned i = 0; i < n; i++)
		pthread_join(o->threads[i], NULL);
}

/* Start the workers with every signal blocked (the loop thread owns them). */
static int
start_workers(struct offload *o, unsigned n)
{
	sigset_t all, old;
	int ret = 0;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (o->nthreads = 0; o->nthreads < n; o->nthreads++) {
		ret = -pthread_create(&o->threads[o->nthreads], NULL, worker, o);
		if (ret < 0)
			break;
		pthread_setname_np(o->threads[o->nthreads], "blkm-offload");
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret < 0) {
		log_errno(LOG_ERR, ret, "offload: starting worker thread");
		stop_workers(o, o->nthreads);
	}
	return ret;
}

int
offload_new(struct loop *l, unsigned threads, struct offload **out)
{
	struct offload *o;
	int ret;

	if (threads == 0 || threads > OFFLOAD_MAX_THREADS)
		return -EINVAL;
	o = calloc(1, sizeof(*o));
	if (o == NULL)
		return -ENOMEM;
	o->l = l;
	o->threads = calloc(threads, sizeof(*o->threads));
	o->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (o->threads == NULL || o->efd < 0) {
		ret = o->threads == NULL ? -ENOMEM : -errno;
		goto fail;
	}
	pthread_mutex_init(&o->mu, NULL);
	pthread_cond_init(&o->cv, NULL);
	ret = start_workers(o, threads);
	if (ret < 0) {
		pthread_cond_destroy(&o->cv);
		pthread_mutex_destroy(&o->mu);
		goto fail;
	}
	*out = o;
	return 0;
fail:
	if (o->efd >= 0)
		close(o->efd);
	free(o->threads);
	free(o);
	return ret;
}

void
offload_free(struct offload *o)
{
	if (o == NULL)
		return;
	assert(o->pending == 0 && !o->armed);
	stop_workers(o, o->nthreads);
	pthread_cond_destroy(&o->cv);
	pthread_mutex_destroy(&o->mu);
	close(o->efd);
	free(o->threads);
	free(o);
}
