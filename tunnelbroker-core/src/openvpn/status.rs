//! OpenVPN's client list: the reply to the management command `status 3`
//! and the status file (`--status FILE` with `--status-version 2` or `3`),
//! parsed and emitted side by side.
//!
//! The format (OpenVPN 2.6, `multi_print_status` in its `multi.c`): one
//! record per line, fields separated by a tab (version 3) or a comma
//! (version 2). A `HEADER` line names the fields of the records of one
//! kind; this parser finds its columns by those names, never by position,
//! so both field lists of 2.6 (with or without `Data Channel Cipher`,
//! `Client ID`, `Peer ID`) and fields added later read the same (version
//! 2 shown; version 3 has a tab where this has a comma):
//!
//! ```text
//! TITLE,OpenVPN 2.6.14 x86_64-pc-linux-gnu
//! TIME,2026-12-01 21:00:00,1764622800
//! HEADER,CLIENT_LIST,Common Name,Real Address,Virtual Address,Virtual IPv6 Address,Bytes Received,Bytes Sent,Connected Since,Connected Since (time_t),Username,Client ID,Peer ID,Data Channel Cipher
//! CLIENT_LIST,alice,198.18.0.2:51234,,2001:db8:0:f100::f101:2,1234,5678,2026-12-01 20:59:00,1764622740,UNDEF,0,0,AES-256-GCM
//! END
//! ```
//!
//! Contract: [`parse_status`] never panics, on any text. It fails (one
//! line, naming the line) on what OpenVPN never writes: a client record
//! before its header, a header without a needed column, a record shorter
//! than its header, a number or address that does not parse. Records of a
//! client that has not finished its TLS handshake (common name `UNDEF`)
//! are skipped: they are no session yet. Other kinds of records
//! (`ROUTING_TABLE`, `GLOBAL_STATS`, ...) are ignored.

use std::net::{IpAddr, SocketAddr};

use time::OffsetDateTime;

use crate::error::{Error, Result, shown};

/// One live session of an OpenVPN server, as its client list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    /// The certificate's common name (the client ID, for every certificate
    /// this broker issued).
    pub common_name: String,
    /// The client's real source address and port.
    pub real_address: SocketAddr,
    /// The tunnel addresses OpenVPN gave the client (IPv4 and IPv6; empty
    /// when it gave none).
    pub virtual_addresses: Vec<IpAddr>,
    /// When the session started (whole seconds).
    pub connected_since: OffsetDateTime,
    /// Bytes the server received from the client.
    pub bytes_received: u64,
    /// Bytes the server sent to the client.
    pub bytes_sent: u64,
}

/// The longest status text read (16 MiB: some 100,000 clients).
const MAX_TEXT: usize = 16 << 20;

/// The longest common name kept (X.509 allows 64 characters).
const MAX_CN: usize = 256;

