/* Unit tests of libchatdispatch through its public ABI only (chat_dispatch.h).
 *
 * Every function, on its documented results: the queue (FIFO, growth, timeouts),
 * the outbound buffers (handles and generations, bad arguments, limits, seal,
 * hold/release, fan-out, peek/consume, accounting) and the sends (cd_flush and
 * cd_tick_flush on AF_UNIX socketpairs and on a TCP loopback pair).
 */
#define _GNU_SOURCE
#include "chat_dispatch.h"
#include "test_util.h"

#include <pthread.h>
#include <signal.h>

static const uint8_t hello[] = "hello world";

/* ---- queue ------------------------------------------------------------------ */

static void test_queue_fifo(void) {
    cd_queue *q = cd_queue_new();
    REQUIRE(q != NULL, "cd_queue_new");
    uint64_t items[64];
    CHECK(cd_queue_len(q) == 0, "new queue not empty");
    CHECK(cd_queue_pop(q, items, 64, 0) == 0, "pop on an empty queue");
    for (uint64_t i = 1; i <= 10; i++) {
        CHECK(cd_queue_push(q, i) == CD_OK, "push %llu", (unsigned long long)i);
    }
    CHECK(cd_queue_len(q) == 10, "len %zu", cd_queue_len(q));
    CHECK(cd_queue_pop(q, items, 3, 0) == 3, "pop 3");
    CHECK(items[0] == 1 && items[1] == 2 && items[2] == 3, "first three out of order");
    CHECK(cd_queue_len(q) == 7, "len after pop");
    size_t n = cd_queue_pop(q, items, 64, 0);
    CHECK(n == 7, "pop the rest: %zu", n);
    for (size_t i = 0; i < n; i++) {
        CHECK(items[i] == 4 + i, "item %zu is %llu", i, (unsigned long long)items[i]);
    }
    CHECK(cd_queue_len(q) == 0, "not empty after popping everything");
    /* Any 64-bit value is an item, 0 and UINT64_MAX included. */
    CHECK(cd_queue_push(q, 0) == CD_OK && cd_queue_push(q, UINT64_MAX) == CD_OK, "push");
    CHECK(cd_queue_pop(q, items, 2, 0) == 2 && items[0] == 0 && items[1] == UINT64_MAX, "0, max");
    cd_queue_free(q);
}

/* Past 256 items (the first ring) and across a wrapped ring: FIFO all along. */
static void test_queue_growth(void) {
    cd_queue *q = cd_queue_new();
    REQUIRE(q != NULL, "cd_queue_new");
    uint64_t next_in = 0, next_out = 0;
    uint64_t items[300];
    for (int i = 0; i < 200; i++) cd_queue_push(q, next_in++);
    size_t n = cd_queue_pop(q, items, 150, 0); /* the head moves: the ring wraps next */
    CHECK(n == 150, "pop 150: %zu", n);
    for (size_t i = 0; i < n; i++) CHECK(items[i] == next_out++, "order before growth");
    for (int i = 0; i < 5000; i++) CHECK(cd_queue_push(q, next_in++) == CD_OK, "push %d", i);
    CHECK(cd_queue_len(q) == 5050, "len %zu", cd_queue_len(q));
    int ok = 1;
    while ((n = cd_queue_pop(q, items, 300, 0)) > 0) {
        for (size_t i = 0; i < n; i++) {
            if (items[i] != next_out++) ok = 0;
        }
    }
    CHECK(ok, "FIFO order broken across growth");
    CHECK(next_out == next_in, "popped %llu of %llu", (unsigned long long)next_out,
          (unsigned long long)next_in);
    cd_queue_free(q);
}

struct pusher {
    cd_queue *q;
    int delay_ms;
    uint64_t item;
};

static void *push_later(void *arg) {
    struct pusher *p = arg;
    sleep_ms(p->delay_ms);
    cd_queue_push(p->q, p->item);
    return NULL;
}

static void test_queue_timeouts(void) {
    cd_queue *q = cd_queue_new();
    REQUIRE(q != NULL, "cd_queue_new");
    uint64_t item = 0;
    double t0 = now_ms();
    CHECK(cd_queue_pop(q, &item, 1, 0) == 0, "timeout 0 on empty");
    CHECK(now_ms() - t0 < 50, "timeout 0 waited %.1f ms", now_ms() - t0);

    t0 = now_ms();
    CHECK(cd_queue_pop(q, &item, 1, 60) == 0, "short timeout on empty");
    double waited = now_ms() - t0;
    CHECK(waited >= 55 && waited < 2000, "60 ms timeout waited %.1f ms", waited);

    /* A push wakes a waiter before its timeout, and one waiting for ever. */
    pthread_t th;
    struct pusher p = {q, 30, 42};
    REQUIRE(pthread_create(&th, NULL, push_later, &p) == 0, "pthread_create");
    t0 = now_ms();
    CHECK(cd_queue_pop(q, &item, 1, 5000) == 1 && item == 42, "woken by a push");
    CHECK(now_ms() - t0 < 2500, "woken late: %.1f ms", now_ms() - t0);
    pthread_join(th, NULL);

    p.item = 43;
    REQUIRE(pthread_create(&th, NULL, push_later, &p) == 0, "pthread_create");
    CHECK(cd_queue_pop(q, &item, 1, -1) == 1 && item == 43, "timeout -1 woken by a push");
    pthread_join(th, NULL);

    /* Items already there: no wait even with a long timeout, up to max at once. */
    for (uint64_t i = 0; i < 100; i++) cd_queue_push(q, i);
    uint64_t items[100];
    t0 = now_ms();
    CHECK(cd_queue_pop(q, items, 100, 10000) == 100, "many at once");
    CHECK(now_ms() - t0 < 1000, "waited with items there");
    CHECK(items[0] == 0 && items[99] == 99, "order");
    cd_queue_free(q);
}

static void test_queue_bad_arguments(void) {
    uint64_t items[4];
    CHECK(cd_queue_push(NULL, 1) == CD_EINVAL, "push NULL queue");
    CHECK(cd_queue_pop(NULL, items, 4, 0) == 0, "pop NULL queue");
    CHECK(cd_queue_pop(NULL, items, 4, -1) == 0, "pop NULL queue for ever");
    CHECK(cd_queue_len(NULL) == 0, "len NULL");
    cd_queue_free(NULL);
    cd_queue *q = cd_queue_new();
    REQUIRE(q != NULL, "cd_queue_new");
    cd_queue_push(q, 7);
    CHECK(cd_queue_pop(q, NULL, 4, 0) == 0, "NULL items");
    CHECK(cd_queue_pop(q, NULL, 4, -1) == 0, "NULL items, for ever: no wait, no write");
    CHECK(cd_queue_pop(q, items, 0, -1) == 0, "max 0");
    CHECK(cd_queue_len(q) == 1, "a refused pop took the item");
    CHECK(cd_queue_pop(q, items, 4, 0) == 1 && items[0] == 7, "the item is still there");
    cd_queue_free(q);
}

/* ---- outbound buffers: handles ------------------------------------------------ */

static uint64_t open_ok(cd_out *o, uint32_t slot, int fd, uint32_t flags) {
    uint64_t h = 0;
    int rc = cd_open(o, slot, fd, flags, &h);
    REQUIRE(rc == CD_OK, "cd_open slot %u: %d", slot, rc);
    return h;
}

static void test_new_and_free_arguments(void) {
    CHECK(cd_out_new(0, 100, 10, 1000) == NULL, "0 slots");
    CHECK(cd_out_new(4, 0, 10, 1000) == NULL, "limit 0");
    cd_out_free(NULL);
    CHECK(cd_tick_new(NULL) == NULL, "tick of NULL");
    cd_tick_free(NULL);
    cd_out *o = cd_out_new(1, 1, 0, 0);
    CHECK(o != NULL, "smallest cd_out");
    cd_out_free(o);
}

