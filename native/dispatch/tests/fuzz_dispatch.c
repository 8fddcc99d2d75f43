/* Fuzz target of libchatdispatch, through its public ABI only (chat_dispatch.h).
 *
 * A byte string is read as a sequence of API calls with their arguments, on a
 * small cd_out (1-4 slots, random limits) with two ticks, and on a queue:
 * handles live, stale (of a closed connection), garbage, out of range or 0;
 * lengths 0, small, around the limit, large, and past SIZE_MAX once added to
 * what is queued (with a small buffer: the library must refuse them unread);
 * NULL pointers wherever the header says they are checked. CD_DIRECT slots
 * send on real AF_UNIX socketpairs with small buffers (full sockets, peers that
 * close). A reference model predicts every result, and after every call:
 *
 *   - cd_total == what the model holds in all slots (queued + waiting aside);
 *   - cd_pending and cd_state of every live handle match the model; stale
 *     handles read as 0 / CD_CLOSED and change nothing;
 *   - a slot never holds more than its limit, except a sealed final frame;
 *   - every byte a peer reads is the next byte the model queued for it, and a
 *     slot the loop writes (not CD_DIRECT) never sends anything;
 *   - cd_tick_flush reports exactly the slots the model expects, in order;
 *   - an overflow is reported once; the queue is FIFO with the model's length.
 *
 * Memory is bounded: at every DRAIN call (and at the end of each input) all
 * slots are emptied, cd_trim runs twice (a drained buffer is kept for the next
 * frames until a whole trim period passes without an append), and the heap must
 * be no larger than it was once the cd_out, its ticks and the queue were made (an
 * idle connection holds no buffer); every TICK_FLUSH also calls cd_trim, which
 * must change nothing the model sees; after
 * freeing everything, no larger than before (no leak; LeakSanitizer checks
 * that too, at exit and, in libFuzzer, after inputs that malloc more than they
 * free). The heap is
 * read through the sanitizer allocator (__sanitizer_get_current_allocated_bytes),
 * so these checks run in the ASan builds.
 *
 * Two builds of this file (tests/tests.cmake):
 *   - libFuzzer (clang -fsanitize=fuzzer,address,undefined -DLIBFUZZER_BUILD):
 *     LLVMFuzzerTestOneInput, run corpus-free for a bounded time;
 *   - a deterministic driver (any C compiler, ASan+UBSan where available): main()
 *     runs seeded random inputs and one long one, or replays the files given on
 *     the command line (a crash libFuzzer saved, for instance).
 */
#define _GNU_SOURCE
#include "chat_dispatch.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define CD_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CD_ASAN 1
#endif
#endif
#ifdef CD_ASAN
/* From the sanitizer runtime (<sanitizer/allocator_interface.h>, which gcc lacks). */
size_t __sanitizer_get_current_allocated_bytes(void);
#define CD_HEAP_STATS 1
#endif

enum {
    NSLOTS = 4,       /* the most slots a cd_out gets here */
    MAXQ = 1024,      /* the most items the model keeps in the queue */
    MAXDATA = 16384,  /* the longest real buffer passed */
    MAXSEAL = 4096,   /* the longest final frame */
    CAPB = 1 << 16,   /* the model's buffers */
    NSTALE = 4,
};

struct mslot {
    int open;
    uint64_t h;
    uint64_t stale[NSTALE]; /* this slot's earlier handles, newest last */
    int nstale;
    int direct, fd, peer, peer_closed;
    uint32_t tag;
    int holding, sealed, overflowed, reported;
    size_t seal_bound; /* the most the slot may hold once sealed */
    size_t nmain, nheld, nwire;
    uint8_t *main; /* queued, in order */
    uint8_t *held; /* waiting aside (cd_hold) */
    uint8_t *wire; /* sent, not yet read by the peer */
};

static uint8_t model_bytes[NSLOTS][3][CAPB];

struct mtick {
    cd_tick *t;
    size_t n; /* dirty slots in the order they were first marked, with their newest handle */
    uint32_t idx[NSLOTS];
    uint64_t h[NSLOTS];
};

static struct {
    cd_out *o;
    cd_queue *q;
    uint32_t nslots;
    size_t limit, soft, total_limit;
    struct mtick tk[2];
    struct mslot s[NSLOTS];
    uint64_t qitems[MAXQ];
    size_t qhead, qlen;
    uint64_t qnext;
    size_t heap_idle; /* the heap with every slot empty */
    uint64_t op;      /* calls made in this input */
} G;

static uint8_t src[MAXDATA + 512];
static uint8_t scratch[MAXDATA + 512];
static uint64_t total_ops, total_drains, peak_total;
static const char *op_name = "setup";

#define FAIL(...)                                                                       \
    do {                                                                                \
        fprintf(stderr, "fuzz_dispatch: call %llu (%s): ", (unsigned long long)G.op,    \
                op_name);                                                               \
        fprintf(stderr, __VA_ARGS__);                                                   \
        fputc('\n', stderr);                                                            \
        abort();                                                                        \
    } while (0)