/// The live sessions in OpenVPN's client list: the reply to `status 3`
/// (with or without its final `END`) or a status file of version 2 or 3.
///
/// ```
/// use tunnelbroker_core::openvpn::parse_status;
/// let text = "TITLE\tOpenVPN 2.6.14\n\
///     HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received\tBytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher\n\
///     CLIENT_LIST\talice\t198.18.0.2:51234\t\t2001:db8:0:f100::f101:2\t1234\t5678\t2026-12-01 20:59:00\t1764622740\tUNDEF\t0\t0\tAES-256-GCM\n\
///     END\n";
/// let live = parse_status(text)?;
/// assert_eq!(live[0].common_name, "alice");
/// assert_eq!(live[0].real_address.to_string(), "198.18.0.2:51234");
/// assert_eq!(live[0].virtual_addresses[0].to_string(), "2001:db8:0:f100::f101:2");
/// assert_eq!((live[0].bytes_received, live[0].bytes_sent), (1234, 5678));
/// assert_eq!(live[0].connected_since.unix_timestamp(), 1764622740);
///
/// // A client record before its header is refused.
/// assert!(parse_status("CLIENT_LIST\talice\t198.18.0.2:1\n").is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
pub fn parse_status(text: &str) -> Result<Vec<LiveSession>> {
    if text.len() > MAX_TEXT {
        return Err(bad(0, "", format!("longer than {} MiB", MAX_TEXT >> 20)));
    }
    let mut columns: Option<Columns> = None;
    let mut out = Vec::new();
    for (n, line) in reply_lines(text) {
        let sep = if line.contains('\t') { '\t' } else { ',' };
        let fields: Vec<&str> = line.split(sep).collect();
        match fields.as_slice() {
            ["HEADER", "CLIENT_LIST", names @ ..] => columns = Some(Columns::find(n, line, names)?),
            ["CLIENT_LIST", values @ ..] => {
                let Some(c) = &columns else {
                    return Err(bad(n, line, "a client record before its HEADER line"));
                };
                if let Some(s) = c.session(n, line, values)? {
                    out.push(s);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The client list in OpenVPN's `status 3` format (tab-separated, with the
/// 2.6 field list and a final `END`), which [`parse_status`] reads back.
///
/// ```
/// use tunnelbroker_core::openvpn::{LiveSession, parse_status, status_text};
/// let s = LiveSession {
///     common_name: "alice".into(),
///     real_address: "[2001:db8::2]:1194".parse().unwrap(),
///     virtual_addresses: vec!["2001:db8:0:f1ff::1".parse().unwrap()],
///     connected_since: time::OffsetDateTime::from_unix_timestamp(1764622740).unwrap(),
///     bytes_received: 1,
///     bytes_sent: 2,
/// };
/// assert_eq!(parse_status(&status_text(std::slice::from_ref(&s)))?, [s]);
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
pub fn status_text(sessions: &[LiveSession]) -> String {
    let mut out = String::from(
        "TITLE\tOpenVPN 2.6 (tunnelbroker)\n\
         HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received\tBytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher\n",
    );
    for (i, s) in sessions.iter().enumerate() {
        let v4 = s.virtual_addresses.iter().find(|a| a.is_ipv4());
        let v6 = s.virtual_addresses.iter().find(|a| a.is_ipv6());
        let show = |a: Option<&IpAddr>| a.map(ToString::to_string).unwrap_or_default();
        let since = s.connected_since;
        out.push_str(&format!(
            "CLIENT_LIST\t{}\t{}\t{}\t{}\t{}\t{}\t{:04}-{:02}-{:02} {:02}:{:02}:{:02}\t{}\tUNDEF\t{i}\t{i}\tAES-256-GCM\n",
            s.common_name,
            s.real_address,
            show(v4),
            show(v6),
            s.bytes_received,
            s.bytes_sent,
            since.year(),
            u8::from(since.month()),
            since.day(),
            since.hour(),
            since.minute(),
            since.second(),
            since.unix_timestamp(),
        ));
    }
    out.push_str("END\n");
    out
}

/// Where the fields a session needs are in a `CLIENT_LIST` record.
struct Columns {
    common_name: usize,
    real_address: usize,
    virtual_v4: Option<usize>,
    virtual_v6: Option<usize>,
    bytes_received: usize,
    bytes_sent: usize,
    since: usize,
    width: usize,
}

impl Columns {
    fn find(n: usize, line: &str, names: &[&str]) -> Result<Columns> {
        let at = |name: &str| names.iter().position(|c| c.trim() == name);
        let need = |name: &str| {
            at(name).ok_or_else(|| bad(n, line, format!("the header has no {name:?} column")))
        };
        let common_name = need("Common Name")?;
        let real_address = need("Real Address")?;
        let bytes_received = need("Bytes Received")?;
        let bytes_sent = need("Bytes Sent")?;
        let since = need("Connected Since (time_t)")?;
        let virtual_v4 = at("Virtual Address");
        let virtual_v6 = at("Virtual IPv6 Address");
        let width = [common_name, real_address, bytes_received, bytes_sent, since]
            .into_iter()
            .chain(virtual_v4)
            .chain(virtual_v6)
            .max()
            .unwrap_or(0)
            + 1;
        Ok(Columns {
            common_name,
            real_address,
            virtual_v4,
            virtual_v6,
            bytes_received,
            bytes_sent,
            since,
            width,
        })
    }

    fn session(&self, n: usize, line: &str, values: &[&str]) -> Result<Option<LiveSession>> {
        if values.len() < self.width {
            return Err(bad(
                n,
                line,
                format!(
                    "{} fields, fewer than the header's {}",
                    values.len(),
                    self.width
                ),
            ));
        }
        let common_name = values[self.common_name];
        if common_name == "UNDEF" {
            return Ok(None);
        }
        if common_name.is_empty()
            || common_name.len() > MAX_CN
            || common_name.chars().any(char::is_control)
        {
            return Err(bad(
                n,
                line,
                "an empty, overlong or unprintable common name",
            ));
        }
        let real_address = parse_real_address(values[self.real_address])
            .ok_or_else(|| bad(n, line, "the real address does not parse"))?;
        let mut virtual_addresses = Vec::new();
        for i in [self.virtual_v4, self.virtual_v6].into_iter().flatten() {
            let v = values[i].trim();
            if !v.is_empty() {
                virtual_addresses.push(
                    v.parse::<IpAddr>()
                        .map_err(|_| bad(n, line, "a virtual address does not parse"))?,
                );
            }
        }
        let number = |i: usize, what: &str| {
            values[i]
                .trim()
                .parse::<u64>()
                .map_err(|_| bad(n, line, format!("{what} is not a number")))
        };
        let bytes_received = number(self.bytes_received, "Bytes Received")?;
        let bytes_sent = number(self.bytes_sent, "Bytes Sent")?;
        let since = i64::try_from(number(self.since, "Connected Since (time_t)")?)
            .ok()
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
            .ok_or_else(|| bad(n, line, "Connected Since (time_t) is out of range"))?;
        Ok(Some(LiveSession {
            common_name: common_name.to_owned(),
            real_address,
            virtual_addresses,
            connected_since: since,
            bytes_received,
            bytes_sent,
        }))
    }
}

/// What a per-client (point-to-point) instance tells of its one session:
/// it has no client list, but its `state` says whether a peer is connected,
/// since when and from where, and its `status` counts the bytes of its
/// link (see [`parse_state`] and [`parse_link_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLink {
    /// The peer's real source address and port.
    pub real_address: SocketAddr,
    /// When the instance reached CONNECTED (whole seconds).
    pub connected_since: OffsetDateTime,
}

/// The longest reply of `state` or of a point-to-point `status` read.
const MAX_P2P_TEXT: usize = 64 << 10;

/// The connected peer of a point-to-point instance, from its reply to the
/// management command `state` (OpenVPN's `management-notes.txt`: up to 9
/// comma-separated fields, `time,STATE,description,tun IPv4,remote
/// address,remote port,local address,local port,tun IPv6`; the last state
/// line counts, `>STATE:` notifications and `END` are skipped). `None`
/// when the state is not `CONNECTED` (waiting for its peer, reconnecting).
///
/// ```
/// use tunnelbroker_core::openvpn::parse_state;
/// let text = "1764622740,CONNECTED,SUCCESS,,198.18.0.2,51234,198.18.0.1,5000,2001:db8::1\nEND\n";
/// let peer = parse_state(text)?.unwrap();
/// assert_eq!(peer.real_address.to_string(), "198.18.0.2:51234");
/// assert_eq!(peer.connected_since.unix_timestamp(), 1764622740);
/// assert!(parse_state("1764622740,RECONNECTING,ping-restart,,,,,,\nEND\n")?.is_none());
/// // What OpenVPN never writes is refused, in one line.
/// let err = parse_state("1764622740,CONNECTED,SUCCESS\u{0}\nEND\n").unwrap_err();
/// assert_eq!(err.to_string().lines().count(), 1);
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
pub fn parse_state(text: &str) -> Result<Option<PeerLink>> {
    let lines = p2p_lines(text, "state")?;
    let Some(&(n, line)) = lines.last() else {
        return Err(bad(0, "", "the state reply has no state line"));
    };
    let fields: Vec<&str> = line.split(',').collect();
    if fields.len() < 2 || fields.len() > 9 {
        return Err(bad(
            n,
            line,
            "a state line has 2 to 9 comma-separated fields",
        ));
    }
    let since = fields[0]
        .parse::<i64>()
        .ok()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .ok_or_else(|| bad(n, line, "the time is not a unix time"))?;
    let state = fields[1];
    if state.is_empty()
        || state.len() > 32
        || !state.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
    {
        return Err(bad(n, line, "the state name is not a word in capitals"));
    }
    if state != "CONNECTED" {
        return Ok(None);
    }
    let (Some(host), Some(port)) = (fields.get(4), fields.get(5)) else {
        return Err(bad(
            n,
            line,
            "CONNECTED without the remote address and port",
        ));
    };
    let ip = host
        .parse::<IpAddr>()
        .map_err(|_| bad(n, line, "the remote address does not parse"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| bad(n, line, "the remote port does not parse"))?;
    Ok(Some(PeerLink {
        real_address: SocketAddr::new(ip.to_canonical(), port),
        connected_since: since,
    }))
}

/// The bytes a point-to-point instance received and sent on its link
/// (`TCP/UDP read bytes`, `TCP/UDP write bytes`: what a shared server's
/// client list counts as Bytes Received and Sent), from its reply to the
/// management command `status`:
///
/// ```
/// use tunnelbroker_core::openvpn::parse_link_bytes;
/// let text = "OpenVPN STATISTICS\nUpdated,2026-12-02 01:00:00\n\
///     TUN/TAP read bytes,100\nTUN/TAP write bytes,200\n\
///     TCP/UDP read bytes,1234\nTCP/UDP write bytes,5678\nAuth read bytes,300\nEND\n";
/// assert_eq!(parse_link_bytes(text)?, (1234, 5678));
/// assert!(parse_link_bytes("TCP/UDP read bytes,-1\nEND\n").is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
pub fn parse_link_bytes(text: &str) -> Result<(u64, u64)> {
    let mut read = None;
    let mut write = None;
    for (n, line) in p2p_lines(text, "status")? {
        let sep = if line.contains('\t') { '\t' } else { ',' };
        let Some((name, value)) = line.split_once(sep) else {
            continue;
        };
        let slot = match name {
            "TCP/UDP read bytes" => &mut read,
            "TCP/UDP write bytes" => &mut write,
            _ => continue,
        };
        if slot.is_some() {
            return Err(bad(n, line, format!("{name} twice")));
        }
        *slot = Some(
            value
                .parse::<u64>()
                .map_err(|_| bad(n, line, format!("{name} is not a number")))?,
        );
    }
    match (read, write) {
        (Some(r), Some(w)) => Ok((r, w)),
        _ => Err(bad(
            0,
            "",
            "the status reply has no TCP/UDP read and write bytes (not a point-to-point instance?)",
        )),
    }
}

/// The lines of a reply or status file up to `END`, numbered from 1,
/// without a final carriage return.
fn reply_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .take_while(|line| *line != "END")
        .enumerate()
        .map(|(i, line)| (i + 1, line))
}

/// The lines of a point-to-point reply up to `END`, numbered, without
/// notifications (`>...`); refused when overlong or when a line holds a
/// control character other than a tab (a NUL, an escape sequence).
fn p2p_lines<'a>(text: &'a str, what: &str) -> Result<Vec<(usize, &'a str)>> {
    if text.len() > MAX_P2P_TEXT {
        return Err(bad(
            0,
            "",
            format!("the {what} reply is longer than {} KiB", MAX_P2P_TEXT >> 10),
        ));
    }
    let mut out = Vec::new();
    for (n, line) in reply_lines(text) {
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(bad(n, line, "a control character"));
        }
        if line.starts_with('>') || line.is_empty() {
            continue;
        }
        out.push((n, line));
    }
    Ok(out)
}

/// A real address as OpenVPN prints it: `198.18.0.2:51234`,
/// `[2001:db8::2]:51234`, `2001:db8::2:51234` (2.6 prints IPv6 without
/// brackets: the port is what follows the last colon), with an optional
/// protocol in front (`udp6:`, `tcp4-server:`). An IPv4-mapped IPv6
/// address is the IPv4 address it maps.
fn parse_real_address(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    let text = match text.split_once(':') {
        Some((proto, rest))
            if proto.starts_with("udp") || proto.starts_with("tcp") || proto.starts_with("AF_") =>
        {
            rest
        }
        _ => text,
    };
    let text = text.strip_prefix("[AF_INET6]").unwrap_or(text);
    let addr = match text.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            let (ip, port) = text.rsplit_once(':')?;
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            SocketAddr::new(ip.parse().ok()?, port.parse().ok()?)
        }
    };
    Some(SocketAddr::new(addr.ip().to_canonical(), addr.port()))
}

