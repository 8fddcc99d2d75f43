/*
 * dispatch.c - chat-server's dispatch queue and outbound buffers (chat_dispatch.h).
 *
 * Why native: at saturation most of the server's time went to appending one
 * frame to hundreds of buffers, one Python call and one lock each, with the
 * GIL held. Here a fan-out is one call that runs without the GIL, and each
 * worker sends what its tick queued itself, one send() per connection,
 * without waking the event loop.
 */
#define _GNU_SOURCE
#include "chat_dispatch.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* ---------------------------------------------------------------------------
 * dispatch queue: a growable ring under one mutex, a condition for the waiters
 * ------------------------------------------------------------------------- */
struct cd_queue {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    uint64_t *ring;
    size_t cap, head, len;
};

cd_queue *cd_queue_new(void) {
    cd_queue *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->cap = 256;
    q->ring = malloc(q->cap * sizeof *q->ring);
    pthread_condattr_t attr;
    if (!q->ring || pthread_condattr_init(&attr) != 0) {
        free(q->ring);
        free(q);
        return NULL;
    }
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&q->mu, NULL);
    return q;
}

void cd_queue_free(cd_queue *q) {
    if (!q) return;
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->mu);
    free(q->ring);
    free(q);
}

int cd_queue_push(cd_queue *q, uint64_t item) {
    if (!q) return CD_EINVAL;
    pthread_mutex_lock(&q->mu);
    if (q->len == q->cap) {
        size_t cap = q->cap * 2;
        uint64_t *ring = malloc(cap * sizeof *ring);
        if (!ring) {
            pthread_mutex_unlock(&q->mu);
            return CD_ENOMEM;
        }
        for (size_t i = 0; i < q->len; i++) ring[i] = q->ring[(q->head + i) % q->cap];
        free(q->ring);
        q->ring = ring;
        q->cap = cap;
        q->head = 0;
    }
    q->ring[(q->head + q->len) % q->cap] = item;
    q->len++;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->mu);
    return CD_OK;
}

size_t cd_queue_pop(cd_queue *q, uint64_t *items, size_t max, int timeout_ms) {
    if (!q || !items || max == 0) return 0;
    pthread_mutex_lock(&q->mu);
    if (q->len == 0 && timeout_ms != 0) {
        if (timeout_ms < 0) {
            while (q->len == 0) pthread_cond_wait(&q->cond, &q->mu);
        } else {
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_sec += timeout_ms / 1000;
            until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            while (q->len == 0) {
                if (pthread_cond_timedwait(&q->cond, &q->mu, &until) == ETIMEDOUT) break;
            }
        }
    }
    size_t n = q->len < max ? q->len : max;
    for (size_t i = 0; i < n; i++) {
        items[i] = q->ring[q->head];
        q->head = (q->head + 1) % q->cap;
    }
    q->len -= n;
    if (q->len > 0) pthread_cond_signal(&q->cond); /* more for another waiter */
    pthread_mutex_unlock(&q->mu);
    return n;
}

size_t cd_queue_len(cd_queue *q) {
    if (!q) return 0;
    pthread_mutex_lock(&q->mu);
    size_t n = q->len;
    pthread_mutex_unlock(&q->mu);
    return n;
}

/* ---------------------------------------------------------------------------
 * outbound buffers
 * ------------------------------------------------------------------------- */
#define REPORTED 0x100u /* internal: this overflow was reported once */
#define USED 0x200u     /* internal: appended to since the last cd_trim */
#define INTERNAL (REPORTED | USED)

/* A drained buffer keeps its memory up to this capacity, for the next tick's frames:
 * freeing it at every flush and growing it again (256 B, doubling) cost more CPU in page
 * faults and copies than the fan-out itself at saturation (bench/README.md, issue 18).
 * Bigger ones (a full roster of thousands) go at once; cd_trim frees the rest once their
 * slot has gone a whole period without an append (an idle connection holds none), or
 * when a buffer is more than four times what the period queued at most (a burst is
 * over): what is kept follows what is used. */
#define RETAIN_MAX (256u * 1024u)

struct buf {
    uint8_t *data;
    size_t off, len, cap; /* bytes [off, len) are queued */
};

struct slot {
    pthread_mutex_t mu;
    uint32_t gen;
    int in_use;
    int fd;
    uint32_t flags;
    uint32_t tag;
    size_t peak; /* most bytes queued in main since the last cd_trim */
    struct buf main;
    struct buf held;
};

