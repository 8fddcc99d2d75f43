/*
 * loadgen: one-thread epoll load generator for the chat server (protocol v1)
 * and for IRC servers (ngIRCd), so the same client code drives both.
 *
 * C clients connect and log in (chat: auth, registering on first use; IRC:
 * NICK/USER, JOIN #bench). Then S of them send 100-character messages to
 * everyone ("*" / #bench). Each text starts with "<sender>:<seq>:<t_ns>:" so
 * every delivery yields a latency (same process, same monotonic clock) and a
 * per-(recipient, sender) sequence check (lost, reordered, duplicated).
 *
 * Modes:
 *   window  closed loop: each sender keeps at most W messages that are not yet
 *           delivered to every other client (saturation);
 *   rate    a fixed total rate R msg/s spread round-robin over the senders;
 *   idle    log in, hold, and report the server's RSS per connection.
 * --pairs: each sender writes to its partner (client idx ^ 1) instead of everyone; with
 * --port2 the partner is always on the other server (every message crosses).
 *
 * With --server-pid it samples the server's utime+stime and VmHWM/VmRSS at the
 * start and end of the measured window, so CPU per delivery covers exactly
 * the deliveries counted. Its own CPU (getrusage) is reported the same way,
 * which is how it shows it is not the bottleneck. Output: one JSON object.
 *
 * --tls speaks TLS (OpenSSL, TLS 1.2 or newer) on every connection, in the same
 * non-blocking loop: the handshake runs after the TCP connect and before the
 * login; SSL_ERROR_WANT_READ/WANT_WRITE of any call set the epoll interest; a
 * write that did not complete is retried from the same buffer, which only grows
 * (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, partial writes); every read drains the
 * TLS layer until it wants the socket again, so no record that OpenSSL already
 * holds waits for an epoll event that would never come (SSL_pending). The
 * server's certificate is NOT verified: the bench talks to its own server over
 * loopback with a throw-away self-signed pair; this measures TLS cost, it
 * authenticates nothing.
 *
 * Tokens (protocol v1.2 `resume`): --resume-out FILE asks for `resume` at each
 * password login and writes the tokens the server gave, one line per client
 * ("index token"); --tokens FILE logs every client in with its token from such
 * a file instead of a password (bench/tokens.py: a restart's reconnect storm).
 * A login answered `rate_limited` (the server's hash queue is full) is sent
 * again; the JSON says how many times ("login_retries"), and how much CPU the
 * server spent while the clients logged in ("login_server_cpu_s").
 *
 * Rooms (protocol v1.2 section 2): --room NAME logs every client in with the
 * feature `rooms`; client 0 creates the room (public), every other client joins
 * it once it exists, and a client is ready only when its `room_create` / `join`
 * is answered `ok`: sending starts when all C are members, and every message goes
 * to the room instead of "*". --features LIST (comma-separated) asks for those
 * v1.2 features at login (e.g. rooms,read,echo,typing: the idle memory of a v1.2
 * client). Without either option every frame is byte for byte what it was.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum proto { P_CHAT, P_IRC };
enum mode { M_WINDOW, M_RATE, M_IDLE };
enum cstate { S_NEW, S_CONNECTING, S_HANDSHAKE, S_LOGIN, S_READY, S_DEAD };

#define RBUF_SIZE (8u << 20)
#define MAX_FRAME (RBUF_SIZE - (1u << 20))

typedef struct {
    int fd;
    int idx;
    enum cstate state;
    int registering;      /* chat: sent auth with register:true */
    int got_roster;       /* chat: first (full) roster seen */
    char *carry;          /* unparsed tail of the last read */
    size_t carry_len, carry_cap;
    char *out;            /* bytes the socket did not take yet */
    size_t out_len, out_cap;
    int want_out;         /* EPOLLOUT is in the registered interest */
    int retries;          /* reconnects during login */
    SSL *ssl;             /* --tls: this connection's TLS object */
    int read_wants_write; /* TLS: the last SSL_read/handshake needs the socket writable */
    int write_wants_read; /* TLS: the pending SSL_write needs the socket readable */
    char *token;          /* --tokens: this client's token; --resume-out: the one it got */
    int in_chat;          /* --room: in CHAT (pong seen), its create/join not answered yet */
} conn_t;

typedef struct {
    uint64_t next_seq;    /* next sequence number to send */
    uint64_t completed;   /* messages delivered to all C-1 others (in order) */
    uint32_t *ring;       /* window mode: deliveries seen per in-flight seq */
} sender_t;

/* ---- options ----------------------------------------------------------- */
static enum proto g_proto = P_CHAT;
static enum mode g_mode = M_WINDOW;
static const char *g_host = "127.0.0.1";
static int g_port = 7777;
static int g_port2 = 0; /* --port2: odd-numbered clients connect here (two cluster nodes) */
static int g_clients = 100, g_senders = 10, g_window = 8;
static double g_rate = 100.0, g_duration = 10.0, g_warmup = 2.0, g_hold = 3.0;
static double g_drain = 10.0;
static int g_msg_len = 100;
static const char *g_prefix = "b";
/* --pairs: each sender writes to one person, its partner (client idx ^ 1: with --port2,
 * always on the other server), instead of to everyone. */
static int g_pairs = 0;
static const char *g_password = "bench-password";
static int g_quickack = 0, g_nodelay = 1;
static int g_src_count = 0;
static const char *g_src_base = "127.0.1.1";
static int g_server_pid = 0;
static int g_login_batch = 200;
static int g_join = 1;
static int g_verbose = 0;
static double g_login_timeout = 600.0;
static int g_tls = 0;
static SSL_CTX *g_ssl_ctx;
static const char *g_tls_version = "", *g_tls_cipher = "";
static const char *g_resume_out = NULL; /* --resume-out: ask for resume, write the tokens here */
static const char *g_tokens = NULL;     /* --tokens: log in with the tokens of this file */
static uint64_t g_login_retries;        /* logins sent again after rate_limited */
static double g_login_srv_cpu = NAN;     /* --server-pid: its CPU seconds while logging in */
static const char *g_room = NULL;       /* --room: the room every client joins and writes to */
static const char *g_features = NULL;   /* --features: v1.2 features asked for at login */
static char g_features_json[512];       /* ,"features":[...] of a password auth ("" = none) */
static char g_features_list[400];       /* the same list's items, for the JSON result */
static int g_room_created;              /* --room: client 0's room_create was answered */
static uint64_t g_room_join_s_ns;       /* --room: when the first join was sent, for room_join_s */
static double g_room_join_s = NAN;      /* --room: from the first create to the last join's ok */