static void test_open_close_and_generations(void) {
    cd_out *o = cd_out_new(4, 1000, 1000, 100000);
    REQUIRE(o != NULL, "cd_out_new");
    uint64_t h = 0, h2 = 0;

    /* Bad opens change nothing. */
    CHECK(cd_open(NULL, 0, 3, 0, &h) == CD_EINVAL, "NULL out");
    CHECK(cd_open(o, 0, 3, 0, NULL) == CD_EINVAL, "NULL handle pointer");
    CHECK(cd_open(o, 4, 3, 0, &h) == CD_EINVAL, "slot == slots");
    CHECK(cd_open(o, UINT32_MAX, 3, 0, &h) == CD_EINVAL, "slot UINT32_MAX");
    CHECK(cd_open(o, 0, -1, CD_DIRECT, &h) == CD_EINVAL, "fd -1 for a CD_DIRECT slot");
    CHECK(cd_open(o, 0, -2, CD_DIRECT | CD_SEALED, &h) == CD_EINVAL, "fd -2, CD_DIRECT");
    /* A slot the loop writes needs no fd here. */
    CHECK(cd_open(o, 0, -1, 0, &h) == CD_OK, "fd -1 for a loop slot");
    CHECK(cd_flush(o, h, NULL, NULL) == 0, "flush an empty fd-less slot");
    CHECK(cd_append(o, NULL, h, hello, 3) == CD_OK, "append to an fd-less slot");
    CHECK(cd_flush(o, h, NULL, NULL) == CD_S_LOOP, "an fd-less slot is the loop's");
    CHECK(cd_close(o, h) == CD_OK, "close the fd-less slot");

    h = open_ok(o, 1, 3, CD_DIRECT);
    CHECK((h & 0xffffffffu) == 1, "handle's slot %llu", (unsigned long long)(h & 0xffffffffu));
    CHECK((h >> 32) != 0, "generation 0");
    CHECK(cd_state(o, h) == CD_DIRECT, "state %u", cd_state(o, h));
    CHECK(cd_open(o, 1, 4, 0, &h2) == CD_EINVAL, "slot in use");
    CHECK(cd_state(o, h) == CD_DIRECT, "a refused open changed the slot");

    /* Flags other than CD_DIRECT are not taken from the caller. */
    uint64_t hx = open_ok(o, 2, 5, CD_SEALED | CD_CLOSED | CD_OVERFLOWED | CD_HOLDING | 0x100u);
    CHECK(cd_state(o, hx) == 0, "open took state bits: %u", cd_state(o, hx));
    CHECK(cd_append(o, NULL, hx, hello, 5) == CD_OK, "append to a slot opened with odd flags");
    CHECK(cd_close(o, hx) == CD_OK, "close");

    CHECK(cd_append(o, NULL, h, hello, 5) == CD_OK, "append");
    CHECK(cd_total(o) == 5, "total");
    CHECK(cd_close(o, h) == CD_OK, "close");
    CHECK(cd_total(o) == 0, "close left %llu bytes counted", (unsigned long long)cd_total(o));
    CHECK(cd_close(o, h) == CD_EINVAL, "second close");
    CHECK(cd_state(o, h) == CD_CLOSED, "state of a closed handle: %u", cd_state(o, h));
    CHECK(cd_pending(o, h) == 0, "pending of a closed handle");

    /* The slot is reused: the old handle reaches nothing of the new connection. */
    h2 = open_ok(o, 1, 6, 0);
    CHECK(h2 != h, "reopened slot gave the same handle");
    CHECK((h2 & 0xffffffffu) == 1, "same slot");
    uint64_t stale[2] = {h, hx};
    for (int i = 0; i < 2; i++) {
        uint64_t s = stale[i];
        uint8_t buf[8];
        int err = 123;
        size_t left = 123;
        CHECK(cd_append(o, NULL, s, hello, 5) == CD_DROPPED, "append to stale");
        CHECK(cd_append_first(o, NULL, s, hello, 5) == CD_DROPPED, "append_first to stale");
        CHECK(cd_seal(o, NULL, s, hello, 5) == CD_DROPPED, "seal stale");
        CHECK(cd_hold(o, s) == CD_DROPPED, "hold stale");
        CHECK(cd_release(o, NULL, s) == CD_DROPPED, "release stale");
        CHECK(cd_consume(o, s, 0) == CD_DROPPED, "consume stale");
        CHECK(cd_set_tag(o, s, 3) == CD_EINVAL, "tag stale");
        CHECK(cd_peek(o, s, buf, sizeof buf) == 0, "peek stale");
        CHECK(cd_flush(o, s, &err, &left) == 0 && err == 0 && left == 0, "flush stale");
        CHECK(cd_close(o, s) == CD_EINVAL, "close stale");
        CHECK(cd_state(o, s) == CD_CLOSED, "state stale");
        CHECK(cd_fanout(o, NULL, hello, 5, &s, 1, 0, 0, NULL) == 0, "fanout to stale");
    }
    CHECK(cd_pending(o, h2) == 0 && cd_total(o) == 0, "a stale handle reached the new connection");
    CHECK(cd_state(o, h2) == 0, "new connection's state %u", cd_state(o, h2));

    /* Many lives of one slot: every handle is new, every old one stale. */
    uint64_t seen[50];
    cd_close(o, h2);
    for (int i = 0; i < 50; i++) {
        seen[i] = open_ok(o, 0, 7, 0);
        for (int j = 0; j < i; j++) CHECK(seen[j] != seen[i], "handle %d reused at %d", j, i);
        CHECK(cd_close(o, seen[i]) == CD_OK, "close life %d", i);
        if (i > 0) CHECK(cd_append(o, NULL, seen[i - 1], hello, 1) == CD_DROPPED, "old life");
    }

    /* Handles that name no slot at all. */
    uint64_t live = open_ok(o, 3, 8, 0);
    uint64_t bad[] = {0, 4, 0xffffffffu, (live & ~0xffffffffull) | 4,
                      (live & ~0xffffffffull) | 0xffffffffu, UINT64_MAX, live ^ (1ull << 40)};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(cd_append(o, NULL, bad[i], hello, 5) == CD_DROPPED, "append to bad handle %zu", i);
        CHECK(cd_close(o, bad[i]) == CD_EINVAL, "close bad handle %zu", i);
        CHECK(cd_state(o, bad[i]) == CD_CLOSED, "state of bad handle %zu", i);
        CHECK(cd_pending(o, bad[i]) == 0, "pending of bad handle %zu", i);
        CHECK(cd_set_tag(o, bad[i], 1) == CD_EINVAL, "tag bad handle %zu", i);
    }
    CHECK(cd_fanout(o, NULL, hello, 5, bad, sizeof bad / sizeof bad[0], 0, 0, NULL) == 0, "fanout to bad");
    CHECK(cd_total(o) == 0 && cd_pending(o, live) == 0, "bad handles queued bytes");
    cd_out_free(o);
}

/* NULL pointers and impossible lengths: the documented codes, no crash, no change. */
static void test_bad_arguments(void) {
    cd_out *o = cd_out_new(2, 100, 100, 1000);
    REQUIRE(o != NULL, "cd_out_new");
    cd_tick *t = cd_tick_new(o);
    REQUIRE(t != NULL, "cd_tick_new");
    uint64_t h = open_ok(o, 0, 3, 0);
    uint8_t buf[16];

    CHECK(cd_append(o, t, h, NULL, 5) == CD_EINVAL, "append NULL data");
    CHECK(cd_append_first(o, t, h, NULL, 5) == CD_EINVAL, "append_first NULL data");
    CHECK(cd_seal(o, t, h, NULL, 5) == CD_EINVAL, "seal NULL data");
    CHECK(cd_state(o, h) == 0, "a refused seal sealed: %u", cd_state(o, h));
    CHECK(cd_fanout(o, t, NULL, 5, &h, 1, 0, 0, NULL) == 0, "fanout NULL data");
    CHECK(cd_fanout(o, t, hello, 5, NULL, 1, 0, 0, NULL) == 0, "fanout NULL handles");
    CHECK(cd_fanout(NULL, t, hello, 5, &h, 1, 0, 0, NULL) == 0, "fanout NULL out");
    CHECK(cd_fanout(o, t, hello, 5, &h, 0, 0, 0, NULL) == 0, "fanout to nobody");
    CHECK(cd_peek(o, h, NULL, 5) == 0, "peek into NULL");
    CHECK(cd_total(o) == 0 && cd_pending(o, h) == 0, "a refused call queued bytes");

    /* n == 0 with NULL data is an empty append. */
    CHECK(cd_append(o, t, h, NULL, 0) == CD_OK, "empty append");
    CHECK(cd_append_first(o, t, h, NULL, 0) == CD_OK, "empty append_first");
    CHECK(cd_fanout(o, t, NULL, 0, &h, 1, 0, 0, NULL) == 1, "empty fanout");
    CHECK(cd_peek(o, h, NULL, 0) == 0, "peek 0 into NULL");
    CHECK(cd_pending(o, h) == 0, "empty appends queued bytes");

    /* Every function with a NULL cd_out. */
    int err = 9;
    size_t left = 9;
    uint64_t hs[2];
    uint32_t st[2];
    int errs[2];
    CHECK(cd_close(NULL, h) == CD_EINVAL, "close");
    CHECK(cd_set_tag(NULL, h, 1) == CD_EINVAL, "set_tag");
    CHECK(cd_append(NULL, NULL, h, hello, 5) == CD_DROPPED, "append");
    CHECK(cd_append(NULL, t, h, hello, 5) == CD_DROPPED, "append with a tick");
    CHECK(cd_append_first(NULL, NULL, h, hello, 5) == CD_DROPPED, "append_first");
    CHECK(cd_seal(NULL, NULL, h, hello, 5) == CD_DROPPED, "seal");
    CHECK(cd_hold(NULL, h) == CD_DROPPED, "hold");
    CHECK(cd_release(NULL, NULL, h) == CD_DROPPED, "release");
    CHECK(cd_pending(NULL, h) == 0, "pending");
    CHECK(cd_state(NULL, h) == CD_CLOSED, "state");
    CHECK(cd_total(NULL) == 0, "total");
    CHECK(cd_flush(NULL, h, &err, &left) == 0 && err == 0 && left == 0, "flush");
    CHECK(cd_peek(NULL, h, buf, sizeof buf) == 0, "peek");
    CHECK(cd_consume(NULL, h, 0) == CD_DROPPED, "consume");
    CHECK(cd_tick_flush(NULL, t, hs, st, errs, 2) == 0, "tick_flush NULL out");
    CHECK(cd_tick_flush(o, NULL, hs, st, errs, 2) == 0, "tick_flush NULL tick");
    CHECK(cd_flush(o, h, NULL, NULL) == 0, "flush with NULL err and left");

    /* A tick belongs to its cd_out. */
    cd_out *o2 = cd_out_new(8, 100, 100, 1000);
    REQUIRE(o2 != NULL, "cd_out_new");
    cd_tick *t2 = cd_tick_new(o2);
    REQUIRE(t2 != NULL, "cd_tick_new");
    CHECK(cd_append(o, t, h, hello, 5) == CD_OK, "append");
    CHECK(cd_tick_flush(o2, t, hs, st, errs, 2) == 0, "flush a tick of another cd_out");
    CHECK(cd_tick_flush(o, t2, hs, st, errs, 2) == 0, "flush with another cd_out's tick");
    /* The tick is still dirty for its own cd_out (h is not CD_DIRECT: a LOOP report). */
    size_t n = cd_tick_flush(o, t, hs, st, errs, 2);
    CHECK(n == 1 && hs[0] == h && st[0] == CD_S_LOOP && errs[0] == 0, "own tick: %zu", n);
    cd_tick_free(t2);
    cd_out_free(o2);

    cd_tick_free(t);
    cd_out_free(o);
}