#define EXPECT(cond, ...)         \
    do {                          \
        if (!(cond)) FAIL(__VA_ARGS__); \
    } while (0)

/* ---- reading the input ------------------------------------------------------------ */

struct input {
    const uint8_t *p;
    size_t n, at;
};

static uint8_t u8(struct input *in) { return in->at < in->n ? in->p[in->at++] : 0; }
static uint32_t u16(struct input *in) { return (uint32_t)u8(in) | (uint32_t)u8(in) << 8; }
static uint64_t u64(struct input *in) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)u8(in) << (8 * i);
    return v;
}

static size_t heap_now(void) {
#ifdef CD_HEAP_STATS
    return __sanitizer_get_current_allocated_bytes();
#else
    return 0;
#endif
}

/* Bytes allocated now above `base`. The count is the whole process's: another thread
 * (libFuzzer's own) may hold a few bytes for a moment, which once failed a run with "0 heap
 * bytes left" (the message's second read had them back). A leak stays, so look again,
 * briefly, before calling it one. */
static long long heap_above(size_t base) {
    long long above = (long long)heap_now() - (long long)base;
    for (int again = 0; above > 0 && again < 50; again++) {
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
        above = (long long)heap_now() - (long long)base;
    }
    return above;
}

/* ---- the model ---------------------------------------------------------------------- */

static int live(uint64_t h) {
    uint32_t idx = (uint32_t)(h & 0xffffffffu);
    return idx < G.nslots && G.s[idx].open && G.s[idx].h == h;
}

static struct mslot *slot_of(uint64_t h) { return live(h) ? &G.s[(uint32_t)h] : NULL; }

static uint64_t m_total(void) {
    uint64_t t = 0;
    for (uint32_t i = 0; i < G.nslots; i++) {
        if (G.s[i].open) t += G.s[i].nmain + G.s[i].nheld;
    }
    return t;
}

static void bytes_add(uint8_t *buf, size_t *n, const uint8_t *data, size_t k) {
    EXPECT(*n + k <= CAPB, "model buffer overflow (%zu + %zu)", *n, k);
    if (k) memcpy(buf + *n, data, k);
    *n += k;
}

static void bytes_drop(uint8_t *buf, size_t *n, size_t k) {
    memmove(buf, buf + k, *n - k);
    *n -= k;
}

static void m_mark(struct mtick *mt, uint64_t h) {
    if (!mt) return;
    uint32_t idx = (uint32_t)(h & 0xffffffffu);
    for (size_t i = 0; i < mt->n; i++) {
        if (mt->idx[i] == idx) {
            mt->h[i] = h; /* the slot's newest connection */
            return;
        }
    }
    mt->idx[mt->n] = idx;
    mt->h[mt->n++] = h;
}

/* An append to a live slot (cd_append, cd_append_first, one slot of cd_fanout). */
static int m_put(struct mslot *s, const uint8_t *data, size_t n, int first) {
    if (s->sealed) return CD_DROPPED;
    size_t have = s->nmain + s->nheld;
    size_t size = n > SIZE_MAX - have ? SIZE_MAX : have + n;
    if (s->overflowed || size > G.limit || (size > G.soft && m_total() > G.total_limit)) {
        s->overflowed = 1;
        return CD_OVERFLOW;
    }
    if (s->holding && !first) {
        bytes_add(s->held, &s->nheld, data, n);
    } else {
        bytes_add(s->main, &s->nmain, data, n);
    }
    return CD_OK;
}

static uint32_t m_state(const struct mslot *s) {
    return (s->direct ? CD_DIRECT : 0) | (s->sealed ? CD_SEALED : 0) |
           (s->overflowed ? CD_OVERFLOWED : 0) | (s->holding ? CD_HOLDING : 0);
}

/* What a peer can read now must be the next bytes sent to it. */
static void m_peer_read(struct mslot *s, size_t max) {
    if (!s->open || s->peer_closed || s->peer < 0) return;
    size_t got = 0;
    while (got < max) {
        size_t want = max - got < sizeof scratch ? max - got : sizeof scratch;
        ssize_t r = recv(s->peer, scratch, want, MSG_DONTWAIT);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        EXPECT(s->direct, "a slot the loop writes sent %zd bytes", r);
        EXPECT((size_t)r <= s->nwire, "peer read %zd bytes, %zu were sent", r, s->nwire);
        EXPECT(memcmp(scratch, s->wire, (size_t)r) == 0, "peer read the wrong bytes");
        bytes_drop(s->wire, &s->nwire, (size_t)r);
        got += (size_t)r;
    }
}