/* ---- state ------------------------------------------------------------- */
static conn_t *g_conns;
static sender_t *g_send;
static uint32_t *g_last;         /* [recipient * S + sender]: next expected seq */
static int g_epfd;
static char *g_rbuf;
static int g_ready, g_dead;
static int g_measuring;
static uint64_t g_deliveries_total, g_deliveries_window, g_sent_total, g_sent_window;
static uint64_t g_lost_gaps, g_reordered, g_errors, g_unexpected_close;
static uint64_t g_bytes_in, g_reconnects;
static int g_stop_sending;
static struct in_addr g_src_base_addr;

/* latency histogram: HDR-like, 2^9 sub-buckets per power of two, in ns */
#define SUB_BITS 9
#define SUB (1 << SUB_BITS)
#define NBUCKETS (SUB * 40)
static uint64_t g_hist[NBUCKETS];
static uint64_t g_hist_n, g_lat_max;

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline int hist_bucket(uint64_t v) {
    if (v < SUB) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - SUB_BITS + 1;
    /* layout: [0,SUB) exact; then each octave contributes SUB/2 buckets */
    int b = SUB + (shift - 1) * (SUB / 2) + (int)((v >> shift) - SUB / 2);
    return b < NBUCKETS ? b : NBUCKETS - 1;
}

static inline uint64_t hist_value(int b) {
    if (b < SUB) return (uint64_t)b;
    int shift = (b - SUB) / (SUB / 2) + 1;
    uint64_t m = (uint64_t)((b - SUB) % (SUB / 2) + SUB / 2);
    return (m << shift) + (1ull << (shift - 1)); /* bucket midpoint */
}

static inline void hist_add(uint64_t v) {
    g_hist[hist_bucket(v)]++;
    g_hist_n++;
    if (v > g_lat_max) g_lat_max = v;
}

static double hist_pct(double p) {
    if (!g_hist_n) return NAN;
    uint64_t want = (uint64_t)ceil(p / 100.0 * (double)g_hist_n), acc = 0;
    if (want < 1) want = 1;
    for (int b = 0; b < NBUCKETS; b++) {
        acc += g_hist[b];
        if (acc >= want) return (double)hist_value(b);
    }
    return (double)g_lat_max;
}

/* ---- /proc sampling ---------------------------------------------------- */
static long proc_cpu_ticks(int pid) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    /* fields after ')': 3 state ... 14 utime 15 stime */
    unsigned long ut = 0, st = 0;
    int field = 2;
    for (char *q = p + 1; *q; q++) {
        if (*q == ' ') {
            field++;
            if (field == 14) ut = strtoul(q + 1, NULL, 10);
            if (field == 15) { st = strtoul(q + 1, NULL, 10); break; }
        }
    }
    return (long)(ut + st);
}

static long proc_status_kb(int pid, const char *key) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, key, kl) && line[kl] == ':') { v = strtol(line + kl + 1, NULL, 10); break; }
    }
    fclose(f);
    return v;
}

static double self_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ---- output ------------------------------------------------------------ */
static void conn_kill(conn_t *c, const char *why);

/* One line for the last OpenSSL error (or the errno of a failed syscall). */
static const char *tls_why(int err) {
    static char buf[256];
    unsigned long e = ERR_get_error();
    if (e) {
        ERR_error_string_n(e, buf, sizeof buf);
        ERR_clear_error();
        return buf;
    }
    if (err == SSL_ERROR_ZERO_RETURN) return "TLS close_notify from server";
    if (err == SSL_ERROR_SYSCALL) return errno ? strerror(errno) : "EOF from server (TLS)";
    snprintf(buf, sizeof buf, "TLS error %d", err);
    return buf;
}

/* EPOLLOUT is wanted while bytes wait or a TLS read/handshake waits for writability. */
static void update_interest(conn_t *c) {
    int want = c->out_len > 0 || c->read_wants_write || c->state == S_CONNECTING;
    if (want != c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(g_epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = want;
    }
}

/* Write up to len bytes: >= 0 written (0: the socket is full; try again later
 * with the same bytes first), -1: the connection was killed. */
static ssize_t raw_send(conn_t *c, const char *data, size_t len) {
    if (!c->ssl) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
        if (n >= 0) return n;
        if (errno == EAGAIN || errno == EINTR) return 0;
        conn_kill(c, strerror(errno));
        return -1;
    }
    c->write_wants_read = 0;
    ERR_clear_error();
    int n = SSL_write(c->ssl, data, (int)(len > (1u << 30) ? (1u << 30) : len));
    if (n > 0) return n;
    int err = SSL_get_error(c->ssl, n);
    if (err == SSL_ERROR_WANT_WRITE) return 0;
    if (err == SSL_ERROR_WANT_READ) { c->write_wants_read = 1; return 0; }
    conn_kill(c, tls_why(err));
    return -1;
}

static void flush_out(conn_t *c) {
    while (c->out_len) {
        ssize_t n = raw_send(c, c->out, c->out_len);
        if (n < 0) return;
        if (n == 0) break;
        memmove(c->out, c->out + n, c->out_len - (size_t)n);
        c->out_len -= (size_t)n;
    }
    update_interest(c);
}