struct cd_out {
    uint32_t nslots;
    struct slot *slots;
    size_t limit, soft, total_limit;
    uint64_t total; /* __atomic */
    uint64_t sent;  /* __atomic: bytes handed to send() or consumed by the caller's write */
};

struct cd_tick {
    cd_out *o;
    uint32_t epoch;
    uint32_t *marks; /* per slot: the epoch in which it was last marked dirty */
    uint32_t *where; /* per slot: its place in dirty while marked */
    uint64_t *dirty;
    size_t ndirty;
};

static size_t buf_size(const struct buf *b) { return b->len - b->off; }

static void buf_drop(struct buf *b) {
    free(b->data);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}

/* Everything is out: keep the memory for the next frames, unless it is big. */
static void buf_drained(struct buf *b) {
    if (b->cap > RETAIN_MAX) buf_drop(b);
    else b->off = b->len = 0;
}

static int buf_put(struct buf *b, const uint8_t *data, size_t n) {
    if (n == 0) return CD_OK;
    if (n > SIZE_MAX - b->len) return CD_ENOMEM; /* no buffer that long */
    if (b->off > 0 && b->off == b->len) b->off = b->len = 0;
    if (b->len + n > b->cap) {
        size_t live = b->len - b->off;
        if (b->off > 0 && live + n <= b->cap) { /* room once compacted */
            memmove(b->data, b->data + b->off, live);
        } else {
            size_t cap = b->cap ? b->cap : 256;
            while (cap < live + n) {
                if (cap > SIZE_MAX / 2) return CD_ENOMEM;
                cap *= 2;
            }
            uint8_t *data = malloc(cap);
            if (!data) return CD_ENOMEM;
            if (live) memcpy(data, b->data + b->off, live);
            free(b->data);
            b->data = data;
            b->cap = cap;
        }
        b->off = 0;
        b->len = live;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    return CD_OK;
}

cd_out *cd_out_new(uint32_t slots, size_t limit, size_t soft, size_t total_limit) {
    if (slots == 0 || limit == 0) return NULL;
    cd_out *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->slots = calloc(slots, sizeof *o->slots);
    if (!o->slots) {
        free(o);
        return NULL;
    }
    for (uint32_t i = 0; i < slots; i++) {
        pthread_mutex_init(&o->slots[i].mu, NULL);
        o->slots[i].fd = -1;
    }
    o->nslots = slots;
    o->limit = limit;
    o->soft = soft;
    o->total_limit = total_limit;
    return o;
}

void cd_out_free(cd_out *o) {
    if (!o) return;
    for (uint32_t i = 0; i < o->nslots; i++) {
        buf_drop(&o->slots[i].main);
        buf_drop(&o->slots[i].held);
        pthread_mutex_destroy(&o->slots[i].mu);
    }
    free(o->slots);
    free(o);
}

static uint64_t handle_of(uint32_t slot, uint32_t gen) { return ((uint64_t)gen << 32) | slot; }

/* The slot of a handle, locked, or NULL (bad index, stale or not open). */
static struct slot *lock_live(cd_out *o, uint64_t h) {
    if (!o) return NULL;
    uint32_t index = (uint32_t)(h & 0xffffffffu);
    if (index >= o->nslots) return NULL;
    struct slot *s = &o->slots[index];
    pthread_mutex_lock(&s->mu);
    if (!s->in_use || s->gen != (uint32_t)(h >> 32)) {
        pthread_mutex_unlock(&s->mu);
        return NULL;
    }
    return s;
}

static void account(cd_out *o, int64_t delta) {
    __atomic_add_fetch(&o->total, (uint64_t)delta, __ATOMIC_RELAXED);
}

int cd_open(cd_out *o, uint32_t slot, int fd, uint32_t flags, uint64_t *handle) {
    if (!o || !handle || slot >= o->nslots || (fd < 0 && (flags & CD_DIRECT))) return CD_EINVAL;
    struct slot *s = &o->slots[slot];
    pthread_mutex_lock(&s->mu);
    if (s->in_use) {
        pthread_mutex_unlock(&s->mu);
        return CD_EINVAL;
    }
    s->gen++;
    if (s->gen == 0) s->gen = 1; /* a handle is never 0 in its high half */
    s->in_use = 1;
    s->fd = fd;
    s->flags = flags & CD_DIRECT;
    s->tag = 0;
    s->peak = 0;
    *handle = handle_of(slot, s->gen);
    pthread_mutex_unlock(&s->mu);
    return CD_OK;
}

int cd_close(cd_out *o, uint64_t h) {
    struct slot *s = lock_live(o, h);
    if (!s) return CD_EINVAL;
    account(o, -(int64_t)(buf_size(&s->main) + buf_size(&s->held)));
    buf_drop(&s->main);
    buf_drop(&s->held);
    s->in_use = 0;
    s->fd = -1;
    s->flags = CD_CLOSED;
    s->gen++; /* every handle of this connection is stale from here on */
    if (s->gen == 0) s->gen = 1;
    pthread_mutex_unlock(&s->mu);
    return CD_OK;
}

int cd_set_tag(cd_out *o, uint64_t h, uint32_t tag) {
    struct slot *s = lock_live(o, h);
    if (!s) return CD_EINVAL;
    s->tag = tag;
    pthread_mutex_unlock(&s->mu);
    return CD_OK;
}

static void mark(cd_tick *t, uint64_t h) {
    if (!t) return;
    uint32_t index = (uint32_t)(h & 0xffffffffu);
    if (index >= t->o->nslots) return;
    if (t->marks[index] == t->epoch) {
        /* Marked already; a newer connection in the slot replaces a closed one. */
        t->dirty[t->where[index]] = h;
        return;
    }
    t->marks[index] = t->epoch;
    t->where[index] = (uint32_t)t->ndirty;
    t->dirty[t->ndirty++] = h;
}

/* Append under the slot's lock: `first` queues ahead of what waits aside. */
static int put_locked(cd_out *o, struct slot *s, const uint8_t *data, size_t n, int first) {
    if (s->flags & (CD_SEALED | CD_CLOSED)) return CD_DROPPED;
    size_t have = buf_size(&s->main) + buf_size(&s->held);
    size_t size = n > SIZE_MAX - have ? SIZE_MAX : have + n; /* past SIZE_MAX is past the limit */
    uint64_t total = __atomic_load_n(&o->total, __ATOMIC_RELAXED);
    if ((s->flags & CD_OVERFLOWED) || size > o->limit ||
        (size > o->soft && total > o->total_limit)) {
        s->flags |= CD_OVERFLOWED;
        return CD_OVERFLOW;
    }
    struct buf *b = (s->flags & CD_HOLDING) && !first ? &s->held : &s->main;
    s->flags |= USED;
    if (buf_size(&s->main) + n > s->peak) s->peak = buf_size(&s->main) + n;
    if (buf_put(b, data, n) != CD_OK) {
        /* No memory for it: the connection cannot get this frame, so it gets nothing more
         * (Redis' rule for a client whose buffer cannot grow): reported like an overflow. */
        s->flags |= CD_OVERFLOWED;
        return CD_OVERFLOW;
    }
    account(o, (int64_t)n);
    return CD_OK;
}

int cd_append(cd_out *o, cd_tick *t, uint64_t h, const uint8_t *data, size_t n) {
    if (n && !data) return CD_EINVAL;
    struct slot *s = lock_live(o, h);
    if (!s) return CD_DROPPED;
    int rc = put_locked(o, s, data, n, 0);
    pthread_mutex_unlock(&s->mu);
    if (rc == CD_OK || rc == CD_OVERFLOW) mark(t, h);
    return rc;
}

size_t cd_fanout(cd_out *o, cd_tick *t, const uint8_t *data, size_t n, const uint64_t *handles,
                 size_t count, uint32_t exclude, uint64_t skip, uint8_t *failed) {
    if (failed && count) memset(failed, 0, count);
    if (!o || (n && !data) || (count && !handles)) {
        if (failed && count) memset(failed, 1, count);
        return 0;
    }
    size_t took = 0;
    for (size_t i = 0; i < count; i++) {
        if (skip && handles[i] == skip) continue; /* the sending connection itself */
        struct slot *s = lock_live(o, handles[i]);
        if (!s) {
            if (failed) failed[i] = 1;
            continue;
        }
        if (exclude && s->tag == exclude) {
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        int rc = put_locked(o, s, data, n, 0);
        pthread_mutex_unlock(&s->mu);
        if (rc == CD_OK) took++;
        else if (failed) failed[i] = 1;
        if (rc == CD_OK || rc == CD_OVERFLOW) mark(t, handles[i]);
    }
    return took;
}

int cd_seal(cd_out *o, cd_tick *t, uint64_t h, const uint8_t *data, size_t n) {
    if (n && !data) return CD_EINVAL;
    struct slot *s = lock_live(o, h);
    if (!s) return CD_DROPPED;
    if (s->flags & CD_SEALED) {
        pthread_mutex_unlock(&s->mu);
        return CD_DROPPED;
    }
    /* Live frames held for a catch-up that cannot finish would overtake offline ones. */
    account(o, -(int64_t)buf_size(&s->held));
    buf_drop(&s->held);
    s->flags = (s->flags & ~CD_HOLDING) | CD_SEALED;
    int rc = buf_put(&s->main, data, n);
    if (rc == CD_OK) {
        account(o, (int64_t)n);
    } else { /* the final frame does not fit in memory: close without it */
        s->flags |= CD_OVERFLOWED;
        rc = CD_OVERFLOW;
    }
    pthread_mutex_unlock(&s->mu);
    mark(t, h);
    return rc;
}

int cd_hold(cd_out *o, uint64_t h) {
    struct slot *s = lock_live(o, h);
    if (!s) return CD_DROPPED;
    if (!(s->flags & (CD_SEALED | CD_CLOSED))) s->flags |= CD_HOLDING;
    pthread_mutex_unlock(&s->mu);
    return CD_OK;
}

int cd_append_first(cd_out *o, cd_tick *t, uint64_t h, const uint8_t *data, size_t n) {
    if (n && !data) return CD_EINVAL;
    struct slot *s = lock_live(o, h);
    if (!s) return CD_DROPPED;
    int rc = put_locked(o, s, data, n, 1);
    pthread_mutex_unlock(&s->mu);
    if (rc == CD_OK || rc == CD_OVERFLOW) mark(t, h);
    return rc;
}

int cd_release(cd_out *o, cd_tick *t, uint64_t h) {
    struct slot *s = lock_live(o, h);
    if (!s) return CD_DROPPED;
    int rc = CD_OK;
    if (s->flags & CD_HOLDING) {
        s->flags &= ~CD_HOLDING;
        size_t n = buf_size(&s->held);
        if (n && !(s->flags & (CD_SEALED | CD_CLOSED))) {
            if (buf_put(&s->main, s->held.data + s->held.off, n) != CD_OK) {
                /* The held frames cannot follow the catch-up: the connection would miss
                 * them, so it is closed like an overflow, never silently shortened. */
                account(o, -(int64_t)n);
                s->flags |= CD_OVERFLOWED;
                rc = CD_OVERFLOW;
            }
        } else {
            account(o, -(int64_t)n);
        }
        buf_drop(&s->held);
    }
    pthread_mutex_unlock(&s->mu);
    mark(t, h);
    return rc;
}

size_t cd_pending(cd_out *o, uint64_t h) {
    struct slot *s = lock_live(o, h);
    if (!s) return 0;
    size_t n = buf_size(&s->main);
    pthread_mutex_unlock(&s->mu);
    return n;
}

uint32_t cd_state(cd_out *o, uint64_t h) {
    struct slot *s = lock_live(o, h);
    if (!s) return CD_CLOSED;
    uint32_t flags = s->flags & ~INTERNAL;
    pthread_mutex_unlock(&s->mu);
    return flags;
}

uint64_t cd_total(cd_out *o) { return o ? __atomic_load_n(&o->total, __ATOMIC_RELAXED) : 0; }

uint64_t cd_sent(cd_out *o) { return o ? __atomic_load_n(&o->sent, __ATOMIC_RELAXED) : 0; }
size_t cd_trim(cd_out *o) {
    if (!o) return 0;
    size_t freed = 0;
    for (uint32_t i = 0; i < o->nslots; i++) {
        struct slot *s = &o->slots[i];
        pthread_mutex_lock(&s->mu);
        if (s->in_use && s->main.data && s->main.off == s->main.len) {
            /* Drained: idle for a whole period, or kept far bigger than this period
             * needed (a burst is over): freed, to grow again to what is used. */
            size_t need = s->peak > 256 ? s->peak : 256;
            if (!(s->flags & USED) || s->main.cap / 4 > need) {
                freed += s->main.cap;
                buf_drop(&s->main);
            }
        }
        s->flags &= ~USED;
        s->peak = 0;
        pthread_mutex_unlock(&s->mu);
    }
    return freed;
}

/* Send what the slot holds (its lock held): the CD_S_* status. */
static uint32_t flush_locked(cd_out *o, struct slot *s, int *err) {
    uint32_t status = 0;
    *err = 0;
    if ((s->flags & CD_OVERFLOWED) && !(s->flags & REPORTED)) {
        s->flags |= REPORTED;
        status |= CD_S_OVERFLOW;
    }
    if (!(s->flags & CD_DIRECT)) {
        if (buf_size(&s->main) || (s->flags & CD_SEALED)) status |= CD_S_LOOP;
        return status;
    }
    struct buf *b = &s->main;
    while (b->off < b->len) {
        ssize_t sent = send(s->fd, b->data + b->off, b->len - b->off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent > 0) {
            b->off += (size_t)sent;
            account(o, -(int64_t)sent);
            __atomic_add_fetch(&o->sent, (uint64_t)sent, __ATOMIC_RELAXED);
        } else if (sent < 0 && errno == EINTR) {
            continue;
        } else if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return status | CD_S_LEFT;
        } else {
            *err = sent < 0 ? errno : EPIPE;
            return status | CD_S_ERROR;
        }
    }
    buf_drained(b); /* its memory serves the next tick; cd_trim frees an idle one's */
    if (s->flags & CD_SEALED) status |= CD_S_SEALED;
    return status;
}

uint32_t cd_flush(cd_out *o, uint64_t h, int *err, size_t *left) {
    int e = 0;
    size_t rest = 0;
    uint32_t status = 0;
    struct slot *s = lock_live(o, h);
    if (s) {
        status = flush_locked(o, s, &e);
        rest = buf_size(&s->main);
        pthread_mutex_unlock(&s->mu);
    }
    if (err) *err = e;
    if (left) *left = rest;
    return status;
}

size_t cd_peek(cd_out *o, uint64_t h, uint8_t *dst, size_t max) {
    if (!dst && max) return 0;
    struct slot *s = lock_live(o, h);
    if (!s) return 0;
    size_t n = buf_size(&s->main);
    if (n > max) n = max;
    if (n) memcpy(dst, s->main.data + s->main.off, n);
    pthread_mutex_unlock(&s->mu);
    return n;
}

int cd_consume(cd_out *o, uint64_t h, size_t n) {
    struct slot *s = lock_live(o, h);
    if (!s) return CD_DROPPED;
    size_t have = buf_size(&s->main);
    if (n > have) {
        pthread_mutex_unlock(&s->mu);
        return CD_EINVAL;
    }
    s->main.off += n;
    account(o, -(int64_t)n);
    __atomic_add_fetch(&o->sent, (uint64_t)n, __ATOMIC_RELAXED);
    if (s->main.off == s->main.len) buf_drained(&s->main);
    pthread_mutex_unlock(&s->mu);
    return CD_OK;
}

/* ---------------------------------------------------------------------------
 * ticks
 * ------------------------------------------------------------------------- */
cd_tick *cd_tick_new(cd_out *o) {
    if (!o) return NULL;
    cd_tick *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->o = o;
    t->epoch = 1;
    t->marks = calloc(o->nslots, sizeof *t->marks);
    t->where = calloc(o->nslots, sizeof *t->where);
    t->dirty = calloc(o->nslots, sizeof *t->dirty);
    if (!t->marks || !t->where || !t->dirty) {
        cd_tick_free(t);
        return NULL;
    }
    return t;
}

void cd_tick_free(cd_tick *t) {
    if (!t) return;
    free(t->marks);
    free(t->where);
    free(t->dirty);
    free(t);
}

size_t cd_tick_flush(cd_out *o, cd_tick *t, uint64_t *handles, uint32_t *statuses, int *errs,
                     size_t max) {
    if (!o || !t || t->o != o) return 0;
    if (max && (!handles || !statuses || !errs)) max = 0;
    size_t reported = 0, i = 0;
    for (; i < t->ndirty; i++) {
        if (reported == max) break; /* no room to report: the rest stays dirty */
        uint64_t h = t->dirty[i];
        int err = 0;
        uint32_t status = 0;
        struct slot *s = lock_live(o, h);
        if (!s) continue;
        status = flush_locked(o, s, &err);
        pthread_mutex_unlock(&s->mu);
        if (status) {
            handles[reported] = h;
            statuses[reported] = status;
            errs[reported] = err;
            reported++;
        }
    }
    /* What could not be reported stays dirty, at the front, for the next call. */
    size_t rest = t->ndirty - i;
    memmove(t->dirty, t->dirty + i, rest * sizeof *t->dirty);
    t->ndirty = rest;
    t->epoch++;
    if (t->epoch == 0) { /* wrapped: forget every mark */
        memset(t->marks, 0, t->o->nslots * sizeof *t->marks);
        t->epoch = 1;
    }
    for (size_t j = 0; j < rest; j++) {
        uint32_t index = (uint32_t)(t->dirty[j] & 0xffffffffu);
        t->marks[index] = t->epoch;
        t->where[index] = (uint32_t)j;
    }
    return reported;
}