/* A flush of a live slot that left `after` bytes: the status it must have given. */
static uint32_t m_flush(struct mslot *s, size_t after) {
    uint32_t st = 0;
    if (s->overflowed && !s->reported) {
        s->reported = 1;
        st |= CD_S_OVERFLOW;
    }
    if (!s->direct) {
        EXPECT(after == s->nmain, "a loop slot's flush changed pending: %zu -> %zu", s->nmain,
               after);
        if (s->nmain || s->sealed) st |= CD_S_LOOP;
        return st;
    }
    if (s->nmain == 0) {
        EXPECT(after == 0, "pending %zu from nothing", after);
        return st | (s->sealed ? CD_S_SEALED : 0);
    }
    if (s->peer_closed) {
        EXPECT(after == s->nmain, "a broken slot lost bytes: %zu -> %zu", s->nmain, after);
        return st | CD_S_ERROR;
    }
    EXPECT(after <= s->nmain, "pending grew in a flush: %zu -> %zu", s->nmain, after);
    size_t sent = s->nmain - after;
    bytes_add(s->wire, &s->nwire, s->main, sent);
    bytes_drop(s->main, &s->nmain, sent);
    if (after) return st | CD_S_LEFT;
    return st | (s->sealed ? CD_S_SEALED : 0);
}

static void check_err(uint32_t st, int err) {
    if (st & CD_S_ERROR) {
        EXPECT(err == EPIPE || err == ECONNRESET, "errno %d with CD_S_ERROR", err);
    } else {
        EXPECT(err == 0, "errno %d without CD_S_ERROR", err);
    }
}

/* Room in the model for what a flush may send: read the peer first if needed. */
static void make_room(void) {
    for (uint32_t i = 0; i < G.nslots; i++) {
        struct mslot *s = &G.s[i];
        if (s->open && s->nwire + s->nmain > CAPB / 2) m_peer_read(s, SIZE_MAX);
    }
}

static void check_all(void) {
    uint64_t sum = 0;
    for (uint32_t i = 0; i < G.nslots; i++) {
        struct mslot *s = &G.s[i];
        for (int k = 0; k < s->nstale; k++) {
            EXPECT(cd_state(G.o, s->stale[k]) == CD_CLOSED, "stale handle not CD_CLOSED");
            EXPECT(cd_pending(G.o, s->stale[k]) == 0, "stale handle has bytes");
        }
        if (!s->open) continue;
        sum += s->nmain + s->nheld;
        size_t p = cd_pending(G.o, s->h);
        EXPECT(p == s->nmain, "slot %u pending %zu, model %zu", i, p, s->nmain);
        uint32_t st = cd_state(G.o, s->h);
        EXPECT(st == m_state(s), "slot %u state %u, model %u", i, st, m_state(s));
        if (s->sealed) {
            EXPECT(s->nmain <= s->seal_bound && s->nheld == 0, "sealed slot %u holds %zu", i,
                   s->nmain);
        } else {
            EXPECT(s->nmain + s->nheld <= G.limit, "slot %u holds %zu > limit %zu", i,
                   s->nmain + s->nheld, G.limit);
        }
    }
    uint64_t total = cd_total(G.o);
    EXPECT(total == sum, "cd_total %llu, model %llu", (unsigned long long)total,
           (unsigned long long)sum);
    if (total > peak_total) peak_total = total;
    EXPECT(cd_queue_len(G.q) == G.qlen, "queue len %zu, model %zu", cd_queue_len(G.q), G.qlen);
}

/* ---- picking arguments ---------------------------------------------------------------- */

static uint64_t pick_handle(struct input *in) {
    uint8_t b = u8(in);
    uint32_t k = (uint32_t)(b >> 3);
    struct mslot *s = &G.s[k % NSLOTS];
    switch (b & 7) {
    case 0: case 1: case 2: case 3: /* a slot's handle: live if it is open */
        if (s->open) return s->h;
        if (s->nstale) return s->stale[s->nstale - 1];
        return (uint64_t)(k % NSLOTS) | (uint64_t)0x1234 << 32;
    case 4: /* a stale one */
        if (s->nstale) return s->stale[k % (uint32_t)s->nstale];
        return s->h;
    case 5: /* garbage */
        return u64(in);
    case 6: { /* out of range, with a live generation */
        uint64_t gen = G.s[0].h & ~(uint64_t)0xffffffffu;
        return gen | (k % 2 ? 0xffffffffu : G.nslots + k % 3);
    }
    default:
        return 0;
    }
}

static struct mtick *pick_tick(struct input *in) {
    uint8_t b = u8(in) % 3;
    return b == 2 ? NULL : &G.tk[b];
}

/* A length; `lie` allows lengths far past the buffer given (it must never be read). */
static size_t pick_len(struct input *in, int lie, size_t cap) {
    uint8_t m = u8(in) % 8;
    size_t n;
    switch (m) {
    case 0: n = 0; break;
    case 1: case 2: case 3: n = 1 + u8(in) % 32; break;
    case 4: n = 1 + u16(in) % (G.limit + 1); break;
    case 5: { /* around the limit */
        size_t d = u8(in) % 5;
        n = G.limit + d >= 2 ? G.limit + d - 2 : 0;
        break;
    }
    case 6: n = u16(in) % MAXDATA; break;
    default:
        if (lie) return SIZE_MAX - u8(in) % 64;
        n = 1 + u16(in) % 600;
    }
    return n > cap ? cap : n;
}