static void put(conn_t *c, const char *data, size_t len) {
    if (c->state == S_DEAD) return;
    if (c->out_len == 0) {
        /* TLS: if this write does not complete, its bytes go to c->out and the
         * retry starts with them (same bytes, a buffer that may move or grow) */
        ssize_t n = raw_send(c, data, len);
        if (n == (ssize_t)len) return;
        if (n < 0) return;
        data += n;
        len -= (size_t)n;
    }
    if (c->out_len + len > c->out_cap) {
        c->out_cap = (c->out_len + len) * 2;
        c->out = realloc(c->out, c->out_cap);
        if (!c->out) die("out of memory");
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    flush_out(c);
}

static void put_frame(conn_t *c, const char *json, size_t len) {
    char buf[1024];
    if (len + 4 > sizeof buf) die("frame too long");
    buf[0] = (char)(len >> 24); buf[1] = (char)(len >> 16); buf[2] = (char)(len >> 8); buf[3] = (char)len;
    memcpy(buf + 4, json, len);
    put(c, buf, len + 4);
}

static void put_str(conn_t *c, const char *s) { put(c, s, strlen(s)); }

/* ---- connection lifecycle --------------------------------------------- */
static void name_of(int idx, char *out, size_t n) { snprintf(out, n, "%s%05d", g_prefix, idx); }

static void conn_open(conn_t *c);

/* A connection lost while logging in is opened again (a few times): servers
 * with a small listen backlog (ngIRCd) reset some of a burst of connects. */
static int retry_login(conn_t *c) {
    if ((c->state != S_CONNECTING && c->state != S_HANDSHAKE && c->state != S_LOGIN) ||
        c->retries >= 5)
        return 0;
    epoll_ctl(g_epfd, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->ssl) { SSL_free(c->ssl); c->ssl = NULL; }
    close(c->fd);
    c->retries++;
    g_reconnects++;
    c->registering = c->got_roster = c->in_chat = 0;
    c->read_wants_write = c->write_wants_read = 0;
    c->carry_len = c->out_len = 0;
    conn_open(c);
    return 1;
}

static void conn_kill(conn_t *c, const char *why) {
    if (c->state == S_DEAD) return;
    if (retry_login(c)) return;
    int was_ready = c->state == S_READY;
    if (g_verbose || was_ready || g_unexpected_close < 5)
        fprintf(stderr, "loadgen: client %d closed: %s\n", c->idx, why);
    epoll_ctl(g_epfd, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->ssl) { SSL_free(c->ssl); c->ssl = NULL; }
    close(c->fd);
    c->state = S_DEAD;
    g_dead++;
    g_unexpected_close++;
    if (was_ready) g_ready--;
}

static void login_start(conn_t *c) {
    char name[64], buf[512];
    name_of(c->idx, name, sizeof name);
    c->state = S_LOGIN;
    if (g_proto == P_IRC) {
        snprintf(buf, sizeof buf, "NICK %s\r\nUSER %s 0 * :bench\r\n", name, name);
        put_str(c, buf);
    } else if (c->token && !g_resume_out) {
        char tok[1024];
        int n = snprintf(tok, sizeof tok,
                         "{\"type\":\"auth\",\"user\":\"%s\",\"token\":\"%s\",\"features\":[\"resume\"]}",
                         name, c->token);
        if (n < 0 || (size_t)n >= sizeof tok) die("client %d: token too long", c->idx);
        put_frame(c, tok, (size_t)n);
    } else {
        int n = snprintf(buf, sizeof buf, "{\"type\":\"auth\",\"user\":\"%s\",\"password\":\"%s\"%s%s}",
                         name, g_password, c->registering ? ",\"register\":true" : "",
                         g_features_json);
        put_frame(c, buf, (size_t)n);
    }
}

static void conn_open(conn_t *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket: %s (raise ulimit -n)", strerror(errno));
    int one = 1;
    if (g_nodelay) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (g_src_count > 0) {
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(ntohl(g_src_base_addr.s_addr) + (uint32_t)(c->idx % g_src_count));
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) die("bind source: %s", strerror(errno));
    }
    int port = (g_port2 > 0 && c->idx % 2) ? g_port2 : g_port;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, g_host, &sa.sin_addr) != 1) die("bad host %s", g_host);
    c->fd = fd;
    c->state = S_CONNECTING;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    c->want_out = 1;
    if (epoll_ctl(g_epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        conn_kill(c, strerror(errno));
        return;
    }
}

/* Drive the TLS handshake; on success the login starts, as after a plain connect. */
static void tls_handshake(conn_t *c) {
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    c->read_wants_write = 0;
    if (r == 1) {
        if (!*g_tls_version) {
            g_tls_version = SSL_get_version(c->ssl);
            g_tls_cipher = SSL_get_cipher_name(c->ssl);
        }
        update_interest(c);
        login_start(c);
        return;
    }
    int err = SSL_get_error(c->ssl, r);
    if (err == SSL_ERROR_WANT_READ) { update_interest(c); return; }
    if (err == SSL_ERROR_WANT_WRITE) { c->read_wants_write = 1; update_interest(c); return; }
    conn_kill(c, tls_why(err));
}

static void on_connected(conn_t *c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) { conn_kill(c, strerror(err)); return; }
    if (g_tls) {
        c->ssl = SSL_new(g_ssl_ctx);
        if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) die("SSL_new: %s", tls_why(0));
        SSL_set_connect_state(c->ssl);
        SSL_set_tlsext_host_name(c->ssl, "localhost");
        c->state = S_HANDSHAKE;
        tls_handshake(c);
        return;
    }
    c->state = S_LOGIN; /* leaves S_CONNECTING, so EPOLLOUT goes unless bytes wait */
    update_interest(c);
    login_start(c);
}

static void set_ready(conn_t *c) {
    if (c->state != S_LOGIN) return;
    c->state = S_READY;
    g_ready++;
}

/* --room: client 0 creates the room, the others join it once it exists (id 1 each). */
static void room_request(conn_t *c) {
    char buf[256];
    int n;
    if (!g_room_join_s_ns) g_room_join_s_ns = now_ns();
    if (c->idx == 0 && !g_room_created)
        n = snprintf(buf, sizeof buf,
                     "{\"type\":\"room_create\",\"id\":1,\"room\":\"%s\",\"invite_only\":false}", g_room);
    else
        n = snprintf(buf, sizeof buf, "{\"type\":\"join\",\"id\":1,\"room\":\"%s\"}", g_room);
    put_frame(c, buf, (size_t)n);
}

/* --room: a client in CHAT asks for the room now, or (not client 0) once it exists. */
static void room_in_chat(conn_t *c) {
    c->in_chat = 1;
    if (c->idx == 0 || g_room_created) room_request(c);
}

