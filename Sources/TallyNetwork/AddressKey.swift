import NIOCore

/// The key per-address limits are kept under, on the peer port and the HTTP API alike:
/// the remote IPv4 address, or the /64 prefix of an IPv6 one (one host or customer
/// routinely holds a whole /64, so caps keyed by the full IPv6 address would cap
/// nothing: each of its 2^64 addresses would get a full cap). IPv4-mapped IPv6
/// (`::ffff:a.b.c.d`, a dual-stack listener) counts as the IPv4 address. "unknown"
/// for a channel without an IP address.
public func addressKey(_ address: SocketAddress?) -> String {
    guard case .v6(let v6) = address else { return address?.ipAddress ?? "unknown" }
    let bytes = withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
    if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
        return bytes[12...].map(String.init).joined(separator: ".")
    }
    let groups = stride(from: 0, to: 8, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
    return groups.joined(separator: ":") + "::/64"
}
