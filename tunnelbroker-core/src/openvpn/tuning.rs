//! Data-channel and sizing defaults of the rendered configurations
//! (issue 19): what data channel offload (DCO) needs, socket buffers that
//! keep the UDP socket from dropping datagrams at speed, and a shared
//! server sized for its clients and for a reconnection storm.
//!
//! * `data-ciphers AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305`: AEAD only
//!   (OpenVPN 2.6's default list, written out so that no older default or
//!   fallback cipher comes back; DCO accepts nothing else);
//! * `allow-compression no`: no compression and no compression framing
//!   (2.6's default, written for older peers; DCO refuses compression);
//! * `sndbuf`/`rcvbuf` 4 MiB ([`SOCKET_BUFFER`]): the kernel caps them at
//!   `net.core.wmem_max`/`rmem_max`, which must be raised on the host
//!   (docs/operator-guide.md, "Host settings at scale");
//! * `txqueuelen 4000` on the tun device ([`TX_QUEUE_LEN`]; Linux only:
//!   OpenVPN for Windows refuses the option);
//! * shared server: `topology subnet` (without it OpenVPN 2.6 disables
//!   DCO in server mode), `max-clients`, `connect-freq-initial` and
//!   `hash-size` from [`max_clients`].

use super::text::ConfigText;

/// The data-channel ciphers rendered (`data-ciphers`): AEAD only.
pub const DATA_CIPHERS: &str = "AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305";

/// The socket buffers rendered (`sndbuf`, `rcvbuf`), in bytes: 4 MiB.
pub const SOCKET_BUFFER: u32 = 4 << 20;

/// The tun device's transmit queue (`txqueuelen`), in packets: 4000 full
/// packets (6 MB at a 1500-byte MTU) hold what one TCP sender may have in
/// flight with Linux's largest default send buffer (`tcp_wmem` 4 MiB), so
/// a sender faster than OpenVPN meets a full queue, not a drop. A tun
/// device drops rather than pushing back; with 1,000 the client's tun
/// dropped 653 packets in 10 s of one stream (each a TCP retransmit), with
/// 3,000 and 4,000 none (`scripts/bench-tunnel --txqueuelen N`). The price
/// is queueing delay under full load, at most the queue at the tunnel's rate.
pub const TX_QUEUE_LEN: u32 = 4000;

/// The window of `connect-freq-initial`, in seconds.
pub const CONNECT_WINDOW: u32 = 10;

/// The smallest `max-clients` rendered: OpenVPN's own default.
pub const MIN_MAX_CLIENTS: u32 = 1024;

/// Adds the data-channel lines every configuration gets: `data-ciphers`,
/// `allow-compression no`, `sndbuf`, `rcvbuf` and, on Linux,
/// `txqueuelen`.
pub(crate) fn data_channel(c: &mut ConfigText, linux: bool) {
    c.opt_args("data-ciphers", [DATA_CIPHERS])
        .opt_args("allow-compression", ["no"])
        .opt_args("sndbuf", [SOCKET_BUFFER])
        .opt_args("rcvbuf", [SOCKET_BUFFER]);
    if linux {
        c.opt_args("txqueuelen", [TX_QUEUE_LEN]);
    }
}

/// Adds a shared server's sizing lines for `max` clients:
/// `max-clients MAX`, `connect-freq-initial MAX 10` (every client may
/// start its handshake within ten seconds, as after a restart, where
/// OpenVPN's default of 100 per 10 s drops most of a storm) and `hash-size
/// MAX MAX` (OpenVPN's 256 buckets make long chains at thousands of
/// clients).
pub(crate) fn sizing(c: &mut ConfigText, max: u32) {
    c.opt_args("max-clients", [max])
        .opt_args("connect-freq-initial", [max, CONNECT_WINDOW])
        .opt_args("hash-size", [max, max]);
}

/// The `max-clients` of a shared server with `clients` clients now, whose
/// pool can assign `capacity` clients: room for twice as many as now, so
/// that adding clients seldom changes the configuration (a new value
/// takes a restart), rounded up to a power of two; at least
/// [`MIN_MAX_CLIENTS`], at most `capacity` and 2^30.
///
/// ```
/// use tunnelbroker_core::openvpn::max_clients;
/// assert_eq!(max_clients(0, u64::MAX), 1024);
/// assert_eq!(max_clients(600, u64::MAX), 2048);
/// assert_eq!(max_clients(10_000, u64::MAX), 32768);
/// assert_eq!(max_clients(10_000, 20_000), 20_000);
/// assert_eq!(max_clients(1, 10), 10);
/// ```
pub fn max_clients(clients: usize, capacity: u64) -> u32 {
    const MOST: u64 = 1 << 30;
    let wanted = (clients as u64)
        .saturating_mul(2)
        .max(u64::from(MIN_MAX_CLIENTS))
        .min(MOST)
        .next_power_of_two();
    let max = wanted.min(capacity.max(1)).min(MOST);
    u32::try_from(max).unwrap_or(u32::MAX)
}