/* --room: its create or join was answered ok; the room exists, waiting clients join. */
static void room_ok(conn_t *c) {
    if (!c->in_chat) return;
    c->in_chat = 0;
    if (c->idx == 0 && !g_room_created) {
        g_room_created = 1;
        for (int i = 1; i < g_clients; i++)
            if (g_conns[i].in_chat && g_conns[i].state == S_LOGIN) room_request(&g_conns[i]);
    }
    set_ready(c);
    if (g_ready == g_clients) g_room_join_s = (double)(now_ns() - g_room_join_s_ns) / 1e9;
}

/* ---- deliveries --------------------------------------------------------- */
/* text = "<sender>:<seq>:<t_ns>:xxxx..." */
static void on_delivery(conn_t *r, const char *text, const char *end, uint64_t t_now) {
    const char *p = text;
    uint64_t s = 0, q = 0, t = 0;
    while (p < end && *p >= '0' && *p <= '9') s = s * 10 + (uint64_t)(*p++ - '0');
    if (p >= end || *p++ != ':') return;
    while (p < end && *p >= '0' && *p <= '9') q = q * 10 + (uint64_t)(*p++ - '0');
    if (p >= end || *p++ != ':') return;
    while (p < end && *p >= '0' && *p <= '9') t = t * 10 + (uint64_t)(*p++ - '0');
    if (s >= (uint64_t)g_senders) return;
    g_deliveries_total++;
    if (g_measuring) {
        g_deliveries_window++;
        hist_add(t_now > t ? t_now - t : 0);
    }
    uint32_t *exp = &g_last[(size_t)r->idx * (size_t)g_senders + s];
    if (q == *exp) {
        *exp = (uint32_t)q + 1;
    } else if (q > *exp) {
        g_lost_gaps += q - *exp;
        *exp = (uint32_t)q + 1;
    } else {
        g_reordered++;
    }
    if (g_mode == M_WINDOW) {
        sender_t *sd = &g_send[s];
        uint32_t *slot = &sd->ring[q % (uint64_t)g_window];
        if (++*slot >= (uint32_t)(g_pairs ? 1 : g_clients - 1 - g_dead)) {
            *slot = 0;
            sd->completed++;
        }
    }
}

static void send_one(int s) {
    conn_t *c = &g_conns[s];
    if (c->state != S_READY) return;
    sender_t *sd = &g_send[s];
    char text[4200], buf[4400];
    int n = snprintf(text, sizeof text, "%d:%" PRIu64 ":%" PRIu64 ":", s, sd->next_seq, now_ns());
    while (n < g_msg_len) text[n++] = 'x';
    text[n] = 0;
    if (g_proto == P_IRC) {
        int m = snprintf(buf, sizeof buf, "PRIVMSG #bench :%s\r\n", text);
        put(c, buf, (size_t)m);
    } else {
        char to[96] = "\"*\"";
        if (g_room) {
            snprintf(to, sizeof to, "\"%s\"", g_room);
        } else if (g_pairs) {
            char partner[32];
            name_of(s ^ 1, partner, sizeof partner);
            snprintf(to, sizeof to, "[\"%s\"]", partner);
        }
        int m = snprintf(buf, sizeof buf, "{\"type\":\"send\",\"id\":%" PRIu64 ",\"to\":%s,\"text\":\"%s\"}",
                         sd->next_seq, to, text);
        put_frame(c, buf, (size_t)m);
    }
    sd->next_seq++;
    g_sent_total++;
    if (g_measuring) g_sent_window++;
}

static void fill_windows(void) {
    if (g_stop_sending) return;
    for (int s = 0; s < g_senders; s++) {
        sender_t *sd = &g_send[s];
        while (sd->next_seq - sd->completed < (uint64_t)g_window && g_conns[s].state == S_READY) send_one(s);
    }
}

/* ---- chat protocol parsing ---------------------------------------------- */
static const char *find(const char *p, const char *end, const char *needle) {
    return memmem(p, (size_t)(end - p), needle, strlen(needle));
}

static void chat_frame(conn_t *c, const char *p, const char *end, uint64_t t_now) {
    const char *ty = find(p, end, "\"type\":\"");
    if (!ty) return;
    ty += 8;
    if (!strncmp(ty, "msg\"", 4)) {
        const char *tx = find(p, end, "\"text\":\"");
        if (tx) on_delivery(c, tx + 8, end, t_now);
    } else if (!strncmp(ty, "sent\"", 5)) {
        /* the acknowledgement of a send: the window counts deliveries instead */
    } else if (!strncmp(ty, "roster\"", 7)) {
        const char *sq = find(p, end, "\"seq\":");
        if (!sq) return;
        long seq = strtol(sq + 6, NULL, 10);
        char buf[128];
        int n = snprintf(buf, sizeof buf, "{\"type\":\"roster_ack\",\"seq\":%ld}", seq);
        put_frame(c, buf, (size_t)n);
        if (!c->got_roster) {
            c->got_roster = 1;
            /* the pong comes after the server has handled the ack: then we are in CHAT */
            put_frame(c, "{\"type\":\"ping\"}", 15);
        }
    } else if (!strncmp(ty, "pong\"", 5)) {
        if (c->got_roster && g_room && c->state == S_LOGIN && !c->in_chat) room_in_chat(c);
        else if (c->got_roster && !g_room) set_ready(c);
    } else if (!strncmp(ty, "ok\"", 3)) {
        if (g_room && c->state == S_LOGIN) room_ok(c);
    } else if (!strncmp(ty, "auth_ok\"", 8)) {
        /* the full roster follows; with --resume-out, keep the token */
        const char *tk = g_resume_out ? find(p, end, "\"token\":\"") : NULL;
        if (tk) {
            tk += 9;
            const char *q = memchr(tk, '"', (size_t)(end - tk));
            if (!q) die("client %d: auth_ok with an unterminated token", c->idx);
            free(c->token);
            c->token = strndup(tk, (size_t)(q - tk));
        } else if (g_resume_out) {
            die("client %d: auth_ok without a token (resume not granted?)", c->idx);
        }
    } else if (!strncmp(ty, "error\"", 6)) {
        if (c->state == S_LOGIN && find(p, end, "rate_limited")) {
            g_login_retries++; /* the server's hash queue was full: ask again */
            login_start(c);
            return;
        }
        if (g_room && c->state == S_LOGIN && c->in_chat && c->idx == 0 && !g_room_created &&
            find(p, end, "room_exists")) {
            c->in_chat = 0; /* a room left from an earlier run: join it instead */
            g_room_created = 1;
            room_in_chat(c);
            for (int i = 1; i < g_clients; i++)
                if (g_conns[i].in_chat && g_conns[i].state == S_LOGIN) room_request(&g_conns[i]);
            return;
        }
        if (c->state == S_LOGIN && !c->registering && !(c->token && !g_resume_out) &&
            find(p, end, "bad_credentials")) {
            c->registering = 1;
            login_start(c);
            return;
        }
        g_errors++;
        if (g_errors <= 5) fprintf(stderr, "loadgen: client %d error: %.*s\n", c->idx, (int)(end - p), p);
    } else if (!strncmp(ty, "bye\"", 4)) {
        fprintf(stderr, "loadgen: client %d bye: %.*s\n", c->idx, (int)(end - p), p);
    }
}