/* Lengths far past any buffer are past the limit: refused before any byte is read
 * (buf has 16 bytes; a copy would crash), even when queued + n wraps around SIZE_MAX. */
static void test_huge_lengths(void) {
    cd_out *o = cd_out_new(2, 100, 100, 1000);
    REQUIRE(o != NULL, "cd_out_new");
    cd_tick *t = cd_tick_new(o);
    REQUIRE(t != NULL, "cd_tick_new");
    uint8_t buf[16] = {0};
    uint64_t h = open_ok(o, 0, 3, 0);
    CHECK(cd_append(o, t, h, buf, SIZE_MAX) == CD_OVERFLOW, "append SIZE_MAX to an empty slot");
    cd_close(o, h);
    h = open_ok(o, 0, 3, 0);
    CHECK(cd_append(o, t, h, hello, 5) == CD_OK, "append 5");
    CHECK(cd_consume(o, h, 1000) == CD_EINVAL, "consume more than pending");
    CHECK(cd_consume(o, h, SIZE_MAX) == CD_EINVAL, "consume SIZE_MAX");
    CHECK(cd_pending(o, h) == 5, "a refused consume consumed");
    CHECK(cd_append(o, t, h, buf, SIZE_MAX) == CD_OVERFLOW, "append SIZE_MAX");
    cd_close(o, h);
    h = open_ok(o, 0, 3, 0);
    CHECK(cd_append(o, t, h, hello, 10) == CD_OK, "append 10");
    CHECK(cd_append(o, t, h, buf, SIZE_MAX - 5) == CD_OVERFLOW, "append SIZE_MAX - 5");
    CHECK(cd_pending(o, h) == 10 && cd_total(o) == 10, "a huge append queued bytes");
    cd_close(o, h);
    h = open_ok(o, 0, 3, 0);
    CHECK(cd_append(o, t, h, hello, 10) == CD_OK, "append 10");
    CHECK(cd_append_first(o, t, h, buf, SIZE_MAX - 9) == CD_OVERFLOW, "append_first huge");
    cd_close(o, h);
    h = open_ok(o, 0, 3, 0);
    uint64_t h1 = open_ok(o, 1, 3, 0);
    uint64_t both[2] = {h, h1};
    CHECK(cd_append(o, t, h1, hello, 7) == CD_OK, "append 7");
    CHECK(cd_fanout(o, t, buf, SIZE_MAX - 3, both, 2, 0, 0, NULL) == 0, "fanout huge");
    CHECK(cd_state(o, h) == CD_OVERFLOWED && cd_state(o, h1) == CD_OVERFLOWED, "both overflowed");
    CHECK(cd_total(o) == 7, "total %llu", (unsigned long long)cd_total(o));
    cd_tick_free(t);
    cd_out_free(o);
}

/* ---- limits -------------------------------------------------------------------- */

static void test_limit_per_slot_and_seal(void) {
    uint8_t data[200];
    memset(data, 'a', sizeof data);
    cd_out *o = cd_out_new(2, 100, 100, 1000000);
    REQUIRE(o != NULL, "cd_out_new");
    uint64_t h = open_ok(o, 0, 3, 0);
    uint64_t other = open_ok(o, 1, 3, 0);

    /* One frame over the limit on an empty slot. */
    CHECK(cd_append(o, NULL, other, data, 101) == CD_OVERFLOW, "101 > 100");
    CHECK(cd_pending(o, other) == 0 && cd_total(o) == 0, "an overflowing frame was queued");
    CHECK(cd_state(o, other) == CD_OVERFLOWED, "state %u", cd_state(o, other));
    CHECK(cd_append(o, NULL, other, data, 1) == CD_OVERFLOW, "overflowed stays overflowed");
    CHECK(cd_append(o, NULL, other, data, 0) == CD_OVERFLOW, "even for 0 bytes");

    CHECK(cd_append(o, NULL, h, data, 60) == CD_OK, "60");
    CHECK(cd_append(o, NULL, h, data, 40) == CD_OK, "exactly at the limit");
    CHECK(cd_pending(o, h) == 100, "pending %zu", cd_pending(o, h));
    CHECK(cd_append(o, NULL, h, data, 1) == CD_OVERFLOW, "one byte past the limit");
    CHECK(cd_pending(o, h) == 100 && cd_total(o) == 100, "the refused byte was queued");
    CHECK(cd_state(o, h) == CD_OVERFLOWED, "state %u", cd_state(o, h));
    CHECK(cd_append_first(o, NULL, h, data, 1) == CD_OVERFLOW, "append_first after overflow");
    /* Draining does not clear an overflow: the owner must be dropped. */
    CHECK(cd_consume(o, h, 100) == CD_OK, "consume");
    CHECK(cd_append(o, NULL, h, data, 1) == CD_OVERFLOW, "overflow survives a drain");

    /* The final frame goes past any limit; nothing after it. */
    CHECK(cd_append(o, NULL, other, data, 1) == CD_OVERFLOW, "still overflowed");
    CHECK(cd_seal(o, NULL, other, data, 150) == CD_OK, "seal past the limit");
    CHECK(cd_pending(o, other) == 150 && cd_total(o) == 150, "sealed frame queued");
    CHECK(cd_state(o, other) == (CD_OVERFLOWED | CD_SEALED), "state %u", cd_state(o, other));
    CHECK(cd_append(o, NULL, other, data, 1) == CD_DROPPED, "append after seal");
    CHECK(cd_append(o, NULL, other, data, 0) == CD_DROPPED, "empty append after seal");
    CHECK(cd_append_first(o, NULL, other, data, 1) == CD_DROPPED, "append_first after seal");
    CHECK(cd_fanout(o, NULL, data, 1, &other, 1, 0, 0, NULL) == 0, "fanout after seal");
    CHECK(cd_seal(o, NULL, other, data, 1) == CD_DROPPED, "second seal");
    CHECK(cd_hold(o, other) == CD_OK, "hold after seal");
    CHECK(!(cd_state(o, other) & CD_HOLDING), "holding after seal");
    CHECK(cd_release(o, NULL, other) == CD_OK, "release after seal");
    CHECK(cd_pending(o, other) == 150 && cd_total(o) == 150, "something was queued after seal");

    /* Seal on a healthy slot with something queued: behind it, past the limit. */
    uint64_t s = h;
    cd_close(o, s);
    s = open_ok(o, 0, 3, 0);
    CHECK(cd_append(o, NULL, s, data, 100) == CD_OK, "100");
    CHECK(cd_seal(o, NULL, s, (const uint8_t *)"bye", 3) == CD_OK, "seal");
    uint8_t out[200];
    CHECK(cd_peek(o, s, out, sizeof out) == 103 && memcmp(out + 100, "bye", 3) == 0, "order");
    CHECK(cd_state(o, s) == CD_SEALED, "state %u", cd_state(o, s));
    /* An empty final frame seals too. */
    cd_close(o, s);
    s = open_ok(o, 0, 3, 0);
    CHECK(cd_seal(o, NULL, s, NULL, 0) == CD_OK, "empty seal");
    CHECK(cd_state(o, s) == CD_SEALED && cd_append(o, NULL, s, data, 1) == CD_DROPPED, "sealed");
    cd_close(o, s);
    cd_close(o, other);
    CHECK(cd_total(o) == 0, "total after closing: %llu", (unsigned long long)cd_total(o));
    cd_out_free(o);
}

