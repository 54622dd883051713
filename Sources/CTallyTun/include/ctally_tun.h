#ifndef CTALLY_TUN_H
#define CTALLY_TUN_H

/// Opens /dev/net/tun and attaches a new layer-3 TUN device named `name`
/// (IFF_TUN | IFF_NO_PI: every read and write is one bare IPv4/IPv6 packet).
/// The descriptor is non-blocking and close-on-exec. Returns the descriptor, or
/// -errno on failure. The device lives while the descriptor is open.
int ctally_tun_open(const char *name);

/// Creates a socket (socket(2) arguments) in the network namespace at
/// `netns_path` (e.g. /var/run/netns/NAME): the calling thread enters it, creates
/// the socket, and returns to its own namespace. A socket stays in the namespace it
/// was made in. Returns the descriptor, or -errno on failure.
int ctally_socket_in_netns(const char *netns_path, int domain, int type, int protocol);

#endif