static size_t chat_parse(conn_t *c, const char *buf, size_t len, uint64_t t_now) {
    size_t off = 0;
    while (len - off >= 4) {
        const unsigned char *h = (const unsigned char *)buf + off;
        size_t flen = ((size_t)h[0] << 24) | ((size_t)h[1] << 16) | ((size_t)h[2] << 8) | h[3];
        if (flen > MAX_FRAME) die("frame of %zu bytes is too large for the read buffer", flen);
        if (len - off - 4 < flen) break;
        chat_frame(c, buf + off + 4, buf + off + 4 + flen, t_now);
        if (c->state == S_DEAD) return len;
        off += 4 + flen;
    }
    return off;
}

/* ---- IRC parsing -------------------------------------------------------- */
static void irc_line(conn_t *c, const char *p, const char *end, uint64_t t_now) {
    if (end > p && end[-1] == '\r') end--;
    if (end - p >= 5 && !memcmp(p, "PING ", 5)) {
        char buf[600];
        int n = snprintf(buf, sizeof buf, "PONG %.*s\r\n", (int)(end - p - 5), p + 5);
        put(c, buf, (size_t)n);
        return;
    }
    if (*p != ':') return;
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    if (!sp) return;
    const char *cmd = sp + 1;
    if (end - cmd > 8 && !memcmp(cmd, "PRIVMSG ", 8)) {
        const char *tx = find(cmd, end, " :");
        if (tx) on_delivery(c, tx + 2, end, t_now);
        return;
    }
    if (end - cmd >= 4 && cmd[3] == ' ') {
        if (!memcmp(cmd, "001", 3)) {
            if (g_join) put_str(c, "JOIN #bench\r\n");
            else set_ready(c);
        } else if (!memcmp(cmd, "366", 3)) {
            set_ready(c);
        } else if (cmd[0] == '4' || cmd[0] == '5') {
            g_errors++;
            if (g_errors <= 5) fprintf(stderr, "loadgen: client %d: %.*s\n", c->idx, (int)(end - p), p);
        }
    } else if (end - cmd >= 5 && !memcmp(cmd, "ERROR", 5)) {
        fprintf(stderr, "loadgen: client %d: %.*s\n", c->idx, (int)(end - p), p);
    }
}

static size_t irc_parse(conn_t *c, const char *buf, size_t len, uint64_t t_now) {
    size_t off = 0;
    while (off < len) {
        const char *nl = memchr(buf + off, '\n', len - off);
        if (!nl) break;
        irc_line(c, buf + off, nl, t_now);
        if (c->state == S_DEAD) return len;
        off = (size_t)(nl - buf) + 1;
    }
    return off;
}

/* ---- reading ------------------------------------------------------------ */
/* Parse len bytes of g_rbuf (carry included); keep the unparsed tail as carry.
 * Returns 0 if the connection died while parsing. */
static int consume(conn_t *c, size_t len) {
    uint64_t t_now = now_ns();
    size_t used = g_proto == P_IRC ? irc_parse(c, g_rbuf, len, t_now) : chat_parse(c, g_rbuf, len, t_now);
    if (c->state == S_DEAD) return 0;
    size_t rest = len - used;
    if (rest > c->carry_cap) {
        c->carry_cap = rest * 2;
        c->carry = realloc(c->carry, c->carry_cap);
        if (!c->carry) die("out of memory");
    }
    if (rest) memcpy(c->carry, g_rbuf + used, rest);
    c->carry_len = rest;
    return 1;
}

static void quickack(conn_t *c) {
    if (g_quickack) {
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    }
}

/* TLS: read until OpenSSL wants the socket again. Epoll sees only the socket,
 * not the records OpenSSL already pulled in (SSL_pending / SSL_has_pending), so
 * stopping earlier could leave deliveries waiting for an event that never comes. */
static void tls_readable(conn_t *c) {
    c->read_wants_write = 0;
    int got_any = 0;
    for (;;) {
        size_t have = c->carry_len;
        if (have) memcpy(g_rbuf, c->carry, have);
        size_t len = have;
        int err = SSL_ERROR_NONE;
        while (len < RBUF_SIZE) {
            size_t room = RBUF_SIZE - len;
            ERR_clear_error();
            int n = SSL_read(c->ssl, g_rbuf + len, (int)(room > (1u << 30) ? (1u << 30) : room));
            if (n > 0) {
                len += (size_t)n;
                g_bytes_in += (uint64_t)n;
                continue;
            }
            err = SSL_get_error(c->ssl, n);
            break;
        }
        if (len > have) {
            got_any = 1;
            if (!consume(c, len)) return;
        }
        if (err == SSL_ERROR_NONE) continue; /* the buffer filled up: more may wait */
        if (err == SSL_ERROR_WANT_READ) break;
        if (err == SSL_ERROR_WANT_WRITE) { c->read_wants_write = 1; break; }
        conn_kill(c, tls_why(err));
        return;
    }
    if (got_any) quickack(c);
    if (c->write_wants_read || c->out_len) flush_out(c);
    else update_interest(c);
}