/* `soft` applies only while all slots together hold more than `total_limit`. */
static void test_soft_and_total_limits(void) {
    uint8_t data[300];
    memset(data, 'b', sizeof data);
    cd_out *o = cd_out_new(3, 1000, 100, 250);
    REQUIRE(o != NULL, "cd_out_new");
    uint64_t a = open_ok(o, 0, 3, 0), b = open_ok(o, 1, 3, 0), c = open_ok(o, 2, 3, 0);

    CHECK(cd_append(o, NULL, a, data, 200) == CD_OK, "past soft while the total is low");
    CHECK(cd_append(o, NULL, b, data, 100) == CD_OK, "at soft");
    CHECK(cd_total(o) == 300, "total %llu", (unsigned long long)cd_total(o));
    CHECK(cd_append(o, NULL, b, data, 1) == CD_OVERFLOW, "past soft while the total is high");
    CHECK(cd_state(o, b) == CD_OVERFLOWED, "b state %u", cd_state(o, b));
    CHECK(cd_append(o, NULL, c, data, 100) == CD_OK, "up to soft is always fine");
    CHECK(cd_append(o, NULL, a, data, 1) == CD_OVERFLOW, "a past soft, total high");
    CHECK(cd_total(o) == 400, "total %llu", (unsigned long long)cd_total(o));

    /* Closing the big ones brings the total down: past soft is fine again. */
    cd_close(o, a);
    cd_close(o, b);
    CHECK(cd_total(o) == 100, "total %llu", (unsigned long long)cd_total(o));
    CHECK(cd_append(o, NULL, c, data, 1) == CD_OK, "past soft, total low again");
    CHECK(cd_append(o, NULL, c, data, 299) == CD_OK, "400 in c, total was 101");
    CHECK(cd_append(o, NULL, c, data, 1) == CD_OVERFLOW, "total 400 > 250 and c past soft");
    CHECK(cd_total(o) == 400 && cd_pending(o, c) == 400, "c %zu", cd_pending(o, c));
    cd_close(o, c);
    CHECK(cd_total(o) == 0, "total after closing");
    cd_out_free(o);
}

/* ---- hold / release -------------------------------------------------------------- */

static void test_hold_release_ordering(void) {
    cd_out *o = cd_out_new(2, 100, 100, 10000);
    REQUIRE(o != NULL, "cd_out_new");
    uint64_t h = open_ok(o, 0, 3, 0);
    uint8_t out[128];

    CHECK(cd_append(o, NULL, h, (const uint8_t *)"A", 1) == CD_OK, "A");
    CHECK(cd_hold(o, h) == CD_OK, "hold");
    CHECK(cd_state(o, h) == CD_HOLDING, "state %u", cd_state(o, h));
    CHECK(cd_hold(o, h) == CD_OK, "hold twice");
    CHECK(cd_append(o, NULL, h, (const uint8_t *)"B", 1) == CD_OK, "B waits aside");
    CHECK(cd_fanout(o, NULL, (const uint8_t *)"C", 1, &h, 1, 0, 0, NULL) == 1, "C waits aside");
    CHECK(cd_pending(o, h) == 1, "what waits aside is not pending: %zu", cd_pending(o, h));
    CHECK(cd_total(o) == 3, "but it is counted: %llu", (unsigned long long)cd_total(o));
    CHECK(cd_peek(o, h, out, sizeof out) == 1 && out[0] == 'A', "peek sees A only");
    CHECK(cd_append_first(o, NULL, h, (const uint8_t *)"x", 1) == CD_OK, "x first");
    CHECK(cd_append_first(o, NULL, h, (const uint8_t *)"y", 1) == CD_OK, "y first");
    CHECK(cd_pending(o, h) == 3, "pending %zu", cd_pending(o, h));
    CHECK(cd_release(o, NULL, h) == CD_OK, "release");
    CHECK(cd_state(o, h) == 0, "state after release %u", cd_state(o, h));
    CHECK(cd_total(o) == 5, "release changed the total: %llu", (unsigned long long)cd_total(o));
    size_t n = cd_peek(o, h, out, sizeof out);
    CHECK(n == 5 && memcmp(out, "AxyBC", 5) == 0, "order after release: %.*s", (int)n, out);
    CHECK(cd_release(o, NULL, h) == CD_OK, "release when not holding");
    CHECK(cd_append(o, NULL, h, (const uint8_t *)"D", 1) == CD_OK, "D goes straight in");
    CHECK(cd_peek(o, h, out, sizeof out) == 6 && out[5] == 'D', "D last");

    /* What waits aside counts against the limit. */
    uint8_t data[100];
    memset(data, 'z', sizeof data);
    uint64_t g = open_ok(o, 1, 3, 0);
    CHECK(cd_hold(o, g) == CD_OK, "hold");
    CHECK(cd_append(o, NULL, g, data, 60) == CD_OK, "60 aside");
    CHECK(cd_append_first(o, NULL, g, data, 40) == CD_OK, "40 first");
    CHECK(cd_append(o, NULL, g, data, 1) == CD_OVERFLOW, "101 with what waits aside");
    CHECK(cd_append_first(o, NULL, g, data, 1) == CD_OVERFLOW, "append_first too");
    /* A seal drops what waits aside and ends the hold. */
    CHECK(cd_seal(o, NULL, g, (const uint8_t *)"END", 3) == CD_OK, "seal");
    CHECK(cd_state(o, g) == (CD_SEALED | CD_OVERFLOWED), "state %u", cd_state(o, g));
    CHECK(cd_pending(o, g) == 43, "pending %zu", cd_pending(o, g));
    CHECK(cd_total(o) == 6 + 43, "the dropped bytes are still counted: total %llu",
          (unsigned long long)cd_total(o));
    CHECK(cd_release(o, NULL, g) == CD_OK, "release after seal");
    CHECK(cd_pending(o, g) == 43, "release after seal brought held bytes back");
    n = cd_peek(o, g, out, sizeof out);
    CHECK(n == 43 && memcmp(out + 40, "END", 3) == 0, "seal after the first frames");

    /* Close while holding: everything goes. */
    cd_close(o, g);
    g = open_ok(o, 1, 3, 0);
    cd_hold(o, g);
    cd_append(o, NULL, g, data, 50);
    cd_close(o, g);
    CHECK(cd_total(o) == 6, "close while holding left bytes: %llu",
          (unsigned long long)cd_total(o));
    /* A new connection in the slot is not holding. */
    g = open_ok(o, 1, 3, 0);
    CHECK(cd_state(o, g) == 0, "state of the next connection %u", cd_state(o, g));
    cd_close(o, g);
    cd_close(o, h);
    CHECK(cd_total(o) == 0, "total");
    cd_out_free(o);
}

/* ---- fan-out ------------------------------------------------------------------------ */

static void test_fanout_and_tags(void) {
    cd_out *o = cd_out_new(5, 10, 10, 1000);
    REQUIRE(o != NULL, "cd_out_new");
    uint64_t h[5];
    for (uint32_t i = 0; i < 5; i++) h[i] = open_ok(o, i, 3, 0);
    CHECK(cd_set_tag(o, h[0], 1) == CD_OK, "tag");
    CHECK(cd_set_tag(o, h[1], 2) == CD_OK, "tag");
    CHECK(cd_set_tag(o, h[2], 2) == CD_OK, "tag");
    /* h[3] keeps tag 0; h[4] is tagged then re-tagged. */
    CHECK(cd_set_tag(o, h[4], 2) == CD_OK && cd_set_tag(o, h[4], 7) == CD_OK, "retag");

    CHECK(cd_fanout(o, NULL, (const uint8_t *)"m", 1, h, 5, 2, 0, NULL) == 3, "exclude tag 2");
    CHECK(cd_pending(o, h[0]) == 1 && cd_pending(o, h[1]) == 0 && cd_pending(o, h[2]) == 0 &&
              cd_pending(o, h[3]) == 1 && cd_pending(o, h[4]) == 1,
          "exclude 2 reached the wrong slots");
    CHECK(cd_fanout(o, NULL, (const uint8_t *)"n", 1, h, 5, 0, 0, NULL) == 5, "exclude 0: everybody");
    CHECK(cd_fanout(o, NULL, (const uint8_t *)"o", 1, h, 5, 99, 0, NULL) == 5, "a tag nobody has");
    CHECK(cd_total(o) == 13, "total %llu", (unsigned long long)cd_total(o));

    /* Stale and bad handles in the list are skipped; a handle twice gets it twice. */
    uint64_t stale = h[4];
    cd_close(o, h[4]);
    h[4] = open_ok(o, 4, 3, 0);
    uint64_t list[] = {stale, h[0], 77, h[0], (uint64_t)5 | (1ull << 32), h[4]};
    CHECK(cd_fanout(o, NULL, (const uint8_t *)"p", 1, list, 6, 0, 0, NULL) == 3, "mixed list");
    CHECK(cd_pending(o, h[0]) == 5 && cd_pending(o, h[4]) == 1, "h0 %zu h4 %zu",
          cd_pending(o, h[0]), cd_pending(o, h[4]));
    /* The new connection in a reused slot starts with tag 0. */
    CHECK(cd_fanout(o, NULL, (const uint8_t *)"q", 1, &h[4], 1, 7, 0, NULL) == 1, "old tag was kept");

    /* Overflowing slots do not take it, the others do. */
    uint8_t big[10];
    memset(big, 'x', sizeof big);
    CHECK(cd_fanout(o, NULL, big, 7, h, 5, 0, 0, NULL) == 4, "h0 (5 + 7 > 10) overflows, h3 reaches 10");
    CHECK(cd_state(o, h[0]) == CD_OVERFLOWED, "h0 overflowed");
    CHECK(cd_state(o, h[3]) == 0 && cd_pending(o, h[3]) == 10, "h3 at the limit");
    for (int i = 0; i < 5; i++) cd_close(o, h[i]);
    CHECK(cd_total(o) == 0, "total after closing %llu", (unsigned long long)cd_total(o));
    cd_out_free(o);
}

