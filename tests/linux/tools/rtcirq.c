/* rtcirq: waits for one RTC interrupt through /dev/rtc0, as hwclock and rtcwake do.
 *
 *   rtcirq uie            the next update-ended interrupt (RTC_UIE_ON)
 *   rtcirq alarm SECS     an alarm SECS seconds ahead (RTC_ALM_SET, RTC_AIE_ON)
 *
 * Prints "irq <kind> after <ms> ms" and exits 0, or exits 1 after 10 s without one. Built
 * static for the real-Linux suite's L2 (tests/linux/build.py). */
#include <fcntl.h>
#include <linux/rtc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: rtcirq uie | rtcirq alarm SECS\n");
        return 2;
    }
    int fd = open("/dev/rtc0", O_RDONLY);
    if (fd < 0) { perror("/dev/rtc0"); return 1; }
    int off;
    if (strcmp(argv[1], "uie") == 0) {
        if (ioctl(fd, RTC_UIE_ON, 0) < 0) { perror("RTC_UIE_ON"); return 1; }
        off = RTC_UIE_OFF;
    } else if (strcmp(argv[1], "alarm") == 0 && argc == 3) {
        struct rtc_time t;
        if (ioctl(fd, RTC_RD_TIME, &t) < 0) { perror("RTC_RD_TIME"); return 1; }
        struct tm tm = { .tm_sec = t.tm_sec, .tm_min = t.tm_min, .tm_hour = t.tm_hour,
                         .tm_mday = t.tm_mday, .tm_mon = t.tm_mon, .tm_year = t.tm_year };
        time_t when = timegm(&tm) + atoi(argv[2]);
        gmtime_r(&when, &tm);
        struct rtc_time a = { .tm_sec = tm.tm_sec, .tm_min = tm.tm_min, .tm_hour = tm.tm_hour };
        if (ioctl(fd, RTC_ALM_SET, &a) < 0) { perror("RTC_ALM_SET"); return 1; }
        if (ioctl(fd, RTC_AIE_ON, 0) < 0) { perror("RTC_AIE_ON"); return 1; }
        off = RTC_AIE_OFF;
    } else {
        fprintf(stderr, "rtcirq: unknown mode %s\n", argv[1]);
        return 2;
    }
    double t0 = now_ms();
    fd_set set;
    FD_ZERO(&set);
    FD_SET(fd, &set);
    struct timeval tv = { .tv_sec = 10 };
    if (select(fd + 1, &set, NULL, NULL, &tv) != 1) {
        fprintf(stderr, "rtcirq: no %s interrupt within 10 s\n", argv[1]);
        return 1;
    }
    unsigned long data;
    if (read(fd, &data, sizeof data) != sizeof data) { perror("read"); return 1; }
    ioctl(fd, off, 0);
    printf("irq %s after %.0f ms flags 0x%lx\n", argv[1], now_ms() - t0, data & 0xff);
    return 0;
}
