/* netxfer: bulk TCP transfers and UDP packet streams with a checksum and a clock, for the
 * real-Linux suite's NIC tests and benchmark (built static; it runs in L2 and in L1).
 *
 *   netxfer send HOST PORT BYTES SEED   connect, send BYTES of the seed's pattern, close
 *   netxfer recv PORT                   accept one connection, read to its end
 *   netxfer udpsend HOST PORT COUNT LEN send COUNT datagrams of LEN bytes
 *   netxfer udprecv PORT SECS           count datagrams until SECS pass without one
 *
 * TCP lines: "sent|recv BYTES sum=<16 hex> ms=<elapsed>"; the sum is the same on both sides
 * exactly when every byte arrived in order. UDP lines: "sent|recv COUNT bytes=<n> ms=<n>"
 * (the receiver's clock runs from its first datagram to its last). The pattern is xorshift64
 * from the seed, 8 bytes at a time; the sum folds each 8-byte word in (FNV-1a style). Every
 * blocking call has a timeout (60 s of silence ends a transfer with exit status 1). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)
#define IDLE_SECS 60

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static uint64_t fold(uint64_t sum, uint64_t w) { return (sum ^ w) * 0x100000001b3ULL; }

static void timeouts(int fd, int secs) {
    struct timeval tv = {.tv_sec = secs, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int addr(const char *host, int port, struct sockaddr_in *sa) {
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(port);
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static int tcp_send(const char *host, int port, unsigned long long bytes, uint64_t seed) {
    struct sockaddr_in sa;
    if (addr(host, port, &sa)) { fprintf(stderr, "bad address %s\n", host); return 2; }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    timeouts(fd, IDLE_SECS);
    double t0 = now_ms();
    /* The listener may start a moment later: retry for a while. */
    while (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (now_ms() - t0 > 30000) { perror("connect"); return 1; }
        close(fd);
        usleep(100000);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        timeouts(fd, IDLE_SECS);
    }
    static uint64_t buf[CHUNK / 8];
    uint64_t x = seed ? seed : 1, sum = 0xcbf29ce484222325ULL;
    unsigned long long left = bytes - bytes % 8;
    t0 = now_ms();
    while (left) {
        size_t n = left < CHUNK ? left : CHUNK;
        for (size_t i = 0; i < n / 8; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            buf[i] = x;
            sum = fold(sum, x);
        }
        size_t off = 0;
        while (off < n) {
            ssize_t w = write(fd, (char *)buf + off, n - off);
            if (w < 0) { if (errno == EINTR) continue; perror("write"); return 1; }
            off += w;
        }
        left -= n;
    }
    shutdown(fd, SHUT_WR);
    char c;
    while (read(fd, &c, 1) > 0) {}
    close(fd);
    printf("sent %llu sum=%016llx ms=%.0f\n", bytes - bytes % 8, (unsigned long long)sum,
           now_ms() - t0);
    return 0;
}

static int listener(int type, int port) {
    int fd = socket(AF_INET, type, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa;
    addr("0.0.0.0", port, &sa);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) { perror("bind"); exit(1); }
    if (type == SOCK_STREAM && listen(fd, 1) != 0) { perror("listen"); exit(1); }
    return fd;
}

static int tcp_recv(int port) {
    int l = listener(SOCK_STREAM, port);
    timeouts(l, 120);
    int fd = accept(l, NULL, NULL);
    if (fd < 0) { perror("accept"); return 1; }
    timeouts(fd, IDLE_SECS);
    static unsigned char buf[CHUNK + 8];
    size_t have = 0;
    unsigned long long total = 0;
    uint64_t sum = 0xcbf29ce484222325ULL;
    double t0 = now_ms();
    for (;;) {
        ssize_t r = read(fd, buf + have, CHUNK);
        if (r < 0) { if (errno == EINTR) continue; perror("read"); return 1; }
        if (r == 0) break;
        have += r;
        total += r;
        size_t words = have / 8;
        for (size_t i = 0; i < words; i++) {
            uint64_t w;
            memcpy(&w, buf + 8 * i, 8);
            sum = fold(sum, w);
        }
        memmove(buf, buf + 8 * words, have - 8 * words);
        have -= 8 * words;
    }
    close(fd);
    printf("recv %llu sum=%016llx ms=%.0f\n", total, (unsigned long long)sum, now_ms() - t0);
    return 0;
}

static int udp_send(const char *host, int port, long count, int len) {
    struct sockaddr_in sa;
    if (addr(host, port, &sa)) { fprintf(stderr, "bad address %s\n", host); return 2; }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    timeouts(fd, IDLE_SECS);
    static char buf[65536];
    memset(buf, 0x5a, sizeof buf);
    double t0 = now_ms();
    long sent = 0;
    for (long i = 0; i < count; i++) {
        memcpy(buf, &i, sizeof i);
        if (sendto(fd, buf, len, 0, (struct sockaddr *)&sa, sizeof sa) == len) sent++;
        else if (errno == ENOBUFS || errno == EAGAIN) { usleep(100); i--; }
    }
    printf("sent %ld bytes=%lld ms=%.0f\n", sent, (long long)sent * len, now_ms() - t0);
    return 0;
}

static int udp_recv(int port, int secs) {
    int fd = listener(SOCK_DGRAM, port);
    int big = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    timeouts(fd, IDLE_SECS);
    static char buf[65536];
    long n = 0;
    long long bytes = 0;
    double first = 0, last = 0;
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r < 0) break;
        if (n == 0) { first = now_ms(); timeouts(fd, secs); }
        last = now_ms();
        n++;
        bytes += r;
    }
    printf("recv %ld bytes=%lld ms=%.0f\n", n, bytes, last - first);
    return n ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 6 && !strcmp(argv[1], "send"))
        return tcp_send(argv[2], atoi(argv[3]), strtoull(argv[4], 0, 0), strtoull(argv[5], 0, 0));
    if (argc == 3 && !strcmp(argv[1], "recv")) return tcp_recv(atoi(argv[2]));
    if (argc == 6 && !strcmp(argv[1], "udpsend"))
        return udp_send(argv[2], atoi(argv[3]), atol(argv[4]), atoi(argv[5]));
    if (argc == 4 && !strcmp(argv[1], "udprecv")) return udp_recv(atoi(argv[2]), atoi(argv[3]));
    fprintf(stderr, "usage: netxfer send HOST PORT BYTES SEED | recv PORT | "
                    "udpsend HOST PORT COUNT LEN | udprecv PORT SECS\n");
    return 2;
}