/* ---- peek / consume ----------------------------------------------------------------- */

static void test_peek_consume(void) {
    cd_out *o = cd_out_new(1, 1000, 1000, 10000);
    REQUIRE(o != NULL, "cd_out_new");
    uint64_t h = open_ok(o, 0, 3, 0);
    uint8_t out[32];
    CHECK(cd_peek(o, h, out, sizeof out) == 0, "peek empty");
    CHECK(cd_consume(o, h, 0) == CD_OK, "consume 0 of nothing");
    CHECK(cd_consume(o, h, 1) == CD_EINVAL, "consume 1 of nothing");
    CHECK(cd_append(o, NULL, h, hello, 11) == CD_OK, "append");
    CHECK(cd_peek(o, h, out, 5) == 5 && memcmp(out, "hello", 5) == 0, "peek 5");
    CHECK(cd_peek(o, h, out, 5) == 5 && memcmp(out, "hello", 5) == 0, "the same bytes again");
    CHECK(cd_consume(o, h, 6) == CD_OK, "consume 6");
    CHECK(cd_pending(o, h) == 5 && cd_total(o) == 5, "pending %zu", cd_pending(o, h));
    CHECK(cd_peek(o, h, out, sizeof out) == 5 && memcmp(out, "world", 5) == 0, "peek rest");
    CHECK(cd_append(o, NULL, h, (const uint8_t *)"!", 1) == CD_OK, "append after consume");
    CHECK(cd_peek(o, h, out, sizeof out) == 6 && memcmp(out, "world!", 6) == 0, "order");
    CHECK(cd_consume(o, h, 7) == CD_EINVAL, "more than pending");
    CHECK(cd_consume(o, h, 6) == CD_OK, "consume all");
    CHECK(cd_pending(o, h) == 0 && cd_total(o) == 0, "drained");
    CHECK(cd_peek(o, h, out, sizeof out) == 0, "peek drained");
    /* Many small frames consumed a few bytes at a time: the same stream comes out. */
    uint8_t stream[4000], got[4000];
    for (size_t i = 0; i < sizeof stream; i++) stream[i] = (uint8_t)(i * 7 + i / 251);
    size_t in = 0, outn = 0;
    while (outn < sizeof stream) {
        if (in < sizeof stream) {
            size_t k = (in % 13) + 1;
            if (k > sizeof stream - in) k = sizeof stream - in;
            CHECK(cd_append(o, NULL, h, stream + in, k) == CD_OK, "append at %zu", in);
            in += k;
        }
        size_t want = (outn % 17) + 1;
        size_t n = cd_peek(o, h, got + outn, want);
        CHECK(cd_consume(o, h, n) == CD_OK, "consume");
        outn += n;
        CHECK(cd_total(o) == in - outn, "total %llu, want %zu", (unsigned long long)cd_total(o),
              in - outn);
        if (n == 0 && in == sizeof stream) break;
    }
    CHECK(outn == sizeof stream && memcmp(stream, got, sizeof stream) == 0, "stream mangled");
    cd_close(o, h);
    cd_out_free(o);
}

/* total == sum of what every slot holds, whatever happens; 0 once drained or closed. */
static void test_accounting(void) {
    enum { SLOTS = 6 };
    cd_out *o = cd_out_new(SLOTS, 500, 500, 100000);
    REQUIRE(o != NULL, "cd_out_new");
    uint64_t h[SLOTS];
    for (uint32_t i = 0; i < SLOTS; i++) h[i] = open_ok(o, i, 3, 0);
    uint8_t data[100];
    memset(data, 'q', sizeof data);
    uint64_t expect = 0;
    cd_hold(o, h[1]);
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < SLOTS; i++) {
            size_t n = (size_t)(i + 1) * 5;
            if (cd_append(o, NULL, h[i], data, n) == CD_OK) expect += n;
        }
        expect += 10 * (uint64_t)cd_fanout(o, NULL, data, 10, h, SLOTS, 0, 0, NULL);
        CHECK(cd_total(o) == expect, "round %d total %llu want %llu", round,
              (unsigned long long)cd_total(o), (unsigned long long)expect);
    }
    cd_release(o, NULL, h[1]);
    CHECK(cd_total(o) == expect, "release changed the total");
    cd_seal(o, NULL, h[2], data, 100);
    expect += 100;
    CHECK(cd_total(o) == expect, "seal");
    uint64_t sum = 0;
    for (int i = 0; i < SLOTS; i++) sum += cd_pending(o, h[i]);
    CHECK(sum == expect, "sum of pending %llu != total %llu", (unsigned long long)sum,
          (unsigned long long)expect);
    /* Drain half of the slots, close the others. */
    for (int i = 0; i < SLOTS; i += 2) {
        CHECK(cd_consume(o, h[i], cd_pending(o, h[i])) == CD_OK, "drain");
    }
    for (int i = 1; i < SLOTS; i += 2) CHECK(cd_close(o, h[i]) == CD_OK, "close");
    CHECK(cd_total(o) == 0, "total after draining and closing: %llu",
          (unsigned long long)cd_total(o));
    cd_out_free(o);
}

/* A drained buffer keeps its memory for the next frames; cd_trim frees it once its slot
 * went a whole period without an append (never one with bytes queued, never a big one
 * kept in the first place). Observed through cd_trim's count of bytes freed. */
static void test_retain_and_trim(void) {
    cd_out *o = cd_out_new(4, 4u << 20, 4u << 20, 64u << 20);
    REQUIRE(o != NULL, "cd_out_new");
    CHECK(cd_trim(NULL) == 0, "cd_trim(NULL)");
    CHECK(cd_trim(o) == 0, "nothing open: nothing to free");
    int sv[2];
    unix_pair(sv, 0);
    uint64_t h = open_ok(o, 0, sv[0], CD_DIRECT);
    uint64_t loop = open_ok(o, 1, -1, 0); /* written by the loop: peek/consume */
    uint8_t got[4096];
    int err = 0;
    size_t left = 0;
    CHECK(cd_append(o, NULL, h, hello, 11) == CD_OK, "append");
    CHECK(cd_append(o, NULL, loop, hello, 11) == CD_OK, "append");
    CHECK(cd_flush(o, h, &err, &left) == 0 && left == 0, "flush");
    CHECK(cd_consume(o, loop, 11) == CD_OK, "consume");
    CHECK(read_now(sv[1], got, sizeof got) == 11, "peer got the bytes");
    CHECK(cd_total(o) == 0, "total %llu", (unsigned long long)cd_total(o));
    /* Appended to since the last trim: kept this time, freed the next. */
    CHECK(cd_trim(o) == 0, "a buffer used in this period was freed");
    size_t freed = cd_trim(o);
    CHECK(freed == 2 * 256, "idle drained buffers not freed: %zu", freed);
    CHECK(cd_trim(o) == 0, "freed twice");
    /* The memory is reused: the same bytes again, in order, after a flush. */
    for (int round = 0; round < 3; round++) {
        CHECK(cd_append(o, NULL, h, (const uint8_t *)"abc", 3) == CD_OK, "abc");
        CHECK(cd_flush(o, h, &err, &left) == 0 && left == 0, "flush %d", round);
        CHECK(read_now(sv[1], got, sizeof got) == 3 && memcmp(got, "abc", 3) == 0, "abc out");
    }
    /* Bytes still queued: never freed, however long the slot is idle. */
    CHECK(cd_append(o, NULL, loop, hello, 11) == CD_OK, "append");
    cd_trim(o);
    cd_trim(o);
    cd_trim(o);
    CHECK(cd_pending(o, loop) == 11 && cd_total(o) == 11, "queued bytes lost to a trim");
    CHECK(cd_peek(o, loop, got, sizeof got) == 11 && memcmp(got, hello, 11) == 0, "bytes");
    CHECK(cd_consume(o, loop, 11) == CD_OK, "consume");
    /* A big buffer (past 256 KiB) is freed as soon as it is drained: nothing to trim. */
    static uint8_t big[300 * 1024];
    memset(big, 'b', sizeof big);
    CHECK(cd_append(o, NULL, loop, big, sizeof big) == CD_OK, "big append");
    size_t off = 0;
    while (off < sizeof big) {
        size_t n = cd_peek(o, loop, got, sizeof got);
        CHECK(n > 0, "peek");
        CHECK(cd_consume(o, loop, n) == CD_OK, "consume");
        off += n;
    }
    cd_trim(o); /* clears what this period used */
    CHECK(cd_trim(o) == 0, "a big drained buffer was kept");
    /* A burst is over: a buffer four times bigger than what the period queued is freed
     * even though the slot is in use; one that fits what is used is kept. */
    static uint8_t burst[64 * 1024];
    memset(burst, 'u', sizeof burst);
    CHECK(cd_append(o, NULL, h, burst, sizeof burst) == CD_OK, "burst");
    CHECK(cd_flush(o, h, &err, &left) == 0 && left == 0, "flush the burst");
    while (read_now(sv[1], got, sizeof got) > 0) {
    }
    cd_trim(o); /* the burst's period: kept (it needed all of it) */
    CHECK(cd_append(o, NULL, h, hello, 11) == CD_OK, "small");
    CHECK(cd_flush(o, h, &err, &left) == 0, "flush");
    freed = cd_trim(o);
    CHECK(freed == 64 * 1024, "a buffer kept far past what was used: freed %zu", freed);
    for (int round = 0; round < 2; round++) {
        CHECK(cd_append(o, NULL, h, burst, 1000) == CD_OK, "steady");
        CHECK(cd_flush(o, h, &err, &left) == 0, "flush");
        CHECK(cd_trim(o) == 0, "round %d: a buffer that fits what is used was freed", round);
    }
    CHECK(read_now(sv[1], got, sizeof got) == 11 + 2000, "peer got every byte");
    /* Closing frees whatever the slot kept. */
    CHECK(cd_append(o, NULL, h, hello, 11) == CD_OK, "append");
    CHECK(cd_flush(o, h, &err, &left) == 0, "flush");
    CHECK(cd_close(o, h) == CD_OK, "close");
    cd_trim(o);
    CHECK(cd_trim(o) == 0, "a closed slot's buffer counted");
    cd_close(o, loop);
    close(sv[0]);
    close(sv[1]);
    cd_out_free(o);
}

