#ifndef CTALLY_TUN_H
#define CTALLY_TUN_H

/// Opens /dev/net/tun and attaches a new layer-3 TUN device named `name`
/// (IFF_TUN | IFF_NO_PI: every read and write is one bare IPv4/IPv6 packet).
/// The descriptor is non-blocking and close-on-exec. Returns the descriptor, or
/// -errno on failure. The device lives while the descriptor is open.
int ctally_tun_open(const char *name);

#endif