static const uint8_t *pick_data(struct input *in, size_t n) {
    uint8_t b = u8(in);
    if (b % 16 == 0) return NULL;
    (void)n;
    return src + (b * 2u) % 512u; /* src has MAXDATA + 512 bytes */
}

/* ---- calls ---------------------------------------------------------------------------------- */

static void close_fds(struct mslot *s) {
    if (s->fd >= 0) close(s->fd);
    if (s->peer >= 0 && !s->peer_closed) close(s->peer);
    s->fd = s->peer = -1;
}

static void op_open(struct input *in) {
    uint32_t slot = u8(in) % (NSLOTS + 1);
    uint8_t fl = u8(in), mode = u8(in) % 8;
    int direct = fl & 1;
    uint32_t flags = (uint32_t)direct | (fl & 0x1eu); /* other bits must be ignored */
    struct mslot *s = slot < NSLOTS ? &G.s[slot] : NULL;
    int expect_ok = slot < G.nslots && !s->open && mode != 0 && !(mode == 1 && direct);
    int sv[2] = {-1, -1};
    if (expect_ok && mode != 1) {
        EXPECT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
        int sz = 4096;
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    }
    int fd = mode == 1 ? -1 : (sv[0] >= 0 ? sv[0] : 1000 + (int)slot);
    uint64_t h = 0;
    int rc = cd_open(G.o, slot, fd, flags, mode == 0 ? NULL : &h);
    if (!expect_ok) {
        EXPECT(rc == CD_EINVAL, "cd_open gave %d, want CD_EINVAL", rc);
        return;
    }
    EXPECT(rc == CD_OK, "cd_open gave %d", rc);
    EXPECT((h & 0xffffffffu) == slot && (h >> 32) != 0, "handle %llx for slot %u",
           (unsigned long long)h, slot);
    for (int k = 0; k < s->nstale; k++) EXPECT(h != s->stale[k], "a handle came back");
    s->open = 1;
    s->h = h;
    s->direct = direct;
    s->fd = sv[0];
    s->peer = sv[1];
    s->peer_closed = 0;
    s->tag = 0;
    s->holding = s->sealed = s->overflowed = s->reported = 0;
    s->nmain = s->nheld = s->nwire = 0;
}

static void op_close(struct input *in) {
    uint64_t h = pick_handle(in);
    struct mslot *s = slot_of(h);
    int rc = cd_close(G.o, h);
    if (!s) {
        EXPECT(rc == CD_EINVAL, "close of a dead handle gave %d", rc);
        return;
    }
    EXPECT(rc == CD_OK, "close gave %d", rc);
    if (s->nstale == NSTALE) {
        memmove(s->stale, s->stale + 1, sizeof s->stale[0] * (NSTALE - 1));
        s->nstale--;
    }
    s->stale[s->nstale++] = h;
    s->open = 0;
    close_fds(s); /* the library never uses the fd after cd_close */
    s->nmain = s->nheld = s->nwire = 0;
}

static void op_tag(struct input *in) {
    uint64_t h = pick_handle(in);
    uint32_t tag = u8(in) % 4;
    struct mslot *s = slot_of(h);
    int rc = cd_set_tag(G.o, h, tag);
    EXPECT(rc == (s ? CD_OK : CD_EINVAL), "set_tag gave %d", rc);
    if (s) s->tag = tag;
}

static void op_append(struct input *in, int first) {
    struct mtick *mt = pick_tick(in);
    uint64_t h = pick_handle(in);
    size_t n = pick_len(in, 1, MAXDATA);
    const uint8_t *data = pick_data(in, n);
    cd_tick *t = mt ? mt->t : NULL;
    int rc = first ? cd_append_first(G.o, t, h, data, n) : cd_append(G.o, t, h, data, n);
    int want;
    struct mslot *s = slot_of(h);
    if (n && !data) {
        want = CD_EINVAL;
    } else if (!s) {
        want = CD_DROPPED;
    } else {
        want = m_put(s, data, n, first);
        if (want == CD_OK || want == CD_OVERFLOW) m_mark(mt, h);
    }
    EXPECT(rc == want, "append%s of %zu bytes gave %d, want %d", first ? "_first" : "", n, rc,
           want);
}