/* ---- sends ---------------------------------------------------------------------------- */

static void test_flush_socketpair(void) {
    cd_out *o = cd_out_new(2, 1 << 20, 1 << 20, 1 << 22);
    REQUIRE(o != NULL, "cd_out_new");
    int sv[2];
    unix_pair(sv, 0);
    uint64_t h = open_ok(o, 0, sv[0], CD_DIRECT);
    uint8_t got[64];
    int err = -1;
    size_t left = 99;
    CHECK(cd_flush(o, h, &err, &left) == 0 && err == 0 && left == 0, "flush of nothing");
    CHECK(cd_append(o, NULL, h, (const uint8_t *)"abc", 3) == CD_OK, "abc");
    CHECK(cd_append(o, NULL, h, (const uint8_t *)"def", 3) == CD_OK, "def");
    CHECK(cd_flush(o, h, &err, &left) == 0, "flush");
    CHECK(err == 0 && left == 0 && cd_pending(o, h) == 0 && cd_total(o) == 0, "drained");
    size_t n = read_now(sv[1], got, sizeof got);
    CHECK(n == 6 && memcmp(got, "abcdef", 6) == 0, "peer got %zu bytes", n);
    CHECK(cd_sent(o) == 6 && cd_sent(NULL) == 0, "sent %llu", (unsigned long long)cd_sent(o));

    /* Sealed: the last frame out gives CD_S_SEALED, every time after too. */
    CHECK(cd_append(o, NULL, h, (const uint8_t *)"x", 1) == CD_OK, "x");
    CHECK(cd_seal(o, NULL, h, (const uint8_t *)"bye", 3) == CD_OK, "seal");
    CHECK(cd_flush(o, h, &err, &left) == CD_S_SEALED && err == 0 && left == 0, "sealed flush");
    n = read_now(sv[1], got, sizeof got);
    CHECK(n == 4 && memcmp(got, "xbye", 4) == 0, "peer got %zu bytes", n);
    CHECK(cd_flush(o, h, &err, &left) == CD_S_SEALED, "sealed again");
    cd_close(o, h);
    close(sv[0]);
    close(sv[1]);

    /* Not CD_DIRECT: the loop writes it, nothing is sent here. */
    unix_pair(sv, 0);
    h = open_ok(o, 1, sv[0], 0);
    CHECK(cd_flush(o, h, &err, &left) == 0, "empty non-direct");
    cd_append(o, NULL, h, hello, 11);
    CHECK(cd_flush(o, h, &err, &left) == CD_S_LOOP && err == 0 && left == 11, "non-direct");
    CHECK(read_now(sv[1], got, sizeof got) == 0, "a non-direct slot was sent");
    CHECK(cd_pending(o, h) == 11, "non-direct bytes lost");
    cd_consume(o, h, 11);
    CHECK(cd_sent(o) == 6 + 4 + 11, "sent with consumed %llu", (unsigned long long)cd_sent(o));
    CHECK(cd_flush(o, h, &err, &left) == 0, "drained non-direct");
    cd_seal(o, NULL, h, NULL, 0);
    CHECK(cd_flush(o, h, &err, &left) == CD_S_LOOP, "sealed non-direct: the loop finishes it");
    cd_close(o, h);
    close(sv[0]);
    close(sv[1]);
    cd_out_free(o);
}

/* A socket that takes less than what is queued: CD_S_LEFT and the rest kept, in order. */
static void check_full_socket(int sv[2], const char *kind) {
    enum { CHUNK = 65536 };
    cd_out *o = cd_out_new(1, 64u << 20, 64u << 20, 64u << 20);
    REQUIRE(o != NULL, "cd_out_new");
    uint64_t h = open_ok(o, 0, sv[0], CD_DIRECT);
    static uint8_t chunk[CHUNK], got[CHUNK];
    uint64_t in = 0, out = 0;
    uint32_t status = 0;
    int err = 0, bad = 0;
    size_t left = 0;
    for (int i = 0; i < 512 && !(status & CD_S_LEFT); i++) {
        for (size_t k = 0; k < CHUNK; k++) chunk[k] = (uint8_t)((in + k) * 131 >> 3);
        CHECK(cd_append(o, NULL, h, chunk, CHUNK) == CD_OK, "append");
        in += CHUNK;
        status = cd_flush(o, h, &err, &left);
    }
    CHECK(status == CD_S_LEFT, "%s: no CD_S_LEFT after %llu bytes (status %u)", kind,
          (unsigned long long)in, status);
    CHECK(err == 0, "err %d", err);
    CHECK(left > 0 && left == cd_pending(o, h) && left == cd_total(o), "%s: left %zu pending %zu",
          kind, left, cd_pending(o, h));
    CHECK(cd_flush(o, h, &err, &left) == CD_S_LEFT, "%s: still full", kind);
    /* Read on the other side while flushing: every byte arrives once, in order. */
    double deadline = now_ms() + 10000;
    while (out < in && now_ms() < deadline) {
        size_t n = read_now(sv[1], got, sizeof got);
        for (size_t k = 0; k < n; k++) {
            if (got[k] != (uint8_t)((out + k) * 131 >> 3)) bad++;
        }
        out += n;
        status = cd_flush(o, h, &err, &left);
        CHECK(!(status & CD_S_ERROR), "%s: error %d", kind, err);
        if (n == 0) sleep_ms(1);
    }
    CHECK(out == in, "%s: %llu of %llu bytes arrived", kind, (unsigned long long)out,
          (unsigned long long)in);
    CHECK(bad == 0, "%s: %d bytes out of order", kind, bad);
    CHECK(status == 0 && left == 0 && cd_total(o) == 0, "%s: status %u left %zu", kind, status,
          left);
    cd_close(o, h);
    cd_out_free(o);
}

/* A peer that went away: CD_S_ERROR with its errno, the bytes kept, no SIGPIPE. */
static void test_flush_closed_peer_unix(void) {
    cd_out *o = cd_out_new(1, 1000, 1000, 1000);
    REQUIRE(o != NULL, "cd_out_new");
    int sv[2];
    unix_pair(sv, 0);
    uint64_t h = open_ok(o, 0, sv[0], CD_DIRECT);
    close(sv[1]);
    CHECK(cd_append(o, NULL, h, hello, 11) == CD_OK, "append");
    int err = 0;
    size_t left = 0;
    uint32_t status = cd_flush(o, h, &err, &left);
    CHECK(status == CD_S_ERROR, "status %u", status);
    CHECK(err == EPIPE || err == ECONNRESET, "errno %d (%s)", err, strerror(err));
    CHECK(left == 11 && cd_pending(o, h) == 11 && cd_total(o) == 11, "bytes not kept: %zu", left);
    /* Sealed and unsendable: an error, not CD_S_SEALED. */
    cd_seal(o, NULL, h, (const uint8_t *)"bye", 3);
    status = cd_flush(o, h, &err, &left);
    CHECK(status == CD_S_ERROR && left == 14, "sealed, broken: status %u left %zu", status, left);
    cd_close(o, h);
    CHECK(cd_total(o) == 0, "close keeps bytes counted");
    close(sv[0]);
    cd_out_free(o);
}

