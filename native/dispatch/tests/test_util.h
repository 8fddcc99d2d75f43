/* Helpers shared by libchatdispatch's tests: the CHECK macro, sockets, clocks. */
#ifndef CD_TEST_UTIL_H
#define CD_TEST_UTIL_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int failures = 0;

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        if (!(cond)) {                                                    \
            failures++;                                                   \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__,       \
                    __LINE__, #cond);                                     \
            fprintf(stderr, __VA_ARGS__);                                 \
            fputc('\n', stderr);                                          \
        }                                                                 \
    } while (0)

/* A test that cannot go on (no socket, no memory): stop here, loudly. */
#define REQUIRE(cond, ...)                                                \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf(stderr, "%s:%d: REQUIRE(%s) failed: ", __FILE__,     \
                    __LINE__, #cond);                                     \
            fprintf(stderr, __VA_ARGS__);                                 \
            fputc('\n', stderr);                                          \
            exit(EXIT_FAILURE);                                           \
        }                                                                 \
    } while (0)

static inline double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* A connected AF_UNIX stream pair: sv[0] is the library's end, sv[1] the peer.
 * sndbuf > 0 shrinks the library end's send buffer (the kernel rounds it up). */
static inline void unix_pair(int sv[2], int sndbuf) {
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
    if (sndbuf > 0) setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
}

/* A connected TCP loopback pair: sv[0] the library's end (client), sv[1] the peer. */
static inline void tcp_pair(int sv[2], int sndbuf, int rcvbuf) {
    int lst = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(lst >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    REQUIRE(bind(lst, (struct sockaddr *)&addr, sizeof addr) == 0, "bind: %s", strerror(errno));
    REQUIRE(listen(lst, 1) == 0, "listen: %s", strerror(errno));
    REQUIRE(getsockname(lst, (struct sockaddr *)&addr, &len) == 0, "getsockname");
    int c = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(c >= 0, "socket: %s", strerror(errno));
    if (sndbuf > 0) setsockopt(c, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    REQUIRE(connect(c, (struct sockaddr *)&addr, sizeof addr) == 0, "connect: %s",
            strerror(errno));
    int p = accept(lst, NULL, NULL);
    REQUIRE(p >= 0, "accept: %s", strerror(errno));
    if (rcvbuf > 0) setsockopt(p, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    close(lst);
    sv[0] = c;
    sv[1] = p;
}

/* Read what is there without waiting, up to max bytes; returns how many. */
static inline size_t read_now(int fd, uint8_t *buf, size_t max) {
    size_t got = 0;
    while (got < max) {
        ssize_t r = recv(fd, buf + got, max - got, MSG_DONTWAIT);
        if (r > 0) {
            got += (size_t)r;
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else {
            break; /* EAGAIN, EOF or an error: nothing more now */
        }
    }
    return got;
}

#endif /* CD_TEST_UTIL_H */
