// Swift cannot call the variadic ioctl(2) (TUNSETIFF), and Glibc's setns(2) is not
// imported; these are the two calls the network lab needs from C.
#define _GNU_SOURCE
#include "ctally_tun.h"

#include <errno.h>
#include <sched.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <string.h>
#include <sys/ioctl.h>
#include <stdlib.h>
#include <unistd.h>

int ctally_tun_open(const char *name) {
    if (name == NULL || strlen(name) >= IFNAMSIZ) return -EINVAL;
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct ifreq request;
    memset(&request, 0, sizeof request);
    request.ifr_flags = IFF_TUN | IFF_NO_PI;
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &request) < 0) {
        int error = errno;
        close(fd);
        return -error;
    }
    return fd;
}

int ctally_socket_in_netns(const char *netns_path, int domain, int type, int protocol) {
    int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0) return -errno;
    int target = open(netns_path, O_RDONLY | O_CLOEXEC);
    if (target < 0) {
        int error = errno;
        close(home);
        return -error;
    }
    int result;
    if (setns(target, CLONE_NEWNET) < 0) {
        result = -errno;
    } else {
        result = socket(domain, type | SOCK_CLOEXEC, protocol);
        if (result < 0) result = -errno;
        // Back home; if this fails the thread is stranded, which must not go unnoticed.
        if (setns(home, CLONE_NEWNET) < 0) abort();
    }
    close(target);
    close(home);
    return result;
}