static void test_tcp_loopback(void) {
    int sv[2];
    tcp_pair(sv, 0, 0);
    cd_out *o = cd_out_new(1, 1 << 20, 1 << 20, 1 << 20);
    REQUIRE(o != NULL, "cd_out_new");
    uint64_t h = open_ok(o, 0, sv[0], CD_DIRECT);
    uint8_t got[64];
    CHECK(cd_append(o, NULL, h, hello, 11) == CD_OK, "append");
    int err = 0;
    size_t left = 0;
    CHECK(cd_flush(o, h, &err, &left) == 0 && left == 0, "tcp flush");
    size_t n = 0;
    for (int i = 0; i < 1000 && n < 11; i++) {
        n += read_now(sv[1], got + n, sizeof got - n);
        if (n < 11) sleep_ms(1);
    }
    CHECK(n == 11 && memcmp(got, hello, 11) == 0, "tcp peer got %zu", n);

    /* The peer closes: sends fail within a few tries (the first may still be taken). */
    close(sv[1]);
    uint32_t status = 0;
    for (int i = 0; i < 200 && !(status & CD_S_ERROR); i++) {
        cd_append(o, NULL, h, hello, 11);
        status = cd_flush(o, h, &err, &left);
        if (!(status & CD_S_ERROR)) sleep_ms(5);
    }
    CHECK(status & CD_S_ERROR, "no error after the peer closed (status %u)", status);
    CHECK(err == EPIPE || err == ECONNRESET, "tcp errno %d (%s)", err, strerror(err));
    CHECK(left > 0 && left == cd_pending(o, h), "bytes not kept");
    cd_close(o, h);
    close(sv[0]);
    cd_out_free(o);

    tcp_pair(sv, 4096, 4096);
    check_full_socket(sv, "tcp");
    close(sv[0]);
    close(sv[1]);
}

static void test_full_socket_unix(void) {
    int sv[2];
    unix_pair(sv, 4096);
    check_full_socket(sv, "unix");
    close(sv[0]);
    close(sv[1]);
}

/* An overflow is reported once, by whichever flush sees it first. */
static void test_overflow_reported_once(void) {
    cd_out *o = cd_out_new(3, 10, 10, 1000);
    REQUIRE(o != NULL, "cd_out_new");
    cd_tick *t = cd_tick_new(o);
    REQUIRE(t != NULL, "cd_tick_new");
    int sv[2];
    unix_pair(sv, 0);
    uint8_t data[20] = {0}, got[32];
    uint64_t d = open_ok(o, 0, sv[0], CD_DIRECT);
    CHECK(cd_append(o, NULL, d, data, 5) == CD_OK, "5");
    CHECK(cd_append(o, NULL, d, data, 6) == CD_OVERFLOW, "11 > 10");
    int err = 0;
    size_t left = 0;
    CHECK(cd_flush(o, d, &err, &left) == CD_S_OVERFLOW, "first flush reports it");
    CHECK(read_now(sv[1], got, sizeof got) == 5, "the queued bytes still go out");
    CHECK(cd_flush(o, d, &err, &left) == 0, "reported once");
    CHECK(cd_append(o, NULL, d, data, 1) == CD_OVERFLOW, "still overflowed");
    CHECK(cd_flush(o, d, &err, &left) == 0, "not again");
    CHECK(cd_state(o, d) == (CD_DIRECT | CD_OVERFLOWED), "state %u", cd_state(o, d));

    /* Through a tick: the overflowing append marks the slot. */
    uint64_t n = open_ok(o, 1, 3, 0);
    CHECK(cd_append(o, t, n, data, 11) == CD_OVERFLOW, "overflow with a tick");
    uint64_t hs[4];
    uint32_t st[4];
    int errs[4];
    CHECK(cd_tick_flush(o, t, hs, st, errs, 4) == 1, "reported");
    CHECK(hs[0] == n && st[0] == CD_S_OVERFLOW && errs[0] == 0, "status %u", st[0]);
    CHECK(cd_append(o, t, n, data, 1) == CD_OVERFLOW, "again");
    CHECK(cd_tick_flush(o, t, hs, st, errs, 4) == 0, "reported once");
    /* A fan-out's overflows are reported by the tick too. */
    uint64_t f = open_ok(o, 2, 3, 0);
    CHECK(cd_fanout(o, t, data, 11, &f, 1, 0, 0, NULL) == 0, "fanout overflow");
    CHECK(cd_tick_flush(o, t, hs, st, errs, 4) == 1 && hs[0] == f && st[0] == CD_S_OVERFLOW,
          "fanout overflow reported");
    cd_close(o, d);
    cd_close(o, n);
    cd_close(o, f);
    close(sv[0]);
    close(sv[1]);
    cd_tick_free(t);
    cd_out_free(o);
}

static void test_tick_flush(void) {
    enum { SLOTS = 6 };
    cd_out *o = cd_out_new(SLOTS, 1000, 1000, 100000);
    REQUIRE(o != NULL, "cd_out_new");
    cd_tick *t = cd_tick_new(o);
    REQUIRE(t != NULL, "cd_tick_new");
    int sv[3][2];
    uint64_t d[3], l[3];
    for (int i = 0; i < 3; i++) {
        unix_pair(sv[i], 0);
        d[i] = open_ok(o, (uint32_t)i, sv[i][0], CD_DIRECT);
        l[i] = open_ok(o, (uint32_t)(3 + i), 3, 0);
    }
    uint64_t hs[SLOTS];
    uint32_t st[SLOTS];
    int errs[SLOTS];
    uint8_t got[64];
    CHECK(cd_tick_flush(o, t, hs, st, errs, SLOTS) == 0, "empty tick");

    /* Appends with a tick: direct slots are sent, the loop's slots reported. */
    cd_append(o, t, d[0], (const uint8_t *)"a", 1);
    cd_append(o, t, d[0], (const uint8_t *)"b", 1); /* marked once */
    cd_append(o, t, l[1], (const uint8_t *)"L", 1);
    cd_fanout(o, t, (const uint8_t *)"f", 1, d, 3, 0, 0, NULL);
    cd_append(o, NULL, l[2], (const uint8_t *)"x", 1); /* no tick: not marked */
    size_t n = cd_tick_flush(o, t, hs, st, errs, SLOTS);
    CHECK(n == 1 && hs[0] == l[1] && st[0] == CD_S_LOOP && errs[0] == 0, "reports: %zu", n);
    CHECK(read_now(sv[0][1], got, sizeof got) == 3 && memcmp(got, "abf", 3) == 0, "d0");
    CHECK(read_now(sv[1][1], got, sizeof got) == 1 && got[0] == 'f', "d1");
    CHECK(read_now(sv[2][1], got, sizeof got) == 1 && got[0] == 'f', "d2");
    CHECK(cd_total(o) == 2, "the loop's bytes stay: %llu", (unsigned long long)cd_total(o));
    CHECK(cd_tick_flush(o, t, hs, st, errs, SLOTS) == 0, "the tick was cleared");

    /* Room for fewer reports than needed: the rest stays dirty, in order. */
    for (int i = 0; i < 3; i++) cd_append(o, t, l[i], (const uint8_t *)"y", 1);
    cd_append(o, t, d[1], (const uint8_t *)"z", 1);
    n = cd_tick_flush(o, t, hs, st, errs, 2);
    CHECK(n == 2 && hs[0] == l[0] && hs[1] == l[1], "first two reports");
    /* Marked again while dirty: reported once. */
    cd_append(o, t, l[2], (const uint8_t *)"y", 1);
    cd_append(o, t, l[0], (const uint8_t *)"y", 1);
    n = cd_tick_flush(o, t, hs, st, errs, SLOTS);
    CHECK(n == 2 && hs[0] == l[2] && hs[1] == l[0], "the rest, then the new mark: %zu", n);
    CHECK(read_now(sv[1][1], got, sizeof got) == 1 && got[0] == 'z', "d1 sent after the rest");

    /* No room at all (NULL arrays or max 0): nothing is flushed, everything stays dirty. */
    cd_append(o, t, d[2], (const uint8_t *)"w", 1);
    CHECK(cd_tick_flush(o, t, NULL, NULL, NULL, 4) == 0, "NULL arrays");
    CHECK(cd_tick_flush(o, t, hs, NULL, errs, 4) == 0, "NULL statuses");
    CHECK(cd_tick_flush(o, t, hs, st, errs, 0) == 0, "max 0");
    CHECK(cd_pending(o, d[2]) == 1, "flushed without room to report");
    CHECK(cd_tick_flush(o, t, hs, st, errs, 1) == 0, "direct, drained: nothing to report");
    CHECK(cd_pending(o, d[2]) == 0 && read_now(sv[2][1], got, sizeof got) == 1, "sent");

    /* A slot closed after it was marked is skipped. */
    cd_append(o, t, d[2], (const uint8_t *)"v", 1);
    cd_close(o, d[2]);
    CHECK(cd_tick_flush(o, t, hs, st, errs, SLOTS) == 0, "closed slot reported");
    CHECK(read_now(sv[2][1], got, sizeof got) == 0, "a closed slot was sent");

    /* Seal and release mark too; a sealed direct slot that is drained is reported. */
    cd_seal(o, t, d[0], (const uint8_t *)"end", 3);
    n = cd_tick_flush(o, t, hs, st, errs, SLOTS);
    CHECK(n == 1 && hs[0] == d[0] && st[0] == CD_S_SEALED, "seal report: %zu %u", n, st[0]);
    CHECK(read_now(sv[0][1], got, sizeof got) == 3, "final frame sent");
    cd_hold(o, d[1]);
    cd_append(o, NULL, d[1], (const uint8_t *)"h", 1);
    cd_release(o, t, d[1]);
    CHECK(cd_tick_flush(o, t, hs, st, errs, SLOTS) == 0 && cd_pending(o, d[1]) == 0, "release");
    CHECK(read_now(sv[1][1], got, sizeof got) == 1 && got[0] == 'h', "released bytes sent");

    /* A broken direct slot is reported with its errno. */
    close(sv[1][1]);
    cd_append(o, t, d[1], (const uint8_t *)"e", 1);
    n = cd_tick_flush(o, t, hs, st, errs, SLOTS);
    CHECK(n == 1 && hs[0] == d[1] && st[0] == CD_S_ERROR, "error report %zu", n);
    CHECK(errs[0] == EPIPE || errs[0] == ECONNRESET, "errno %d", errs[0]);

    /* Many ticks over the same slots: each one is its own. */
    cd_tick *t2 = cd_tick_new(o);
    REQUIRE(t2 != NULL, "cd_tick_new");
    cd_append(o, t, l[0], (const uint8_t *)"1", 1);
    cd_append(o, t2, l[1], (const uint8_t *)"2", 1);
    CHECK(cd_tick_flush(o, t2, hs, st, errs, SLOTS) == 1 && hs[0] == l[1], "t2");
    CHECK(cd_tick_flush(o, t, hs, st, errs, SLOTS) == 1 && hs[0] == l[0], "t");
    cd_tick_free(t2);

    /* Many epochs: marks keep working (every flush starts a new one). */
    int ok = 1;
    for (int i = 0; i < 20000; i++) {
        cd_append(o, t, l[i % 3], (const uint8_t *)"e", 1);
        if (cd_tick_flush(o, t, hs, st, errs, SLOTS) != 1 || hs[0] != l[i % 3]) ok = 0;
        cd_consume(o, l[i % 3], cd_pending(o, l[i % 3]));
    }
    CHECK(ok, "marks lost across epochs");

    for (int i = 0; i < 3; i++) {
        cd_close(o, d[i]);
        cd_close(o, l[i]);
        close(sv[i][0]);
        if (i != 1) close(sv[i][1]);
    }
    CHECK(cd_total(o) == 0, "total %llu", (unsigned long long)cd_total(o));
    cd_tick_free(t);
    cd_out_free(o);
}