static void op_fanout(struct input *in) {
    struct mtick *mt = pick_tick(in);
    size_t count = u8(in) % 7;
    uint64_t hs[6];
    for (size_t i = 0; i < count; i++) hs[i] = pick_handle(in);
    uint32_t exclude = u8(in) % 4;
    size_t n = pick_len(in, 1, MAXDATA);
    const uint8_t *data = pick_data(in, n);
    int null_handles = count && u8(in) % 16 == 0;
    uint8_t failed[6], want_failed[6];
    int with_failed = u8(in) % 2;
    size_t took = cd_fanout(G.o, mt ? mt->t : NULL, data, n, null_handles ? NULL : hs, count,
                            exclude, 0, with_failed ? failed : NULL);
    size_t want = 0;
    memset(want_failed, 1, sizeof want_failed);
    if (!((n && !data) || null_handles)) {
        for (size_t i = 0; i < count; i++) {
            struct mslot *s = slot_of(hs[i]);
            want_failed[i] = 1;
            if (!s) continue;
            if (exclude && s->tag == exclude) {
                want_failed[i] = 0;
                continue;
            }
            int rc = m_put(s, data, n, 0);
            if (rc == CD_OK) {
                want++;
                want_failed[i] = 0;
            }
            if (rc == CD_OK || rc == CD_OVERFLOW) m_mark(mt, hs[i]);
        }
    }
    EXPECT(took == want, "fanout of %zu bytes to %zu took %zu, want %zu", n, count, took, want);
    for (size_t i = 0; with_failed && i < count; i++)
        EXPECT(failed[i] == want_failed[i], "fanout: failed[%zu] = %u, want %u", i, failed[i],
               want_failed[i]);
}

static void op_seal(struct input *in) {
    struct mtick *mt = pick_tick(in);
    uint64_t h = pick_handle(in);
    size_t n = pick_len(in, 0, MAXSEAL);
    const uint8_t *data = pick_data(in, n);
    int rc = cd_seal(G.o, mt ? mt->t : NULL, h, data, n);
    struct mslot *s = slot_of(h);
    int want;
    if (n && !data) {
        want = CD_EINVAL;
    } else if (!s || s->sealed) {
        want = CD_DROPPED;
    } else {
        want = CD_OK;
        s->nheld = 0;
        s->holding = 0;
        s->sealed = 1;
        bytes_add(s->main, &s->nmain, data, n);
        s->seal_bound = s->nmain;
        m_mark(mt, h);
    }
    EXPECT(rc == want, "seal of %zu bytes gave %d, want %d", n, rc, want);
}

static void op_hold(struct input *in) {
    uint64_t h = pick_handle(in);
    struct mslot *s = slot_of(h);
    int rc = cd_hold(G.o, h);
    EXPECT(rc == (s ? CD_OK : CD_DROPPED), "hold gave %d", rc);
    if (s && !s->sealed) s->holding = 1;
}

static void m_release(struct mslot *s) {
    if (!s->holding) return;
    s->holding = 0;
    bytes_add(s->main, &s->nmain, s->held, s->nheld);
    s->nheld = 0;
}

static void op_release(struct input *in) {
    struct mtick *mt = pick_tick(in);
    uint64_t h = pick_handle(in);
    struct mslot *s = slot_of(h);
    int rc = cd_release(G.o, mt ? mt->t : NULL, h);
    EXPECT(rc == (s ? CD_OK : CD_DROPPED), "release gave %d", rc);
    if (!s) return;
    m_release(s);
    m_mark(mt, h);
}

static void op_peek(struct input *in) {
    uint64_t h = pick_handle(in);
    struct mslot *s = slot_of(h);
    size_t have = s ? s->nmain : 0, max;
    switch (u8(in) % 4) {
    case 0: max = have ? have - 1 : 0; break;
    case 1: max = have; break;
    case 2: max = have + 1; break;
    default: max = u16(in) % (MAXDATA + 100);
    }
    int null_dst = u8(in) % 16 == 0;
    /* Exactly max bytes on the heap: a write past them is an ASan error. */
    uint8_t *dst = null_dst ? NULL : malloc(max ? max : 1);
    EXPECT(null_dst || dst, "malloc");
    size_t n = cd_peek(G.o, h, dst, max);
    size_t want = (!s || (null_dst && max)) ? 0 : (have < max ? have : max);
    EXPECT(n == want, "peek %zu gave %zu, want %zu", max, n, want);
    if (n) EXPECT(memcmp(dst, s->main, n) == 0, "peek gave the wrong bytes");
    free(dst);
}

static void op_consume(struct input *in) {
    uint64_t h = pick_handle(in);
    struct mslot *s = slot_of(h);
    size_t have = s ? s->nmain : 0, n;
    switch (u8(in) % 4) {
    case 0: n = have; break;
    case 1: n = u16(in) % (have + 1); break;
    case 2: n = have + 1 + u8(in); break;
    default: n = SIZE_MAX - u8(in);
    }
    int rc = cd_consume(G.o, h, n);
    int want = !s ? CD_DROPPED : n > have ? CD_EINVAL : CD_OK;
    EXPECT(rc == want, "consume %zu of %zu gave %d, want %d", n, have, rc, want);
    if (rc == CD_OK) bytes_drop(s->main, &s->nmain, n);
}