static void on_readable(conn_t *c) {
    if (c->ssl) {
        if (c->state == S_HANDSHAKE) tls_handshake(c);
        else tls_readable(c);
        return;
    }
    size_t have = c->carry_len;
    if (have) memcpy(g_rbuf, c->carry, have);
    ssize_t n = recv(c->fd, g_rbuf + have, RBUF_SIZE - have, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        conn_kill(c, n == 0 ? "EOF from server" : strerror(errno));
        return;
    }
    quickack(c);
    g_bytes_in += (uint64_t)n;
    consume(c, have + (size_t)n);
}

static void poll_once(int timeout_ms) {
    struct epoll_event evs[512];
    int n = epoll_wait(g_epfd, evs, 512, timeout_ms);
    for (int i = 0; i < n; i++) {
        conn_t *c = evs[i].data.ptr;
        if (c->state == S_DEAD) continue;
        if (c->state == S_CONNECTING) {
            if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(c);
            continue;
        }
        if (c->state == S_HANDSHAKE) {
            tls_handshake(c);
            continue;
        }
        /* TLS: a read that wanted writability runs again when the socket is writable */
        if ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ||
            (c->read_wants_write && (evs[i].events & EPOLLOUT)))
            on_readable(c);
        if (c->state != S_DEAD && (evs[i].events & EPOLLOUT) && c->out_len) flush_out(c);
    }
}

/* ---- phases ------------------------------------------------------------- */
static void login_all(void) {
    int next = 0;
    uint64_t t0 = now_ns();
    while (g_ready + g_dead < g_clients) {
        while (next < g_clients && next - (g_ready + g_dead) < g_login_batch) conn_open(&g_conns[next++]);
        poll_once(10);
        if ((now_ns() - t0) / 1e9 > g_login_timeout) die("login timed out: %d of %d ready", g_ready, g_clients);
    }
    if (g_dead) die("%d clients failed to log in", g_dead);
}

/* a JSON number, or null for NaN (JSON has no NaN); rotating static buffers */
static const char *jnum(double v, int decimals) {
    static char bufs[8][48];
    static int i;
    char *b = bufs[i++ % 8];
    if (isnan(v)) return "null";
    snprintf(b, 48, "%.*f", decimals, v);
    return b;
}

static void print_json(double login_s, double window_s, long srv_ticks, double self_cpu,
                       long hwm_kb, long rss_kb, long rss0_kb) {
    long hz = sysconf(_SC_CLK_TCK);
    double srv_cpu = srv_ticks >= 0 ? (double)srv_ticks / (double)hz : NAN;
    uint64_t expected = 0;
    for (int s = 0; s < g_senders; s++) expected += g_send[s].next_seq * (uint64_t)(g_clients - 1);
    uint64_t lost = expected > g_deliveries_total ? expected - g_deliveries_total : 0;
    double dps = window_s > 0 ? (double)g_deliveries_window / window_s : 0;
    printf("{\"proto\":\"%s\",\"mode\":\"%s\",\"clients\":%d,\"senders\":%d,\"window\":%d,"
           "\"rate\":%.1f,\"quickack\":%d,\"msg_len\":%d,\"login_s\":%.3f,\"window_s\":%.3f,"
           "\"sent\":%" PRIu64 ",\"sent_in_window\":%" PRIu64 ",\"expected\":%" PRIu64
           ",\"received\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"gaps\":%" PRIu64 ",\"reordered\":%" PRIu64
           ",\"errors\":%" PRIu64 ",\"reconnects\":%" PRIu64 ",\"closed\":%" PRIu64 ",\"deliveries_in_window\":%" PRIu64
           ",\"deliveries_per_s\":%.1f,\"msgs_per_s\":%.1f,",
           g_proto == P_IRC ? "irc" : "chat",
           g_mode == M_WINDOW ? "window" : g_mode == M_RATE ? "rate" : "idle", g_clients, g_senders,
           g_window, g_rate, g_quickack, g_msg_len, login_s, window_s, g_sent_total, g_sent_window,
           expected, g_deliveries_total, lost, g_lost_gaps, g_reordered, g_errors, g_reconnects, g_unexpected_close,
           g_deliveries_window, dps, window_s > 0 ? (double)g_sent_window / window_s : 0);
    printf("\"lat_p50_us\":%s,\"lat_p99_us\":%s,\"lat_p999_us\":%s,\"lat_max_us\":%.1f,"
           "\"lat_samples\":%" PRIu64 ",",
           jnum(hist_pct(50) / 1e3, 1), jnum(hist_pct(99) / 1e3, 1), jnum(hist_pct(99.9) / 1e3, 1),
           (double)g_lat_max / 1e3, g_hist_n);
    printf("\"tls\":%d,\"tls_version\":\"%s\",\"tls_cipher\":\"%s\",", g_tls, g_tls_version,
           g_tls_cipher);
    printf("\"server_cpu_s\":%s,", jnum(srv_cpu, 3));
    printf("\"login_server_cpu_s\":%s,\"login_retries\":%" PRIu64 ",\"tokens\":%d,",
           jnum(g_login_srv_cpu, 3), g_login_retries, g_tokens != NULL);
    printf("\"server_us_per_delivery\":%s,",
           jnum(g_deliveries_window ? srv_cpu * 1e6 / (double)g_deliveries_window : NAN, 4));
    printf("\"loadgen_cpu_s\":%.3f,\"loadgen_us_per_delivery\":%s,", self_cpu,
           jnum(g_deliveries_window ? self_cpu * 1e6 / (double)g_deliveries_window : NAN, 4));
    printf("\"server_vmhwm_kb\":%ld,\"server_rss_kb\":%ld,\"server_rss_before_kb\":%ld,", hwm_kb, rss_kb,
           rss0_kb);
    if (g_room || g_features)
        printf("\"room\":\"%s\",\"features_asked\":[%s],\"room_join_s\":%s,", g_room ? g_room : "",
               g_features_list, jnum(g_room_join_s, 3));
    printf("\"rss_per_conn_kb\":%s}\n",
           jnum(rss_kb > 0 && rss0_kb > 0 ? (double)(rss_kb - rss0_kb) / g_clients : NAN, 2));
    fflush(stdout);
}