/* A slot closed and opened again during one tick, then written through the same tick:
 * the new connection's bytes are sent by cd_tick_flush like any other's. */
static void test_tick_slot_reused_in_one_tick(void) {
    cd_out *o = cd_out_new(2, 1000, 1000, 100000);
    REQUIRE(o != NULL, "cd_out_new");
    cd_tick *t = cd_tick_new(o);
    REQUIRE(t != NULL, "cd_tick_new");
    int a[2], b[2];
    unix_pair(a, 0);
    unix_pair(b, 0);
    uint8_t got[64];
    uint64_t hs[2];
    uint32_t st[2];
    int errs[2];

    uint64_t old = open_ok(o, 0, a[0], CD_DIRECT);
    CHECK(cd_append(o, t, old, (const uint8_t *)"old", 3) == CD_OK, "old");
    CHECK(cd_close(o, old) == CD_OK, "close");
    uint64_t h = open_ok(o, 0, b[0], CD_DIRECT);
    CHECK(cd_append(o, t, h, (const uint8_t *)"new", 3) == CD_OK, "new");
    size_t n = cd_tick_flush(o, t, hs, st, errs, 2);
    CHECK(n == 0, "reports %zu", n);
    CHECK(cd_pending(o, h) == 0, "the new connection's %zu bytes were not sent", cd_pending(o, h));
    n = read_now(b[1], got, sizeof got);
    CHECK(n == 3 && memcmp(got, "new", 3) == 0, "new peer got %zu bytes", n);
    CHECK(read_now(a[1], got, sizeof got) == 0, "the old peer got bytes");

    /* The same through a fan-out, for a slot reported to the loop. */
    uint64_t l = open_ok(o, 1, 3, 0);
    cd_fanout(o, t, (const uint8_t *)"x", 1, &l, 1, 0, 0, NULL);
    cd_close(o, l);
    l = open_ok(o, 1, 3, 0);
    cd_fanout(o, t, (const uint8_t *)"y", 1, &l, 1, 0, 0, NULL);
    n = cd_tick_flush(o, t, hs, st, errs, 2);
    CHECK(n == 1 && hs[0] == l && st[0] == CD_S_LOOP, "new connection not reported: %zu", n);

    cd_close(o, h);
    cd_close(o, l);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    cd_tick_free(t);
    cd_out_free(o);
}

/* Issue "1 of 6", item 25: a slot whose buffer cannot grow (no memory) is closed like an
 * overflow, never silently shortened, and a fan-out says which recipients it missed.
 * Limits of SIZE_MAX let a huge length reach the allocator, which refuses it before any
 * byte is read (buf has 16 bytes). */
static void test_no_memory_is_an_overflow(void) {
    cd_out *o = cd_out_new(4, SIZE_MAX, SIZE_MAX, SIZE_MAX);
    REQUIRE(o != NULL, "cd_out_new");
    cd_tick *t = cd_tick_new(o);
    REQUIRE(t != NULL, "cd_tick_new");
    uint8_t buf[16] = {0};
    size_t huge = SIZE_MAX / 4;
    uint64_t h = open_ok(o, 0, 3, 0);
    CHECK(cd_append(o, t, h, hello, 5) == CD_OK, "append 5");
    CHECK(cd_append(o, t, h, buf, huge) == CD_OVERFLOW, "no memory: an overflow");
    CHECK(cd_state(o, h) & CD_OVERFLOWED, "no memory: marked overflowed");
    CHECK(cd_append(o, t, h, hello, 5) == CD_OVERFLOW, "nothing more after it");
    CHECK(cd_pending(o, h) == 5 && cd_total(o) == 5, "nothing half queued");
    uint64_t hs[4];
    uint32_t st[4];
    int errs[4];
    size_t n = cd_tick_flush(o, t, hs, st, errs, 4);
    CHECK(n == 1 && hs[0] == h && (st[0] & CD_S_OVERFLOW), "reported as an overflow");

    /* A fan-out marks who missed it: no memory, excluded, stale. */
    uint64_t a = open_ok(o, 1, 3, 0), b = open_ok(o, 2, 3, 0), c = open_ok(o, 3, 3, 0);
    cd_set_tag(o, c, 9);
    cd_close(o, b);
    uint64_t list[4] = {a, b, c, h};
    uint8_t failed[4];
    memset(failed, 7, sizeof failed);
    CHECK(cd_fanout(o, t, hello, 5, list, 4, 9, 0, failed) == 1, "one took it");
    CHECK(failed[0] == 0 && failed[1] == 1 && failed[2] == 0 && failed[3] == 1,
          "failed = %u %u %u %u", failed[0], failed[1], failed[2], failed[3]);
    memset(failed, 7, sizeof failed);
    CHECK(cd_fanout(o, t, buf, huge, list, 1, 0, 0, failed) == 0, "no memory in a fan-out");
    CHECK(failed[0] == 1 && (cd_state(o, a) & CD_OVERFLOWED), "missed, and overflowed");
    memset(failed, 7, sizeof failed);
    CHECK(cd_fanout(o, t, hello, 5, list, 4, 0, c, failed) == 0, "c skipped, the rest gone");
    CHECK(failed[2] == 0 && cd_pending(o, c) == 0, "a skipped slot: not a failure, no bytes");
    memset(failed, 7, sizeof failed);
    CHECK(cd_fanout(o, t, NULL, 5, list, 4, 0, 0, failed) == 0, "bad data");
    CHECK(failed[0] == 1 && failed[3] == 1, "bad arguments: nobody took it");

    /* A final frame that does not fit in memory: the slot is reported, not left open. */
    uint64_t d = open_ok(o, 1 + 1, 3, 0); /* slot 2 again (b was closed) */
    CHECK(cd_seal(o, t, d, buf, huge) == CD_OVERFLOW, "seal without memory");
    CHECK(cd_state(o, d) & CD_OVERFLOWED, "seal without memory: overflowed");
    cd_tick_free(t);
    cd_out_free(o);
}

int main(void) {
    /* SIGPIPE keeps its default: a send() without MSG_NOSIGNAL would kill the test. */
    signal(SIGPIPE, SIG_DFL);
    test_queue_fifo();
    test_queue_growth();
    test_queue_timeouts();
    test_queue_bad_arguments();
    test_new_and_free_arguments();
    test_open_close_and_generations();
    test_bad_arguments();
    test_limit_per_slot_and_seal();
    test_soft_and_total_limits();
    test_hold_release_ordering();
    test_fanout_and_tags();
    test_peek_consume();
    test_accounting();
    test_retain_and_trim();
    test_flush_socketpair();
    test_full_socket_unix();
    test_flush_closed_peer_unix();
    test_tcp_loopback();
    test_overflow_reported_once();
    test_tick_flush();
    /* Last: before the fixes in dispatch.c these two failed (one by crashing). */
    test_tick_slot_reused_in_one_tick();
    test_huge_lengths();
    test_no_memory_is_an_overflow();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return EXIT_FAILURE;
    }
    puts("libchatdispatch: all checks passed");
    return EXIT_SUCCESS;
}
