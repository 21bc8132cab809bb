/* vsockxfer: vsock stream transfers for the real-Linux suite's vsock tests and benchmark (built
 * static; it runs in L2 and in L1). Busybox has no vsock tool.
 *
 *   vsockxfer listen PORT COUNT [sink]     AF_VSOCK: accept COUNT connections one after the
 *                                          other, echo each to its end (sink: read it to its
 *                                          end, then answer the byte count, 8 bytes)
 *   vsockxfer ulisten PATH COUNT           the same on a Unix listener at PATH (the
 *                                          userspace device's <uds path>_<port>)
 *   vsockxfer send CID PORT BYTES SEED [oneway]
 *                                          AF_VSOCK: connect, send BYTES of the seed's pattern
 *                                          while reading the echo, then half-close and read
 *                                          the echo to its end (oneway: to a sink, whose count
 *                                          ends it: one direction's throughput)
 *   vsockxfer usend PATH PORT BYTES SEED [oneway]
 *                                          the same through the userspace device's Unix socket
 *                                          (CONNECT PORT, then OK <host port>)
 *   vsockxfer conns CID PORT COUNT         COUNT sequential connections, one byte echoed each
 *   vsockxfer uconns PATH PORT COUNT       the same through the Unix socket
 *
 * send prints "sent BYTES sum=<16 hex> echoed=<n> esum=<16 hex> ms=<elapsed>": every byte came
 * back in order exactly when sum == esum and BYTES == echoed. conns prints "conns N ms=<n>".
 * listen prints "accepted N" at its end. The pattern is xorshift64 from the seed; the sum is
 * FNV-1a style over the bytes. Every blocking call has a timeout (60 s of silence is an error,
 * exit status 1). */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#define CHUNK (64 * 1024)
#define IDLE_MS 60000

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static uint64_t fold(uint64_t sum, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) sum = (sum ^ p[i]) * 0x100000001b3ULL;
    return sum;
}

static void timeouts(int fd) {
    struct timeval tv = {.tv_sec = IDLE_MS / 1000, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int vsock_connect(unsigned cid, unsigned port) {
    struct sockaddr_vm sa = {.svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port};
    double t0 = now_ms();
    for (;;) {
        int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
        if (fd < 0) { perror("socket(AF_VSOCK)"); exit(1); }
        timeouts(fd);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) return fd;
        int e = errno;
        close(fd);
        /* The listener may start a moment later. */
        if ((e != ECONNRESET && e != ECONNREFUSED) || now_ms() - t0 > 30000) {
            errno = e;
            perror("connect");
            exit(1);
        }
        usleep(50000);
    }
}

static int unix_socket(const char *path, struct sockaddr_un *sa) {
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa->sun_path) { fprintf(stderr, "path too long\n"); exit(2); }
    strcpy(sa->sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) { perror("socket(AF_UNIX)"); exit(1); }
    timeouts(fd);
    return fd;
}

/* Firecracker's handshake on the userspace device's socket. */
static int uds_connect(const char *path, unsigned port) {
    struct sockaddr_un sa;
    double t0 = now_ms();
    for (;;) {
        int fd = unix_socket(path, &sa);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) { perror("connect"); exit(1); }
        char line[32];
        int n = snprintf(line, sizeof line, "CONNECT %u\n", port);
        if (write(fd, line, n) != n) { perror("write CONNECT"); exit(1); }
        size_t got = 0;
        while (got < sizeof line - 1) {
            ssize_t r = read(fd, line + got, 1);
            if (r <= 0) break;
            got++;
            if (line[got - 1] == '\n') break;
        }
        line[got] = 0;
        if (got > 3 && strncmp(line, "OK ", 3) == 0 && line[got - 1] == '\n') return fd;
        close(fd);
        /* The guest's listener may start a moment later: refused connections end at once. */
        if (now_ms() - t0 > 30000) { fprintf(stderr, "no OK: '%s'\n", line); exit(1); }
        usleep(50000);
    }
}

static void echo(int fd) {
    static unsigned char buf[CHUNK];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r == 0) break;
        if (r < 0) { if (errno == EINTR) continue; perror("read"); exit(1); }
        ssize_t off = 0;
        while (off < r) {
            ssize_t w = write(fd, buf + off, r - off);
            if (w < 0) { if (errno == EINTR) continue; perror("write"); exit(1); }
            off += w;
        }
    }
    close(fd);
}

static void sink(int fd) {
    static unsigned char buf[CHUNK];
    unsigned long long got = 0;
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r == 0) break;
        if (r < 0) { if (errno == EINTR) continue; perror("read"); exit(1); }
        got += r;
    }
    if (write(fd, &got, sizeof got) != sizeof got) { perror("write"); exit(1); }
    close(fd);
}

static int sinking;

static int serve(int lfd, long count) {
    if (listen(lfd, 16) != 0) { perror("listen"); return 1; }
    long n = 0;
    for (; n < count; n++) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) { if (errno == EINTR) { n--; continue; } perror("accept"); return 1; }
        timeouts(fd);
        if (sinking) sink(fd); else echo(fd);
    }
    printf("accepted %ld\n", n);
    return 0;
}

/* Sends `bytes` of the pattern while reading the echo (both at once, so neither side's buffers
 * fill up), then half-closes and reads the rest. */