/* --tokens FILE: "index token" lines, one per client (what --resume-out wrote). */
static void read_tokens(void) {
    FILE *f = fopen(g_tokens, "r");
    if (!f) die("--tokens %s: %s", g_tokens, strerror(errno));
    char line[1024];
    int loaded = 0;
    while (fgets(line, sizeof line, f)) {
        char *sp = strchr(line, ' ');
        if (!sp) continue;
        int idx = atoi(line);
        sp++;
        sp[strcspn(sp, "\r\n")] = 0;
        if (idx < 0 || idx >= g_clients || !*sp) continue;
        free(g_conns[idx].token);
        g_conns[idx].token = strdup(sp);
        loaded++;
    }
    fclose(f);
    for (int i = 0; i < g_clients; i++)
        if (!g_conns[i].token) die("--tokens %s: no token for client %d", g_tokens, i);
    if (g_verbose) fprintf(stderr, "loadgen: %d tokens loaded\n", loaded);
}

static void write_tokens(void) {
    FILE *f = fopen(g_resume_out, "w");
    if (!f) die("--resume-out %s: %s", g_resume_out, strerror(errno));
    for (int i = 0; i < g_clients; i++)
        if (g_conns[i].token) fprintf(f, "%d %s\n", i, g_conns[i].token);
    if (fclose(f)) die("--resume-out %s: %s", g_resume_out, strerror(errno));
}

/* The features of a password login, as `,"features":[...]` (none: ""): --features, then
 * "rooms" for --room and "resume" for --resume-out when not listed already. */
static void features_json(void) {
    char *list = g_features_list;
    const char *extra[2] = {g_room ? "rooms" : NULL, g_resume_out ? "resume" : NULL};
    size_t len = 0, cap = sizeof g_features_list;
    if (g_features) {
        char copy[300];
        if (strlen(g_features) >= sizeof copy) die("--features: too long");
        strcpy(copy, g_features);
        for (char *name = strtok(copy, ","); name; name = strtok(NULL, ",")) {
            if (strpbrk(name, "\"\\")) die("--features: bad name");
            len += (size_t)snprintf(list + len, cap - len, "%s\"%s\"", len ? "," : "", name);
        }
    }
    for (int i = 0; i < 2; i++) {
        if (!extra[i]) continue;
        char quoted[32];
        snprintf(quoted, sizeof quoted, "\"%s\"", extra[i]);
        if (!strstr(list, quoted))
            len += (size_t)snprintf(list + len, cap - len, "%s%s", len ? "," : "", quoted);
    }
    if (len) snprintf(g_features_json, sizeof g_features_json, ",\"features\":[%s]", list);
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen [--proto chat|irc] [--host H] [--port P] [--port2 P2] [--clients C]\n"
            "  [--senders S]\n"
            "  [--mode window|rate|idle] [--window W] [--rate MSG_PER_S] [--duration S] [--warmup S]\n"
            "  [--drain S] [--hold S] [--msg-len N] [--prefix P] [--password PW] [--quickack]\n"
            "  [--no-nodelay] [--src-count N] [--src-base A.B.C.D] [--server-pid PID]\n"
            "  [--login-batch N] [--no-join] [--login-timeout S] [--tls] [--verbose]\n"
            "  [--resume-out FILE] [--tokens FILE] [--room #NAME] [--features LIST] [--pairs]\n"
            "  --tls: TLS 1.2+ on every connection; the server's certificate is not verified\n");
    exit(2);
}

static void parse_args(int argc, char **argv) {
    static struct option opts[] = {
        {"proto", 1, 0, 'p'}, {"host", 1, 0, 'H'}, {"port", 1, 0, 'P'}, {"clients", 1, 0, 'c'},
        {"port2", 1, 0, '2'},
        {"senders", 1, 0, 's'}, {"mode", 1, 0, 'm'}, {"window", 1, 0, 'w'}, {"rate", 1, 0, 'r'},
        {"duration", 1, 0, 'd'}, {"warmup", 1, 0, 'u'}, {"drain", 1, 0, 'D'}, {"hold", 1, 0, 'o'},
        {"msg-len", 1, 0, 'l'}, {"prefix", 1, 0, 'x'}, {"password", 1, 0, 'W'},
        {"quickack", 0, 0, 'q'}, {"no-nodelay", 0, 0, 'N'}, {"src-count", 1, 0, 'n'},
        {"src-base", 1, 0, 'b'}, {"server-pid", 1, 0, 'i'}, {"login-batch", 1, 0, 'B'},
        {"no-join", 0, 0, 'J'}, {"login-timeout", 1, 0, 'T'}, {"tls", 0, 0, 't'}, {"verbose", 0, 0, 'v'}, {"help", 0, 0, 'h'},
        {"resume-out", 1, 0, 'R'}, {"tokens", 1, 0, 'K'}, {"room", 1, 0, 'O'},
        {"features", 1, 0, 'F'}, {"pairs", 0, 0, 'y'}, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'p': g_proto = !strcmp(optarg, "irc") ? P_IRC : !strcmp(optarg, "chat") ? P_CHAT : (usage(), 0); break;
        case 'H': g_host = optarg; break;
        case 'P': g_port = atoi(optarg); break;
        case '2': g_port2 = atoi(optarg); break;
        case 'c': g_clients = atoi(optarg); break;
        case 's': g_senders = atoi(optarg); break;
        case 'm':
            g_mode = !strcmp(optarg, "window") ? M_WINDOW : !strcmp(optarg, "rate") ? M_RATE
                   : !strcmp(optarg, "idle") ? M_IDLE : (usage(), 0);
            break;
        case 'w': g_window = atoi(optarg); break;
        case 'r': g_rate = atof(optarg); break;
        case 'd': g_duration = atof(optarg); break;
        case 'u': g_warmup = atof(optarg); break;
        case 'D': g_drain = atof(optarg); break;
        case 'o': g_hold = atof(optarg); break;
        case 'l': g_msg_len = atoi(optarg); break;
        case 'x': g_prefix = optarg; break;
        case 'W': g_password = optarg; break;
        case 'q': g_quickack = 1; break;
        case 'N': g_nodelay = 0; break;
        case 'n': g_src_count = atoi(optarg); break;
        case 'b': g_src_base = optarg; break;
        case 'i': g_server_pid = atoi(optarg); break;
        case 'B': g_login_batch = atoi(optarg); break;
        case 'J': g_join = 0; break;
        case 'T': g_login_timeout = atof(optarg); break;
        case 't': g_tls = 1; break;
        case 'v': g_verbose = 1; break;
        case 'R': g_resume_out = optarg; break;
        case 'K': g_tokens = optarg; break;
        case 'O': g_room = optarg; break;
        case 'F': g_features = optarg; break;
        case 'y': g_pairs = 1; break;
        default: usage();
        }
    }
    if (g_clients < 2 || g_senders < 0 || g_senders > g_clients || g_window < 1 || g_msg_len < 40 ||
        g_msg_len > 4000 || g_login_batch < 1)
        usage();
    if (g_mode == M_IDLE) g_senders = 0;
    if (g_room && (g_proto != P_CHAT || g_room[0] != '#' || strlen(g_room) > 33 || strpbrk(g_room, "\"\\")))
        die("--room: a room name (#name) of the chat protocol");
    features_json();
    if (inet_pton(AF_INET, g_src_base, &g_src_base_addr) != 1) die("bad --src-base");
}

