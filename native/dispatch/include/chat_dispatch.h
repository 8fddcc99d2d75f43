/*
 * chat_dispatch.h - the native core of chat-server's worker pool and fan-out.
 *
 * Two parts, both thread-safe and used from Python through cffi (which
 * releases the GIL for every call, so blocking waits and system calls here
 * never stop the other Python threads):
 *
 * 1. cd_queue: the worker pool's dispatch queue. Many producers, many
 *    consumers, unbounded (items are 64-bit handles, 8 bytes each), FIFO.
 *
 * 2. cd_out: every connection's outbound bytes. One slot per connection,
 *    named by a handle (slot index | generation << 32): a handle of a closed
 *    connection never reaches the next connection that reuses its slot.
 *    Workers append whole frames (one frame to many slots in one call: the
 *    fan-out), and at the end of their tick send what each slot they touched
 *    holds, one send() per slot, for plain TCP slots (CD_DIRECT). Other
 *    slots (TLS) are written by the caller's event loop (cd_peek/cd_consume).
 *    Each slot has its own mutex: a socket is written by one thread at a
 *    time, by construction; the fd is never used after cd_close returns.
 *
 * Limits (all bytes): a slot holding more than `limit`, or more than `soft`
 * while all slots together hold more than `total_limit`, overflows: the
 * append fails, and the slot is reported (CD_S_OVERFLOW) so that the owner
 * is dropped as a slow reader. A final frame (cd_seal) is queued past any
 * limit and nothing is queued after it. A slot whose buffer cannot grow (no
 * memory) is treated as an overflow too: the connection is dropped, never
 * silently shortened. CD_ENOMEM is therefore never returned by an append.
 *
 * Return codes: 0 or a positive status on success, a negative CD_E* value
 * on bad arguments (never undefined behaviour: every handle, length and
 * pointer is checked).
 */
#ifndef CHAT_DISPATCH_H
#define CHAT_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define CD_API __attribute__((visibility("default")))
#else
#define CD_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Append results. */
#define CD_OK 0
#define CD_DROPPED 1  /* sealed, closed or a stale handle: nothing more may be queued */
#define CD_OVERFLOW 2 /* a limit was hit, or no memory for it: the owner must be dropped */
#define CD_EINVAL (-1)
#define CD_ENOMEM (-2)

/* Slot flags (cd_open) and state bits (cd_state). */
#define CD_DIRECT 1u   /* plain TCP: this library sends on the fd */
#define CD_SEALED 2u   /* the final frame is queued */
#define CD_CLOSED 4u   /* the connection is gone */
#define CD_OVERFLOWED 8u
#define CD_HOLDING 16u /* live frames wait aside (cd_hold) */

/* Flush statuses (bit set). */
#define CD_S_LEFT 1u     /* bytes remain: the socket is full, wait for EPOLLOUT */
#define CD_S_ERROR 2u    /* send failed; the errno is reported: the connection is broken */
#define CD_S_SEALED 4u   /* sealed and everything is out: the final frame is sent */
#define CD_S_OVERFLOW 8u /* the slot overflowed: drop the client */
#define CD_S_LOOP 16u    /* not CD_DIRECT: the event loop must write it */

typedef struct cd_queue cd_queue;
typedef struct cd_out cd_out;
typedef struct cd_tick cd_tick;

/* ---- dispatch queue ---------------------------------------------------- */
CD_API cd_queue *cd_queue_new(void);
CD_API void cd_queue_free(cd_queue *q);
CD_API int cd_queue_push(cd_queue *q, uint64_t item);
/* Up to `max` items into `items`, waiting up to timeout_ms (-1: for ever, 0: not
 * at all) for the first. Returns how many (0: timed out). */
CD_API size_t cd_queue_pop(cd_queue *q, uint64_t *items, size_t max, int timeout_ms);
CD_API size_t cd_queue_len(cd_queue *q);

/* ---- outbound buffers ---------------------------------------------------- */
CD_API cd_out *cd_out_new(uint32_t slots, size_t limit, size_t soft, size_t total_limit);
CD_API void cd_out_free(cd_out *o);
/* Open the free slot `slot` for `fd` (which a CD_DIRECT slot needs: others may pass -1);
 * the handle is written to *handle. */
CD_API int cd_open(cd_out *o, uint32_t slot, int fd, uint32_t flags, uint64_t *handle);
/* Drop what is queued; from its return on, the fd is never used by this library
 * and the handle is stale. The slot may then be opened again. */
