/* memhog: uses guest memory the way a workload does, for the balloon scenarios.
 *
 *   memhog touch MIB      maps MIB MiB of anonymous memory, writes every 4 KiB page, unmaps it
 *                         and exits: the guest has used, then freed, that much memory
 *   memhog hold MIB       the same, but keeps it (and prints "holding MIB MiB") until killed
 *
 * Prints "touched MIB MiB in MS ms" once every page is written. Exits 1 if the memory cannot be
 * mapped. Built static for the real-Linux suite's L2 (tests/linux/build.py). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "touch") != 0 && strcmp(argv[1], "hold") != 0)) {
        fprintf(stderr, "usage: memhog touch|hold MIB\n");
        return 2;
    }
    long mib = strtol(argv[2], NULL, 10);
    if (mib <= 0) {
        fprintf(stderr, "memhog: bad size %s\n", argv[2]);
        return 2;
    }
    size_t len = (size_t)mib << 20;
    double t0 = now_ms();
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("memhog: mmap");
        return 1;
    }
    for (size_t off = 0; off < len; off += 4096)
        p[off] = (char)(off >> 12 | 1);
    printf("touched %ld MiB in %.0f ms\n", mib, now_ms() - t0);
    fflush(stdout);
    if (strcmp(argv[1], "hold") == 0) {
        printf("holding %ld MiB\n", mib);
        fflush(stdout);
        for (;;)
            pause();
    }
    munmap(p, len);
    return 0;
}