static void tls_init(void) {
    signal(SIGPIPE, SIG_IGN); /* SSL_write uses write(2): no MSG_NOSIGNAL there */
    g_ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (!g_ssl_ctx) die("SSL_CTX_new: %s", tls_why(0));
    SSL_CTX_set_min_proto_version(g_ssl_ctx, TLS1_2_VERSION);
    /* loopback bench against our own throw-away certificate: no verification */
    SSL_CTX_set_verify(g_ssl_ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(g_ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_clear_mode(g_ssl_ctx, SSL_MODE_AUTO_RETRY); /* non-blocking: return WANT_READ */
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    if (g_tls) tls_init();
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    g_epfd = epoll_create1(EPOLL_CLOEXEC);
    g_rbuf = malloc(RBUF_SIZE);
    g_conns = calloc((size_t)g_clients, sizeof *g_conns);
    g_send = calloc((size_t)(g_senders ? g_senders : 1), sizeof *g_send);
    g_last = calloc((size_t)g_clients * (size_t)(g_senders ? g_senders : 1), sizeof *g_last);
    if (!g_rbuf || !g_conns || !g_send || !g_last) die("out of memory");
    for (int i = 0; i < g_clients; i++) g_conns[i].idx = i;
    for (int s = 0; s < g_senders; s++) {
        g_send[s].ring = calloc((size_t)g_window, sizeof(uint32_t));
        if (!g_send[s].ring) die("out of memory");
    }
    long rss0 = g_server_pid ? proc_status_kb(g_server_pid, "VmRSS") : -1;

    if (g_tokens) read_tokens();
    long login_ticks0 = g_server_pid ? proc_cpu_ticks(g_server_pid) : -1;
    uint64_t t_login = now_ns();
    login_all();
    double login_s = (double)(now_ns() - t_login) / 1e9;
    if (login_ticks0 >= 0)
        g_login_srv_cpu = (double)(proc_cpu_ticks(g_server_pid) - login_ticks0) / (double)sysconf(_SC_CLK_TCK);
    if (g_resume_out) write_tokens();
    if (g_verbose) fprintf(stderr, "loadgen: %d clients ready in %.2fs\n", g_ready, login_s);

    if (g_mode == M_IDLE) {
        uint64_t until = now_ns() + (uint64_t)(g_hold * 1e9);
        while (now_ns() < until) poll_once(50);
        long rss = g_server_pid ? proc_status_kb(g_server_pid, "VmRSS") : -1;
        long hwm = g_server_pid ? proc_status_kb(g_server_pid, "VmHWM") : -1;
        print_json(login_s, 0, -1, self_cpu_s(), hwm, rss, rss0);
        return 0;
    }

    uint64_t t0 = now_ns();
    uint64_t t_start = t0 + (uint64_t)(g_warmup * 1e9);
    uint64_t t_end = t_start + (uint64_t)(g_duration * 1e9);
    long srv_ticks0 = -1, srv_ticks = -1;
    double self0 = 0, self_cpu = 0;
    uint64_t rate_sent = 0; /* rate mode: messages sent since t0 */
    int rr = 0;
    for (;;) {
        uint64_t t = now_ns();
        if (!g_measuring && t >= t_start && t < t_end) {
            g_measuring = 1;
            t_start = t;
            srv_ticks0 = g_server_pid ? proc_cpu_ticks(g_server_pid) : -1;
            self0 = self_cpu_s();
        }
        if (t >= t_end) break;
        if (g_mode == M_WINDOW) {
            fill_windows();
            poll_once(1);
        } else {
            uint64_t due = (uint64_t)((double)(t - t0) * g_rate / 1e9);
            for (; rate_sent < due; rate_sent++) {
                send_one(rr);
                rr = (rr + 1) % g_senders;
            }
            uint64_t next = t0 + (uint64_t)((double)(rate_sent + 1) * 1e9 / g_rate);
            uint64_t tn = now_ns();
            int ms = next > tn ? (int)((next - tn) / 1000000) : 0;
            poll_once(ms);
        }
    }
    double window_s = (double)(now_ns() - t_start) / 1e9;
    g_measuring = 0;
    if (g_server_pid) srv_ticks = proc_cpu_ticks(g_server_pid) - srv_ticks0;
    self_cpu = self_cpu_s() - self0;
    long hwm = g_server_pid ? proc_status_kb(g_server_pid, "VmHWM") : -1;
    long rss = g_server_pid ? proc_status_kb(g_server_pid, "VmRSS") : -1;

    /* drain: wait until every expected delivery arrived, or nothing moved for g_drain s */
    g_stop_sending = 1;
    uint64_t last_count = g_deliveries_total, last_move = now_ns();
    for (;;) {
        uint64_t expected = 0;
        for (int s = 0; s < g_senders; s++) expected += g_send[s].next_seq * (uint64_t)(g_clients - 1);
        if (g_deliveries_total >= expected) break;
        poll_once(10);
        if (g_deliveries_total != last_count) { last_count = g_deliveries_total; last_move = now_ns(); }
        else if ((double)(now_ns() - last_move) / 1e9 > g_drain) break;
    }
    print_json(login_s, window_s, srv_ticks, self_cpu, hwm, rss, rss0);
    return 0;
}
