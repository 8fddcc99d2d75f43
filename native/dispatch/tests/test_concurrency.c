/* libchatdispatch under threads, through its public ABI only (chat_dispatch.h).
 *
 * 1. The queue: producers push numbered items while consumers pop them (batches
 *    with timeouts, and single pops waiting for ever): every item comes out
 *    exactly once, and each consumer sees each producer's items in order.
 * 2. The outbound buffers, as the server uses them: producer threads fan frames
 *    out to every slot (each with its own cd_tick, flushed every few frames), a
 *    flusher thread calls cd_flush on every slot, and a "net" thread reads every
 *    peer (sockets for CD_DIRECT slots, cd_peek/cd_consume for the loop's slots),
 *    holds and releases slots with catch-up frames, and seals, closes and reopens
 *    connections all the time. Every byte stream must be whole frames, each
 *    producer's in order, each frame addressed to that connection's handle (so no
 *    byte of an earlier connection reaches a reopened slot), none excluded by the
 *    connection's tag, and a sealed stream ends with its final frame.
 *
 * usage: test_concurrency [seconds]   (default 2; the whole run takes about twice that)
 * Built with -fsanitize=thread as well (CHATDISPATCH_SANITIZE=thread).
 */
#define _GNU_SOURCE
#include "chat_dispatch.h"
#include "test_util.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>

/* ---- 1. the queue --------------------------------------------------------------- */

enum { QP = 4, QC = 4, QITEMS = 60000 };
static const uint64_t SENTINEL = UINT64_MAX;

struct qconsumer {
    cd_queue *q;
    int forever; /* pop one at a time with timeout -1, else batches with a timeout */
    uint64_t *got;
    size_t ngot;
    unsigned seed;
};

static cd_queue *shared_q;

static void *queue_producer(void *arg) {
    uint64_t p = (uint64_t)(uintptr_t)arg;
    for (uint64_t i = 0; i < QITEMS; i++) {
        if (cd_queue_push(shared_q, p << 32 | i) != CD_OK) {
            fprintf(stderr, "push failed\n");
            abort();
        }
        if ((i & 1023) == 0) sched_yield();
    }
    return NULL;
}

static void *queue_consumer(void *arg) {
    struct qconsumer *c = arg;
    uint64_t items[32];
    for (;;) {
        size_t max = c->forever ? 1 : 1 + (size_t)(rand_r(&c->seed) % 32);
        size_t n = cd_queue_pop(c->q, items, max, c->forever ? -1 : 5);
        int sentinels = 0;
        for (size_t i = 0; i < n; i++) {
            if (items[i] == SENTINEL) {
                sentinels++;
            } else {
                c->got[c->ngot++] = items[i];
            }
        }
        if (sentinels) {
            /* One is this consumer's; the others go back for the others. */
            for (int i = 1; i < sentinels; i++) cd_queue_push(c->q, SENTINEL);
            return NULL;
        }
    }
}