static void op_flush(struct input *in) {
    uint64_t h = pick_handle(in);
    uint8_t b = u8(in);
    make_room();
    int err = -7;
    size_t left = 777;
    uint32_t st = cd_flush(G.o, h, b & 1 ? NULL : &err, b & 2 ? NULL : &left);
    struct mslot *s = slot_of(h);
    if (!s) {
        EXPECT(st == 0, "flush of a dead handle gave %u", st);
        if (!(b & 1)) EXPECT(err == 0, "errno %d", err);
        if (!(b & 2)) EXPECT(left == 0, "left %zu", left);
        return;
    }
    size_t after = cd_pending(G.o, h);
    if (!(b & 2)) EXPECT(left == after, "left %zu, pending %zu", left, after);
    uint32_t want = m_flush(s, after);
    EXPECT(st == want, "flush gave %u, want %u (direct %d, pending %zu -> %zu)", st, want,
           s->direct, s->nmain, after);
    if (!(b & 1)) check_err(st, err);
}

static void op_tick_flush(struct input *in) {
    struct mtick *mt = &G.tk[u8(in) % 2];
    uint8_t b = u8(in);
    size_t max = b % (NSLOTS + 2);
    int null_arrays = (b >> 4) % 8 == 0, null_out = (b >> 4) == 15, null_tick = (b >> 4) == 14;
    uint64_t hs[NSLOTS + 2];
    uint32_t st[NSLOTS + 2];
    int errs[NSLOTS + 2];
    make_room();
    size_t n = cd_tick_flush(null_out ? NULL : G.o, null_tick ? NULL : mt->t,
                             null_arrays ? NULL : hs, st, errs, max);
    if (null_out || null_tick) {
        EXPECT(n == 0, "tick_flush without a cd_out or tick reported %zu", n);
        return;
    }
    if (null_arrays) max = 0; /* no room to report: nothing is flushed */
    size_t reported = 0, i = 0;
    for (; i < mt->n; i++) {
        if (reported == max) break;
        struct mslot *s = slot_of(mt->h[i]);
        if (!s) continue;
        uint32_t want = m_flush(s, cd_pending(G.o, s->h));
        if (!want) continue;
        EXPECT(reported < n, "tick_flush reported %zu, want more", n);
        EXPECT(hs[reported] == s->h, "report %zu is %llx, want %llx", reported,
               (unsigned long long)hs[reported], (unsigned long long)s->h);
        EXPECT(st[reported] == want, "report %zu status %u, want %u", reported, st[reported], want);
        check_err(st[reported], errs[reported]);
        reported++;
    }
    EXPECT(n == reported, "tick_flush reported %zu, want %zu", n, reported);
    /* What was not reached stays dirty, in order. */
    memmove(mt->idx, mt->idx + i, sizeof mt->idx[0] * (mt->n - i));
    memmove(mt->h, mt->h + i, sizeof mt->h[0] * (mt->n - i));
    mt->n -= i;
    cd_trim(G.o); /* the loop's periodic trim: frees drained memory, changes nothing seen */
}

static void op_peer_read(struct input *in) {
    struct mslot *s = &G.s[u8(in) % NSLOTS];
    m_peer_read(s, u16(in) % 20000);
}

static void op_peer_close(struct input *in) {
    struct mslot *s = &G.s[u8(in) % NSLOTS];
    if (!s->open || s->peer_closed || s->peer < 0) return;
    close(s->peer);
    s->peer = -1;
    s->peer_closed = 1;
    s->nwire = 0;
}

static void op_queue_push(struct input *in) {
    size_t count = 1 + u8(in) % 16;
    if (u8(in) % 32 == 0) {
        EXPECT(cd_queue_push(NULL, 1) == CD_EINVAL, "push to NULL");
        return;
    }
    for (size_t i = 0; i < count && G.qlen < MAXQ; i++) {
        uint64_t item = i % 3 == 2 ? u64(in) : G.qnext++;
        EXPECT(cd_queue_push(G.q, item) == CD_OK, "push");
        G.qitems[(G.qhead + G.qlen++) % MAXQ] = item;
    }
}

static void op_queue_pop(struct input *in) {
    size_t max = u8(in) % 24;
    uint8_t b = u8(in);
    int null_items = b % 16 == 0, timeout = b % 61 == 1 ? 1 : 0;
    uint64_t items[24];
    size_t n = cd_queue_pop(b % 64 == 3 ? NULL : G.q, null_items ? NULL : items, max, timeout);
    if (b % 64 == 3 || null_items || max == 0) {
        EXPECT(n == 0, "pop with nothing to pop into gave %zu", n);
        return;
    }
    size_t want = G.qlen < max ? G.qlen : max;
    EXPECT(n == want, "pop %zu gave %zu, want %zu", max, n, want);
    for (size_t i = 0; i < n; i++) {
        EXPECT(items[i] == G.qitems[G.qhead], "pop out of order");
        G.qhead = (G.qhead + 1) % MAXQ;
        G.qlen--;
    }
}