fn bad(n: usize, line: &str, reason: impl Into<String>) -> Error {
    Error::InvalidField {
        field: "openvpn status",
        input: shown(line),
        reason: if n == 0 {
            reason.into()
        } else {
            format!("line {n}: {}", reason.into())
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V26: &str = "TITLE\tOpenVPN 2.6.14 x86_64-pc-linux-gnu [SSL (OpenSSL)] [LZO] [LZ4] [EPOLL] [PKCS11] [MH/PKTINFO] [AEAD] [DCO]\n\
TIME\t2026-12-01 21:00:00\t1764622800\n\
HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received\tBytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher\n\
CLIENT_LIST\talice\t198.18.0.2:51234\t\t2001:db8:0:f100::f101:2\t1234\t5678\t2026-12-01 20:59:00\t1764622740\tUNDEF\t0\t0\tAES-256-GCM\n\
CLIENT_LIST\tbob\t2001:db8:1::2:40000\t10.8.0.3\t2001:db8:0:f1ff::1\t0\t0\t2026-12-01 20:59:30\t1764622770\tUNDEF\t1\t1\tCHACHA20-POLY1305\n\
CLIENT_LIST\tUNDEF\t198.18.0.9:1\t\t\t0\t0\t2026-12-01 20:59:30\t1764622770\tUNDEF\t2\t2\tnone\n\
HEADER\tROUTING_TABLE\tVirtual Address\tCommon Name\tReal Address\tLast Ref\tLast Ref (time_t)\n\
ROUTING_TABLE\t2001:db8:0:f101::/64\talice\t198.18.0.2:51234\t2026-12-01 21:00:00\t1764622800\n\
GLOBAL_STATS\tMax bcast/mcast queue length\t0\n\
GLOBAL_STATS\tdco_enabled\t0\n\
END\n";

    #[test]
    fn the_26_client_list_is_read_by_its_header() {
        let live = parse_status(V26).unwrap();
        assert_eq!(live.len(), 2, "{live:?}");
        assert_eq!(live[1].common_name, "bob");
        assert_eq!(
            live[1].real_address,
            "[2001:db8:1::2]:40000".parse().unwrap()
        );
        assert_eq!(
            live[1].virtual_addresses,
            [
                "10.8.0.3".parse::<IpAddr>().unwrap(),
                "2001:db8:0:f1ff::1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn an_older_field_list_and_the_comma_version_read_the_same() {
        // 2.5/early 2.6: no Client ID, Peer ID or cipher; columns in another order.
        let text = "HEADER,CLIENT_LIST,Common Name,Real Address,Virtual Address,Virtual IPv6 Address,Bytes Sent,Bytes Received,Connected Since,Connected Since (time_t),Username\n\
CLIENT_LIST,alice,198.18.0.2:51234,,2001:db8:0:f100::f101:2,5678,1234,2026-12-01 20:59:00,1764622740,UNDEF\n";
        let live = parse_status(text).unwrap();
        assert_eq!((live[0].bytes_received, live[0].bytes_sent), (1234, 5678));
        assert_eq!(
            live,
            parse_status(&V26.replace("\t0\t0\tAES-256-GCM", "")).unwrap()[..1]
        );
    }

    #[test]
    fn real_addresses_in_every_form() {
        for (text, want) in [
            ("198.18.0.2:51234", "198.18.0.2:51234"),
            ("[2001:db8::2]:1194", "[2001:db8::2]:1194"),
            ("2001:db8::2:1194", "[2001:db8::2]:1194"),
            ("udp6:[2001:db8::2]:1194", "[2001:db8::2]:1194"),
            ("tcp4-server:198.18.0.2:443", "198.18.0.2:443"),
            ("[AF_INET6]::ffff:198.18.0.2:5000", "198.18.0.2:5000"),
            ("::ffff:198.18.0.2:5000", "198.18.0.2:5000"),
        ] {
            assert_eq!(
                parse_real_address(text),
                Some(want.parse().unwrap()),
                "{text}"
            );
        }
        for text in [
            "",
            "198.18.0.2",
            "198.18.0.2:",
            "x:1",
            "2001:db8::2",
            "1.2.3.4:99999",
            "[::1]:-1",
        ] {
            assert_eq!(parse_real_address(text), None, "{text:?}");
        }
    }

    #[test]
    fn hostile_status_text_is_refused_in_one_line_never_a_panic() {
        let header = "HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tBytes Received\tBytes Sent\tConnected Since (time_t)\n";
        for (text, needle) in [
            (
                "CLIENT_LIST\ta\t1.2.3.4:1\t0\t0\t0\n".to_owned(),
                "before its HEADER",
            ),
            (
                "HEADER\tCLIENT_LIST\tCommon Name\n".to_owned(),
                "no \"Real Address\"",
            ),
            (
                format!("{header}CLIENT_LIST\ta\t1.2.3.4:1\t0\n"),
                "fewer than",
            ),
            (
                format!("{header}CLIENT_LIST\ta\tnowhere\t0\t0\t0\n"),
                "real address",
            ),
            (
                format!("{header}CLIENT_LIST\ta\t1.2.3.4:1\t-1\t0\t0\n"),
                "not a number",
            ),
            (
                format!("{header}CLIENT_LIST\ta\t1.2.3.4:1\t0\t0\t99999999999999999\n"),
                "out of range",
            ),
            (
                format!("{header}CLIENT_LIST\t\t1.2.3.4:1\t0\t0\t0\n"),
                "common name",
            ),
            (
                format!("{header}CLIENT_LIST\ta\u{1b}[2J\t1.2.3.4:1\t0\t0\t0\n"),
                "common name",
            ),
            (
                format!(
                    "{header}CLIENT_LIST\t{}\t1.2.3.4:1\t0\t0\t0\n",
                    "x".repeat(300)
                ),
                "common name",
            ),
            (
                format!("{header}CLIENT_LIST\t;rm -rf /\t1.2.3.4:1\t0\t0\t0\n"),
                "",
            ),
        ] {
            match parse_status(&text) {
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.contains(needle), "{msg}");
                    assert_eq!(msg.lines().count(), 1, "{msg}");
                    assert!(!msg.contains('\u{1b}'), "{msg}");
                }
                // Shell metacharacters are only text here.
                Ok(live) => assert_eq!(live[0].common_name, ";rm -rf /"),
            }
        }
        assert!(parse_status("").unwrap().is_empty());
        assert!(parse_status("END\nCLIENT_LIST\tjunk\n").unwrap().is_empty());
        assert!(
            parse_status("\u{0}\u{ffff}ünï\n\t\t,,\n")
                .unwrap()
                .is_empty()
        );
        let huge = "x".repeat(MAX_TEXT + 1);
        assert!(parse_status(&huge).unwrap_err().to_string().contains("MiB"));
    }

    #[test]
    fn emitted_text_reads_back() {
        let live = parse_status(V26).unwrap();
        assert_eq!(parse_status(&status_text(&live)).unwrap(), live);
    }
}