static void test_queue_mpmc(void) {
    shared_q = cd_queue_new();
    REQUIRE(shared_q != NULL, "cd_queue_new");
    pthread_t prod[QP], cons[QC];
    struct qconsumer c[QC];
    for (int i = 0; i < QC; i++) {
        c[i].q = shared_q;
        c[i].forever = i % 2;
        c[i].got = malloc(sizeof(uint64_t) * QP * QITEMS);
        REQUIRE(c[i].got != NULL, "malloc");
        c[i].ngot = 0;
        c[i].seed = 1234u + (unsigned)i;
        REQUIRE(pthread_create(&cons[i], NULL, queue_consumer, &c[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < QP; i++) {
        REQUIRE(pthread_create(&prod[i], NULL, queue_producer, (void *)(uintptr_t)i) == 0,
                "pthread_create");
    }
    for (int i = 0; i < QP; i++) pthread_join(prod[i], NULL);
    for (int i = 0; i < QC; i++) cd_queue_push(shared_q, SENTINEL);
    for (int i = 0; i < QC; i++) pthread_join(cons[i], NULL);

    uint8_t *seen = calloc((size_t)QP * QITEMS, 1);
    REQUIRE(seen != NULL, "calloc");
    size_t total = 0, dup = 0, order = 0;
    for (int i = 0; i < QC; i++) {
        uint64_t last[QP];
        for (int p = 0; p < QP; p++) last[p] = UINT64_MAX;
        for (size_t k = 0; k < c[i].ngot; k++) {
            uint64_t p = c[i].got[k] >> 32, n = c[i].got[k] & 0xffffffffu;
            REQUIRE(p < QP && n < QITEMS, "an item nobody pushed: %llx",
                    (unsigned long long)c[i].got[k]);
            if (seen[p * QITEMS + n]++) dup++;
            if (last[p] != UINT64_MAX && n <= last[p]) order++;
            last[p] = n;
            total++;
        }
        free(c[i].got);
    }
    size_t missing = 0;
    for (size_t k = 0; k < (size_t)QP * QITEMS; k++) missing += seen[k] == 0;
    CHECK(total == (size_t)QP * QITEMS, "popped %zu of %d", total, QP * QITEMS);
    CHECK(dup == 0 && missing == 0, "%zu popped twice, %zu never", dup, missing);
    CHECK(order == 0, "%zu items out of their producer's order", order);
    CHECK(cd_queue_len(shared_q) == 0, "left in the queue: %zu", cd_queue_len(shared_q));
    free(seen);
    cd_queue_free(shared_q);
    printf("queue: %d producers, %d consumers, %zu items, each once, in order\n", QP, QC, total);
}

/* ---- 2. the outbound buffers ------------------------------------------------------ */

enum {
    SLOTS = 8,
    PRODUCERS = 3,
    CATCHUP = PRODUCERS,      /* producer id of the net thread's catch-up frames */
    FINAL = PRODUCERS + 1,    /* producer id of a final (sealed) frame */
    IDS = PRODUCERS + 2,
    MAGIC = 0x0ddba11u,
    HDR = 24,
    MAXFRAME = HDR + 8 * SLOTS + 256,
};

struct conn {
    uint64_t h;
    int direct;
    int fd, peer; /* the library's end and the peer's, for CD_DIRECT */
    uint32_t tag;
    int holding;
    int sealed;
    uint32_t last_seq[IDS];
    int have_seq[IDS];
    uint8_t *buf; /* bytes received, not yet parsed */
    size_t nbuf, cap;
    uint32_t catchup_seq;
};

static cd_out *out;
static uint64_t cur[SLOTS];  /* __atomic: the handle each producer should use, or 0 */
static int stop_producers;   /* __atomic */
static int stop_flusher;     /* __atomic */
static uint64_t frames_sent; /* __atomic */
static struct conn conns[SLOTS]; /* the net thread's alone */
static uint64_t frames_ok, bytes_ok, reopened, sealed_ok, holds, overflows, errors_seen;
static int stream_errors;

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static uint32_t get32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint8_t payload_byte(uint32_t producer, uint32_t seq, size_t i) {
    return (uint8_t)(seq * 7u + producer * 31u + i);
}

/* A frame addressed to `handles`; returns its length. */
static size_t make_frame(uint8_t *f, uint32_t producer, uint32_t seq, uint32_t exclude,
                         const uint64_t *handles, uint32_t count, size_t payload) {
    size_t len = HDR + 8 * (size_t)count + payload;
    put32(f, MAGIC);
    put32(f + 4, (uint32_t)len);
    put32(f + 8, producer);
    put32(f + 12, seq);
    put32(f + 16, exclude);
    put32(f + 20, count);
    memcpy(f + HDR, handles, 8 * (size_t)count);
    for (size_t i = 0; i < payload; i++) f[HDR + 8 * count + i] = payload_byte(producer, seq, i);
    return len;
}

#define STREAM_FAIL(c, ...)                                                      \
    do {                                                                         \
        stream_errors++;                                                         \
        if (stream_errors < 10) {                                                \
            fprintf(stderr, "slot %u handle %llx: ", (unsigned)((c)->h & 0xffff), \
                    (unsigned long long)(c)->h);                                 \
            fprintf(stderr, __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                 \
        }                                                                        \
    } while (0)

/* Parse and check every whole frame received on the connection. At the end of a
 * closed stream (`eof`), a cut frame is fine: cd_close drops what was not sent. */
static void check_stream(struct conn *c, int eof) {
    size_t at = 0;
    while (c->nbuf - at >= HDR) {
        const uint8_t *f = c->buf + at;
        uint32_t len = get32(f + 4), producer = get32(f + 8), seq = get32(f + 12);
        uint32_t exclude = get32(f + 16), count = get32(f + 20);
        if (get32(f) != MAGIC || len > MAXFRAME || count > SLOTS || producer >= IDS ||
            len < HDR + 8 * count) {
            STREAM_FAIL(c, "not a frame at byte %zu (magic %x len %u)", at, get32(f), len);
            c->nbuf = 0;
            return;
        }
        if (c->nbuf - at < len) break;
        int mine = 0;
        for (uint32_t i = 0; i < count; i++) {
            uint64_t h;
            memcpy(&h, f + HDR + 8 * i, 8);
            if (h == c->h) mine = 1;
        }
        if (!mine) STREAM_FAIL(c, "a frame of producer %u seq %u for other handles", producer, seq);
        if (exclude && exclude == c->tag) STREAM_FAIL(c, "a frame excluding tag %u came", exclude);
        if (c->have_seq[producer] && seq <= c->last_seq[producer]) {
            STREAM_FAIL(c, "producer %u: seq %u after %u", producer, seq, c->last_seq[producer]);
        }
        if (c->have_seq[FINAL]) STREAM_FAIL(c, "a frame after the final frame");
        c->have_seq[producer] = 1;
        c->last_seq[producer] = seq;
        const uint8_t *payload = f + HDR + 8 * count;
        for (size_t i = 0; i < len - HDR - 8 * count; i++) {
            if (payload[i] != payload_byte(producer, seq, i)) {
                STREAM_FAIL(c, "payload of producer %u seq %u differs at %zu", producer, seq, i);
                break;
            }
        }
        frames_ok++;
        bytes_ok += len;
        at += len;
    }
    memmove(c->buf, c->buf + at, c->nbuf - at);
    c->nbuf -= at;
    (void)eof;
}

static void conn_take(struct conn *c, const uint8_t *data, size_t n) {
    if (c->nbuf + n > c->cap) {
        size_t cap = c->cap ? c->cap : 65536;
        while (cap < c->nbuf + n) cap *= 2;
        c->buf = realloc(c->buf, cap);
        REQUIRE(c->buf != NULL, "realloc");
        c->cap = cap;
    }
    memcpy(c->buf + c->nbuf, data, n);
    c->nbuf += n;
}

/* Move what the connection's peer can read now into its stream. */
static size_t conn_read(struct conn *c) {
    static uint8_t tmp[65536];
    size_t n = 0, total = 0;
    if (c->direct) {
        while ((n = read_now(c->peer, tmp, sizeof tmp)) > 0) {
            conn_take(c, tmp, n);
            total += n;
        }
    } else {
        while ((n = cd_peek(out, c->h, tmp, sizeof tmp)) > 0) {
            conn_take(c, tmp, n);
            if (cd_consume(out, c->h, n) != CD_OK) STREAM_FAIL(c, "consume of a peek failed");
            total += n;
        }
    }
    if (total) check_stream(c, 0);
    return total;
}

static void conn_open(uint32_t slot, unsigned *seed) {
    struct conn *c = &conns[slot];
    uint8_t *buf = c->buf;
    size_t cap = c->cap;
    memset(c, 0, sizeof *c);
    c->buf = buf;
    c->cap = cap;
    c->direct = slot % 2 == 0;
    c->fd = c->peer = -1;
    if (c->direct) {
        int sv[2];
        unix_pair(sv, 32768);
        c->fd = sv[0];
        c->peer = sv[1];
    }
    REQUIRE(cd_open(out, slot, c->fd, c->direct ? CD_DIRECT : 0, &c->h) == CD_OK, "cd_open");
    c->tag = (uint32_t)(rand_r(seed) % 4); /* producers exclude tags 1..3 */
    REQUIRE(cd_set_tag(out, c->h, c->tag) == CD_OK, "cd_set_tag");
    __atomic_store_n(&cur[slot], c->h, __ATOMIC_RELEASE);
}

/* Seal with a final frame (sometimes), let it out, close, read to the end, reopen. */
static void conn_recycle(uint32_t slot, unsigned *seed, int seal) {
    struct conn *c = &conns[slot];
    __atomic_store_n(&cur[slot], 0, __ATOMIC_RELEASE);
    int sealed = 0;
    if (seal) {
        uint8_t f[MAXFRAME];
        size_t len = make_frame(f, FINAL, 1, 0, &c->h, 1, 16);
        if (cd_seal(out, NULL, c->h, f, len) == CD_OK) {
            CHECK(cd_state(out, c->h) & CD_SEALED, "not sealed");
            CHECK(cd_append(out, NULL, c->h, f, len) == CD_DROPPED, "append after seal");
            /* Let everything out (the flusher may be sending it too). */
            double deadline = now_ms() + 3000;
            while (now_ms() < deadline) {
                conn_read(c);
                if (c->direct) {
                    int err = 0;
                    uint32_t st = cd_flush(out, c->h, &err, NULL);
                    if (st & CD_S_ERROR) break;
                    if (st & CD_S_SEALED) {
                        sealed = 1;
                        break;
                    }
                } else if (cd_pending(out, c->h) == 0) {
                    sealed = 1;
                    break;
                }
                sched_yield();
            }
        }
    }
    CHECK(cd_close(out, c->h) == CD_OK, "cd_close");
    /* From here on the library never uses c->fd: close it, and read the peer to EOF. */
    if (c->direct) {
        close(c->fd);
        conn_read(c);
        close(c->peer);
    } else {
        conn_read(c); /* a stale handle: nothing */
    }
    check_stream(c, 1);
    if (sealed) {
        if (!c->have_seq[FINAL] || c->nbuf != 0) {
            STREAM_FAIL(c, "sealed stream did not end with its final frame (%zu bytes after)",
                        c->nbuf);
        }
        sealed_ok++;
    }
    c->nbuf = 0;
    reopened++;
    conn_open(slot, seed);
}

struct producer {
    uint32_t id;
    unsigned seed;
};

static void *producer_main(void *arg) {
    struct producer *p = arg;
    cd_tick *t = cd_tick_new(out);
    REQUIRE(t != NULL, "cd_tick_new");
    uint8_t frame[MAXFRAME];
    uint64_t handles[SLOTS], hs[SLOTS];
    uint32_t st[SLOTS];
    int errs[SLOTS];
    uint32_t seq = 0;
    while (!__atomic_load_n(&stop_producers, __ATOMIC_ACQUIRE)) {
        for (int k = 0; k < 8; k++) {
            uint32_t count = 0;
            for (int i = 0; i < SLOTS; i++) {
                uint64_t h = __atomic_load_n(&cur[i], __ATOMIC_ACQUIRE);
                if (h) handles[count++] = h;
            }
            if (count == 0) continue;
            size_t payload = (size_t)(rand_r(&p->seed) % 200);
            seq++;
            if (rand_r(&p->seed) % 4 == 0) { /* one recipient */
                uint64_t h = handles[rand_r(&p->seed) % count];
                size_t len = make_frame(frame, p->id, seq, 0, &h, 1, payload);
                cd_append(out, t, h, frame, len);
            } else {
                uint32_t exclude = (uint32_t)(rand_r(&p->seed) % 4);
                size_t len = make_frame(frame, p->id, seq, exclude, handles, count, payload);
                cd_fanout(out, t, frame, len, handles, count, exclude, 0, NULL);
            }
            __atomic_add_fetch(&frames_sent, 1, __ATOMIC_RELAXED);
        }
        size_t n = cd_tick_flush(out, t, hs, st, errs, SLOTS);
        for (size_t i = 0; i < n; i++) {
            if (st[i] & CD_S_ERROR) {
                CHECK(errs[i] == EPIPE || errs[i] == ECONNRESET, "errno %d", errs[i]);
            }
            if (!(st[i] & (CD_S_LOOP | CD_S_OVERFLOW | CD_S_LEFT | CD_S_ERROR | CD_S_SEALED))) {
                CHECK(0, "odd status %u", st[i]);
            }
        }
        /* Do not run far ahead of the readers: they have to check every byte. */
        if (cd_total(out) > (1u << 20)) sleep_ms(1);
    }
    while (cd_tick_flush(out, t, hs, st, errs, SLOTS) > 0) {
    }
    cd_tick_free(t);
    return NULL;
}

static void *flusher_main(void *arg) {
    (void)arg;
    while (!__atomic_load_n(&stop_flusher, __ATOMIC_ACQUIRE)) {
        for (int i = 0; i < SLOTS; i++) {
            uint64_t h = __atomic_load_n(&cur[i], __ATOMIC_ACQUIRE);
            int err = 0;
            size_t left = 0;
            uint32_t st = cd_flush(out, h, &err, &left);
            if (st & CD_S_ERROR) CHECK(err == EPIPE || err == ECONNRESET, "errno %d", err);
            (void)cd_state(out, h);
            (void)cd_pending(out, h);
        }
        (void)cd_trim(out); /* the loop's periodic trim, racing every other call */
        sched_yield();
    }
    return NULL;
}

static void test_out_fanout(double seconds) {
    out = cd_out_new(SLOTS, 256 * 1024, 64 * 1024, 1024 * 1024);
    REQUIRE(out != NULL, "cd_out_new");
    unsigned seed = 99;
    for (uint32_t i = 0; i < SLOTS; i++) conn_open(i, &seed);

    pthread_t prod[PRODUCERS], flusher;
    struct producer pr[PRODUCERS];
    for (uint32_t i = 0; i < PRODUCERS; i++) {
        pr[i].id = i;
        pr[i].seed = 7u + i;
        REQUIRE(pthread_create(&prod[i], NULL, producer_main, &pr[i]) == 0, "pthread_create");
    }
    REQUIRE(pthread_create(&flusher, NULL, flusher_main, NULL) == 0, "pthread_create");

    /* The net thread: this one. */
    double end = now_ms() + seconds * 1000;
    uint64_t round = 0;
    while (now_ms() < end) {
        round++;
        for (uint32_t i = 0; i < SLOTS; i++) {
            struct conn *c = &conns[i];
            conn_read(c);
            uint32_t state = cd_state(out, c->h);
            if (state & CD_OVERFLOWED) {
                overflows++;
                conn_recycle(i, &seed, rand_r(&seed) % 2);
                continue;
            }
            int err = 0;
            if (c->direct && (cd_flush(out, c->h, &err, NULL) & CD_S_ERROR)) {
                errors_seen++;
                conn_recycle(i, &seed, 0);
                continue;
            }
            unsigned r = (unsigned)rand_r(&seed) % 1000;
            if (r < 3) {
                conn_recycle(i, &seed, r == 0);
            } else if (r < 8 && !c->holding) {
                /* A login's catch-up: frames first, live frames wait aside meanwhile. */
                CHECK(cd_hold(out, c->h) == CD_OK, "hold");
                c->holding = 1;
                holds++;
            } else if (c->holding && r < 200) {
                uint8_t f[MAXFRAME];
                size_t len = make_frame(f, CATCHUP, ++c->catchup_seq, 0, &c->h, 1, 40);
                int rc = cd_append_first(out, NULL, c->h, f, len);
                CHECK(rc == CD_OK || rc == CD_OVERFLOW, "append_first %d", rc);
                if (c->catchup_seq % 4 == 0) {
                    CHECK(cd_release(out, NULL, c->h) == CD_OK, "release");
                    c->holding = 0;
                }
            }
        }
        if (round % 64 == 0) sched_yield();
    }

    __atomic_store_n(&stop_producers, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < PRODUCERS; i++) pthread_join(prod[i], NULL);
    __atomic_store_n(&stop_flusher, 1, __ATOMIC_RELEASE);
    pthread_join(flusher, NULL);

    /* Everything still queued goes out and is checked, then every slot closes. */
    for (uint32_t i = 0; i < SLOTS; i++) {
        struct conn *c = &conns[i];
        if (c->holding) cd_release(out, NULL, c->h);
        double deadline = now_ms() + 5000;
        while (cd_pending(out, c->h) > 0 && now_ms() < deadline) {
            int err = 0;
            if (c->direct && (cd_flush(out, c->h, &err, NULL) & CD_S_ERROR)) break;
            conn_read(c);
        }
        conn_read(c);
        CHECK(c->nbuf == 0 || (cd_state(out, c->h) & CD_OVERFLOWED), "slot %u: %zu bytes cut", i,
              c->nbuf);
        CHECK(cd_close(out, c->h) == CD_OK, "close");
        if (c->direct) {
            close(c->fd);
            close(c->peer);
        }
        free(c->buf);
    }
    CHECK(cd_total(out) == 0, "total %llu after closing every slot",
          (unsigned long long)cd_total(out));
    cd_out_free(out);

    CHECK(stream_errors == 0, "%d stream errors", stream_errors);
    CHECK(frames_ok > 1000, "only %llu frames checked", (unsigned long long)frames_ok);
    CHECK(reopened > 10, "only %llu reopened connections", (unsigned long long)reopened);
    printf("out: %llu frames fanned out, %llu frames (%llu bytes) received and checked; "
           "%llu reopened, %llu sealed streams ended right, %llu holds, %llu overflows, "
           "%llu broken\n",
           (unsigned long long)__atomic_load_n(&frames_sent, __ATOMIC_RELAXED),
           (unsigned long long)frames_ok, (unsigned long long)bytes_ok,
           (unsigned long long)reopened, (unsigned long long)sealed_ok, (unsigned long long)holds,
           (unsigned long long)overflows, (unsigned long long)errors_seen);
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_DFL); /* the library must not raise it (MSG_NOSIGNAL) */
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    if (seconds <= 0) seconds = 2.0;
    test_queue_mpmc();
    test_out_fanout(seconds);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return EXIT_FAILURE;
    }
    puts("libchatdispatch concurrency: all checks passed");
    return EXIT_SUCCESS;
}