static int transfer(int fd, unsigned long long bytes, uint64_t seed, int oneway) {
    static unsigned char out[CHUNK], in[CHUNK];
    uint64_t x = seed ? seed : 1, sum = 0xcbf29ce484222325ULL, esum = sum;
    unsigned long long sent = 0, echoed = 0;
    size_t have = 0, off = 0;
    int wr_open = 1;
    double t0 = now_ms();
    for (;;) {
        if (wr_open && sent == bytes && off == have) {
            shutdown(fd, SHUT_WR);
            wr_open = 0;
        }
        if (wr_open && off == have) {
            size_t n = bytes - sent < CHUNK ? bytes - sent : CHUNK;
            for (size_t i = 0; i < n; i++) {
                if (i % 8 == 0) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; }
                out[i] = (unsigned char)(x >> (8 * (i % 8)));
            }
            sum = fold(sum, out, n);
            have = n;
            off = 0;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN | (wr_open ? POLLOUT : 0)};
        int r = poll(&p, 1, IDLE_MS);
        if (r == 0) { fprintf(stderr, "idle for 60 s\n"); return 1; }
        if (r < 0) { if (errno == EINTR) continue; perror("poll"); return 1; }
        if (p.revents & POLLIN) {
            ssize_t k = read(fd, in, sizeof in);
            if (k == 0) break;
            if (k < 0) { if (errno == EINTR || errno == EAGAIN) continue; perror("read"); return 1; }
            if (oneway) {
                /* The sink's byte count, after our half-close: nothing is echoed. */
                if (k == 8) memcpy(&echoed, in, 8);
                esum = echoed == sent ? sum : 0;
                continue;
            }
            esum = fold(esum, in, k);
            echoed += k;
        } else if (p.revents & (POLLHUP | POLLERR) && !(p.revents & POLLOUT)) {
            break;
        }
        if (wr_open && (p.revents & POLLOUT)) {
            ssize_t w = send(fd, out + off, have - off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR || errno == EAGAIN) continue;
                perror("write");
                return 1;
            }
            off += w;
            sent += w;
        }
    }
    close(fd);
    printf("sent %llu sum=%016llx echoed=%llu esum=%016llx ms=%.0f\n", sent,
           (unsigned long long)sum, echoed, (unsigned long long)esum, now_ms() - t0);
    return sent == bytes && echoed == bytes && sum == esum ? 0 : 1;
}

static int conns(int (*open_one)(const char *, unsigned, unsigned), const char *where,
                 unsigned cid, unsigned port, long count) {
    double t0 = now_ms();
    for (long i = 0; i < count; i++) {
        int fd = open_one(where, cid, port);
        unsigned char b = (unsigned char)i, back = 0;
        if (write(fd, &b, 1) != 1) { perror("write"); return 1; }
        shutdown(fd, SHUT_WR);
        if (read(fd, &back, 1) != 1 || back != b) { fprintf(stderr, "connection %ld: no echo\n", i); return 1; }
        char rest;
        if (read(fd, &rest, 1) != 0) { fprintf(stderr, "connection %ld: no end\n", i); return 1; }
        close(fd);
    }
    printf("conns %ld ms=%.0f\n", count, now_ms() - t0);
    return 0;
}

static int open_vsock(const char *unused, unsigned cid, unsigned port) {
    (void)unused;
    return vsock_connect(cid, port);
}

static int open_uds(const char *path, unsigned unused, unsigned port) {
    (void)unused;
    return uds_connect(path, port);
}

static unsigned long num(const char *s) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 0);
    if (errno || *end || !*s) { fprintf(stderr, "bad number %s\n", s); exit(2); }
    return v;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 5 && !strcmp(argv[4], "sink")) {
        sinking = 1;
        argc--;
    }
    int oneway = argc == 7 && !strcmp(argv[6], "oneway");
    if (oneway) argc--;
    if (argc == 4 && !strcmp(argv[1], "listen")) {
        int lfd = socket(AF_VSOCK, SOCK_STREAM, 0);
        struct sockaddr_vm sa = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
                                 .svm_port = (unsigned)num(argv[2])};
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0) { perror("bind"); return 1; }
        return serve(lfd, (long)num(argv[3]));
    }
    if (argc == 4 && !strcmp(argv[1], "ulisten")) {
        struct sockaddr_un sa;
        int lfd = unix_socket(argv[2], &sa);
        unlink(argv[2]);
        if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0) { perror("bind"); return 1; }
        return serve(lfd, (long)num(argv[3]));
    }
    if (argc == 6 && !strcmp(argv[1], "send"))
        return transfer(vsock_connect((unsigned)num(argv[2]), (unsigned)num(argv[3])),
                        num(argv[4]), num(argv[5]), oneway);
    if (argc == 6 && !strcmp(argv[1], "usend"))
        return transfer(uds_connect(argv[2], (unsigned)num(argv[3])), num(argv[4]), num(argv[5]),
                        oneway);
    if (argc == 5 && !strcmp(argv[1], "conns"))
        return conns(open_vsock, NULL, (unsigned)num(argv[2]), (unsigned)num(argv[3]),
                     (long)num(argv[4]));
    if (argc == 5 && !strcmp(argv[1], "uconns"))
        return conns(open_uds, argv[2], 0, (unsigned)num(argv[3]), (long)num(argv[4]));
    fprintf(stderr, "usage: vsockxfer listen PORT COUNT [sink] | ulisten PATH COUNT [sink] |"
                    " send CID PORT BYTES SEED [oneway] | usend PATH PORT BYTES SEED [oneway] |"
                    " conns CID PORT COUNT | uconns PATH PORT COUNT\n");
    return 2;
}