/* Calls on a NULL cd_out: the documented answers, nothing else changes. */
static void op_null_out(struct input *in) {
    uint64_t h = pick_handle(in);
    uint8_t buf[8];
    int err = 5;
    size_t left = 5;
    switch (u8(in) % 10) {
    case 0: EXPECT(cd_append(NULL, G.tk[0].t, h, buf, 8) == CD_DROPPED, "append"); break;
    case 1: EXPECT(cd_fanout(NULL, G.tk[0].t, buf, 8, &h, 1, 0, 0, NULL) == 0, "fanout"); break;
    case 2: EXPECT(cd_seal(NULL, NULL, h, buf, 8) == CD_DROPPED, "seal"); break;
    case 3: EXPECT(cd_close(NULL, h) == CD_EINVAL, "close"); break;
    case 4: EXPECT(cd_state(NULL, h) == CD_CLOSED, "state"); break;
    case 5:
        EXPECT(cd_pending(NULL, h) == 0 && cd_total(NULL) == 0 && cd_trim(NULL) == 0, "pending");
        break;
    case 6:
        EXPECT(cd_flush(NULL, h, &err, &left) == 0 && err == 0 && left == 0, "flush");
        break;
    case 7: EXPECT(cd_peek(NULL, h, buf, 8) == 0, "peek"); break;
    case 8: EXPECT(cd_consume(NULL, h, 0) == CD_DROPPED, "consume"); break;
    default:
        EXPECT(cd_hold(NULL, h) == CD_DROPPED && cd_release(NULL, NULL, h) == CD_DROPPED, "hold");
        break;
    }
}

/* Empty every slot (release, send, read, consume): nothing may stay allocated. */
static void drain_all(void) {
    for (uint32_t i = 0; i < G.nslots; i++) {
        struct mslot *s = &G.s[i];
        if (!s->open) continue;
        if (s->holding) {
            EXPECT(cd_release(G.o, NULL, s->h) == CD_OK, "release");
            m_release(s);
        }
        for (int k = 0; k < 100000 && s->direct && !s->peer_closed && s->nmain; k++) {
            m_peer_read(s, SIZE_MAX);
            int err = 0;
            uint32_t st = cd_flush(G.o, s->h, &err, NULL);
            EXPECT(st == m_flush(s, cd_pending(G.o, s->h)), "flush while draining gave %u", st);
            check_err(st, err);
        }
        if (s->nmain) {
            EXPECT(cd_consume(G.o, s->h, s->nmain) == CD_OK, "consume everything");
            s->nmain = 0;
        }
        m_peer_read(s, SIZE_MAX);
        EXPECT(s->nwire == 0 || s->peer_closed, "%zu sent bytes never arrived", s->nwire);
    }
    check_all();
    EXPECT(cd_total(G.o) == 0, "total %llu after draining", (unsigned long long)cd_total(G.o));
    cd_trim(G.o); /* a whole period without an append: the second frees every buffer */
    cd_trim(G.o);
    EXPECT(cd_trim(G.o) == 0, "a third trim found something to free");
#ifdef CD_HEAP_STATS
    /* Not above (libFuzzer itself may free something meanwhile): a buffer held is. */
    long long held = heap_above(G.heap_idle);
    EXPECT(held <= 0, "empty slots hold %lld heap bytes", held);
#endif
    total_drains++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct input in = {data, size, 0};
    size_t heap_start = heap_now();
    memset(&G, 0, sizeof G);
    G.nslots = 1 + u8(&in) % NSLOTS;
    G.limit = 1 + u16(&in) % 4096;
    G.soft = u16(&in) % (2 * G.limit + 1);
    G.total_limit = u8(&in) % 4 == 0 ? (size_t)u16(&in) * 4 : u16(&in) % (4 * G.limit + 1);
    G.o = cd_out_new(G.nslots, G.limit, G.soft, G.total_limit);
    EXPECT(G.o != NULL, "cd_out_new");
    for (int i = 0; i < 2; i++) {
        G.tk[i].t = cd_tick_new(G.o);
        EXPECT(G.tk[i].t != NULL, "cd_tick_new");
    }
    G.q = cd_queue_new();
    EXPECT(G.q != NULL, "cd_queue_new");
    /* The ring grows to MAXQ items now, so that it does not count as growth later. */
    uint64_t items[64];
    for (int i = 0; i < MAXQ; i++) cd_queue_push(G.q, (uint64_t)i);
    while (cd_queue_pop(G.q, items, 64, 0) > 0) {
    }
    for (int i = 0; i < NSLOTS; i++) {
        G.s[i].fd = G.s[i].peer = -1;
        G.s[i].main = model_bytes[i][0];
        G.s[i].held = model_bytes[i][1];
        G.s[i].wire = model_bytes[i][2];
    }
    G.heap_idle = heap_now();

    while (in.at < in.n) {
        G.op++;
        uint8_t op = u8(&in);
        switch (op % 22) {
        case 0: case 1: op_name = "open"; op_open(&in); break;
        case 2: op_name = "close"; op_close(&in); break;
        case 3: op_name = "set_tag"; op_tag(&in); break;
        case 4: case 5: op_name = "append"; op_append(&in, 0); break;
        case 6: op_name = "append_first"; op_append(&in, 1); break;
        case 7: case 8: op_name = "fanout"; op_fanout(&in); break;
        case 9: op_name = "seal"; op_seal(&in); break;
        case 10: op_name = "hold"; op_hold(&in); break;
        case 11: op_name = "release"; op_release(&in); break;
        case 12: op_name = "peek"; op_peek(&in); break;
        case 13: op_name = "consume"; op_consume(&in); break;
        case 14: op_name = "flush"; op_flush(&in); break;
        case 15: op_name = "tick_flush"; op_tick_flush(&in); break;
        case 16: op_name = "peer_read"; op_peer_read(&in); break;
        case 17: op_name = "peer_close"; op_peer_close(&in); break;
        case 18: op_name = "queue_push"; op_queue_push(&in); break;
        case 19: op_name = "queue_pop"; op_queue_pop(&in); break;
        case 20: op_name = "null_out"; op_null_out(&in); break;
        default: op_name = "drain"; drain_all(); break;
        }
        check_all();
    }

    op_name = "teardown";
    drain_all();
    for (uint32_t i = 0; i < G.nslots; i++) {
        struct mslot *s = &G.s[i];
        if (!s->open) continue;
        EXPECT(cd_close(G.o, s->h) == CD_OK, "close");
        close_fds(s);
        s->open = 0;
    }
    EXPECT(cd_total(G.o) == 0, "total after closing everything");
    cd_tick_free(G.tk[0].t);
    cd_tick_free(G.tk[1].t);
    cd_out_free(G.o);
    cd_queue_free(G.q);
#ifdef CD_HEAP_STATS
    long long left = heap_above(heap_start);
    EXPECT(left <= 0, "%lld heap bytes left after freeing everything", left);
#else
    (void)heap_start;
#endif
    total_ops += G.op;
    return 0;
}

