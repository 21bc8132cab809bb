/* netfeatures: what `ethtool -k IFACE` shows, through SIOCETHTOOL (ETHTOOL_GSSET_INFO and
 * ETHTOOL_GSTRINGS for the feature names, ETHTOOL_GFEATURES for their state). Prints one
 * "<name> on|off" line per feature the kernel names; built static for the real-Linux suite
 * (it runs in L2 on eth0 and in L1 on a TAP). */
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int ethtool(int fd, const char *ifname, void *data) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    ifr.ifr_data = data;
    return ioctl(fd, SIOCETHTOOL, &ifr);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: netfeatures IFACE\n"); return 2; }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) { perror("socket"); return 1; }
    struct { struct ethtool_sset_info hdr; uint32_t len; } info;
    memset(&info, 0, sizeof info);
    info.hdr.cmd = ETHTOOL_GSSET_INFO;
    info.hdr.sset_mask = 1ULL << ETH_SS_FEATURES;
    if (ethtool(fd, argv[1], &info) != 0 || !info.hdr.sset_mask) {
        perror("ETHTOOL_GSSET_INFO");
        return 1;
    }
    uint32_t n = info.len;
    struct ethtool_gstrings *names = calloc(1, sizeof *names + n * ETH_GSTRING_LEN);
    names->cmd = ETHTOOL_GSTRINGS;
    names->string_set = ETH_SS_FEATURES;
    names->len = n;
    if (ethtool(fd, argv[1], names) != 0) { perror("ETHTOOL_GSTRINGS"); return 1; }
    uint32_t blocks = (n + 31) / 32;
    struct ethtool_gfeatures *f = calloc(1, sizeof *f + blocks * sizeof f->features[0]);
    f->cmd = ETHTOOL_GFEATURES;
    f->size = blocks;
    if (ethtool(fd, argv[1], f) != 0) { perror("ETHTOOL_GFEATURES"); return 1; }
    for (uint32_t i = 0; i < n; i++) {
        const char *name = (const char *)names->data + i * ETH_GSTRING_LEN;
        if (!name[0]) continue;
        int on = (f->features[i / 32].active >> (i % 32)) & 1;
        printf("%.*s %s\n", ETH_GSTRING_LEN, name, on ? "on" : "off");
    }
    return 0;
}