CD_API int cd_close(cd_out *o, uint64_t handle);
/* A small integer naming the slot's user: cd_fanout skips slots with its exclude tag. */
CD_API int cd_set_tag(cd_out *o, uint64_t handle, uint32_t tag);

/* `tick` (may be NULL) records the slot as dirty for cd_tick_flush. */
CD_API int cd_append(cd_out *o, cd_tick *tick, uint64_t handle, const uint8_t *data, size_t n);
/* The same bytes to every handle whose tag is not `exclude` (0 excludes nothing), and
 * that is not `skip` (one connection left out, e.g. a room message's sender; 0: none).
 * Returns how many slots took them; overflows are reported by cd_tick_flush.
 * `failed` (may be NULL) has `count` bytes: failed[i] is set to 1 when handles[i]
 * was not excluded (nor skipped) and did not take the bytes (stale, sealed, closed, overflowed or
 * out of memory), 0 otherwise, so the caller never counts such a recipient as reached. */
CD_API size_t cd_fanout(cd_out *o, cd_tick *tick, const uint8_t *data, size_t n,
                        const uint64_t *handles, size_t count, uint32_t exclude, uint64_t skip,
                        uint8_t *failed);
/* The final frame: past any limit; returns CD_OK, CD_DROPPED if already sealed, or
 * CD_OVERFLOW when no memory is left for it (the slot is reported as overflowed). */
CD_API int cd_seal(cd_out *o, cd_tick *tick, uint64_t handle, const uint8_t *data, size_t n);
/* A login's catch-up: appends wait aside from cd_hold until cd_release; cd_append_first
 * queues ahead of them. cd_seal drops what waits aside. cd_release returns CD_OVERFLOW
 * (and the slot is reported as overflowed) when what waited cannot be moved for want
 * of memory. */
CD_API int cd_hold(cd_out *o, uint64_t handle);
CD_API int cd_append_first(cd_out *o, cd_tick *tick, uint64_t handle, const uint8_t *data,
                           size_t n);
CD_API int cd_release(cd_out *o, cd_tick *tick, uint64_t handle);

/* Bytes queued for sending (what waits aside not included); 0 for a stale handle. */
CD_API size_t cd_pending(cd_out *o, uint64_t handle);
/* CD_DIRECT | CD_SEALED | ... of the slot; CD_CLOSED for a stale handle. */
CD_API uint32_t cd_state(cd_out *o, uint64_t handle);
/* All slots together, bytes. */
CD_API uint64_t cd_total(cd_out *o);
/* Bytes sent since the table was made: by cd_flush and cd_tick_flush, and those
 * the caller wrote itself and consumed (cd_consume); for metrics. */
CD_API uint64_t cd_sent(cd_out *o);
/* A drained slot keeps its buffer's memory (up to 256 KiB) for its next frames; call
 * this periodically (the event loop: once a second): it frees the buffer of every slot
 * with nothing queued and either no append since the previous call, or a buffer more
 * than four times the most it held queued since then (and past 1 KiB). Returns the
 * bytes freed. */
CD_API size_t cd_trim(cd_out *o);

/* Send one slot's bytes (CD_DIRECT only): a CD_S_* status; *err the errno on
 * CD_S_ERROR; *left the bytes still queued. */
CD_API uint32_t cd_flush(cd_out *o, uint64_t handle, int *err, size_t *left);
/* For the loop's own writes (TLS): copy up to max queued bytes out, then consume
 * what was written. The same bytes come again until consumed. */
CD_API size_t cd_peek(cd_out *o, uint64_t handle, uint8_t *dst, size_t max);
CD_API int cd_consume(cd_out *o, uint64_t handle, size_t n);

/* ---- a worker's tick ------------------------------------------------------ */
CD_API cd_tick *cd_tick_new(cd_out *o);
CD_API void cd_tick_free(cd_tick *t);
/* Send every dirty CD_DIRECT slot; report each slot that needs the loop: its handle,
 * its CD_S_* status and errno (up to max; the rest stays dirty for the next call).
 * Returns how many were reported. Clears the tick. */
CD_API size_t cd_tick_flush(cd_out *o, cd_tick *t, uint64_t *handles, uint32_t *statuses,
                            int *errs, size_t max);

#ifdef __cplusplus
}
#endif

#endif /* CHAT_DISPATCH_H */