static void fill_src(void) {
    for (size_t i = 0; i < sizeof src; i++) src[i] = (uint8_t)(i * 131u + (i >> 8) * 7u + 1u);
}

#ifdef LIBFUZZER_BUILD
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fill_src();
    return 0;
}
#else
/* ---- the deterministic driver ------------------------------------------------------------- */

static uint64_t rng_state;
static uint64_t rng(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    static uint8_t buf[1 << 22];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    printf("%s: %zu bytes, %llu calls: ok\n", path, n, (unsigned long long)total_ops);
    return 0;
}

int main(int argc, char **argv) {
    unsigned long runs = 3000, max_len = 4096, long_len = 1 << 20;
    uint64_t seed = 1;
    int files = 0;
    signal(SIGPIPE, SIG_DFL); /* the library must not raise it (MSG_NOSIGNAL) */
    fill_src();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
            runs = strtoul(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--max-len") && i + 1 < argc) {
            max_len = strtoul(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--long") && i + 1 < argc) {
            long_len = strtoul(argv[++i], NULL, 10);
        } else if (argv[i][0] == '-') {
            fprintf(stderr,
                    "usage: %s [--runs N] [--seed S] [--max-len BYTES] [--long BYTES] [FILE...]\n",
                    argv[0]);
            return 2;
        } else {
            if (run_file(argv[i])) return 1;
            files++;
        }
    }
    if (files) return 0;

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rng_state = seed;
    uint8_t *buf = malloc(long_len > max_len ? long_len : max_len + 1);
    if (!buf) return 1;
    for (unsigned long r = 0; r < runs; r++) {
        size_t n = (size_t)(rng() % (max_len + 1));
        for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)rng();
        LLVMFuzzerTestOneInput(buf, n);
    }
    /* One long run: memory must not grow however long a cd_out lives. */
    uint64_t before = total_drains;
    for (size_t i = 0; i < long_len; i++) buf[i] = (uint8_t)rng();
    LLVMFuzzerTestOneInput(buf, long_len);
    free(buf);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("fuzz_dispatch: %lu random inputs + one of %lu bytes (seed %llu): %llu calls, "
           "%llu drains (%llu in the long run), peak cd_total %llu bytes, heap checks %s, "
           "%.1f s\n",
           runs, long_len, (unsigned long long)seed, (unsigned long long)total_ops,
           (unsigned long long)total_drains, (unsigned long long)(total_drains - before),
           (unsigned long long)peak_total,
#ifdef CD_HEAP_STATS
           "on",
#else
           "off (no ASan)",
#endif
           secs);
    return 0;
}
#endif
