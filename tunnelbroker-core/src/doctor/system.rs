//! The machine `doctor` looks at, behind a trait so that tests can feed it
//! any state, and the parsing of what `ip -j` prints.

use std::net::Ipv6Addr;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::{Command, Stdio};

use ipnet::Ipv6Net;
use serde_json::Value;
use time::OffsetDateTime;

/// What a command printed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOutput {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Read access to the machine. `doctor` runs only `openvpn --version`,
/// `ip -j addr`, `ip -j -6 route` and one `ping -6 -c1 -W2`, and reads only
/// files under `/proc` and `/dev`.
pub trait System {
    /// Runs a program; `None` when it cannot be started (not installed).
    fn run(&self, program: &str, args: &[&str]) -> Option<CommandOutput>;
    /// Reads a (small, `/proc`) file; `None` when it does not exist or cannot be read.
    fn read(&self, path: &str) -> Option<String>;
    /// Whether `path` is a character device; `None` when it does not exist.
    fn is_char_device(&self, path: &str) -> Option<bool>;
    /// The current time.
    fn now(&self) -> OffsetDateTime;
}

/// The real machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveSystem;

impl System for LiveSystem {
    fn run(&self, program: &str, args: &[&str]) -> Option<CommandOutput> {
        let out = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .env("LC_ALL", "C")
            .output()
            .ok()?;
        Some(CommandOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    fn is_char_device(&self, path: &str) -> Option<bool> {
        std::fs::metadata(Path::new(path))
            .ok()
            .map(|m| m.file_type().is_char_device())
    }

    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// An interface as `ip -j addr` shows it (IPv6 addresses only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interface {
    pub name: String,
    /// `none` for tun devices, `ether`, `loopback`, ...
    pub link_type: String,
    pub addrs: Vec<Ipv6Net>,
}

impl Interface {
    pub fn has_addr(&self, addr: Ipv6Addr) -> bool {
        self.addrs.iter().any(|a| a.addr() == addr)
    }
}

/// A route as `ip -j -6 route` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub dst: Ipv6Net,
    pub dev: Option<String>,
    pub metric: u64,
    /// `unicast` unless the route is `unreachable`, `blackhole`, ...
    pub kind: String,
}

/// Parses `ip -j addr`; unknown fields and non-IPv6 addresses are ignored.
pub(crate) fn parse_interfaces(json: &str) -> Result<Vec<Interface>, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let list = v.as_array().ok_or("not a JSON list")?;
    let mut out = Vec::new();
    for i in list {
        let Some(name) = i.get("ifname").and_then(Value::as_str) else {
            continue;
        };
        let link_type = i
            .get("link_type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut addrs = Vec::new();
        for a in i
            .get("addr_info")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if a.get("family").and_then(Value::as_str) != Some("inet6") {
                continue;
            }
            let local = a
                .get("local")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok());
            let len = a
                .get("prefixlen")
                .and_then(Value::as_u64)
                .and_then(|l| u8::try_from(l).ok());
            if let (Some(local), Some(len)) = (local, len)
                && let Ok(net) = Ipv6Net::new(local, len)
            {
                addrs.push(net);
            }
        }
        out.push(Interface {
            name: name.to_owned(),
            link_type,
            addrs,
        });
    }
    Ok(out)
}

/// Parses `ip -j -6 route`; `default` is `::/0`, a bare address a /128.
pub(crate) fn parse_routes(json: &str) -> Result<Vec<Route>, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let list = v.as_array().ok_or("not a JSON list")?;
    let mut out = Vec::new();
    for r in list {
        let Some(dst) = r.get("dst").and_then(Value::as_str) else {
            continue;
        };
        let dst = if dst == "default" {
            Ipv6Net::default()
        } else if let Ok(n) = dst.parse::<Ipv6Net>() {
            n
        } else if let Ok(a) = dst.parse::<Ipv6Addr>() {
            Ipv6Net::from(a)
        } else {
            continue;
        };
        out.push(Route {
            dst: dst.trunc(),
            dev: r.get("dev").and_then(Value::as_str).map(str::to_owned),
            metric: r.get("metric").and_then(Value::as_u64).unwrap_or(0),
            kind: r
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("unicast")
                .to_owned(),
        });
    }
    Ok(out)
}

/// The route the kernel would pick for `addr` from the main table: the
/// longest matching prefix, then the lowest metric.
pub(crate) fn best_route(routes: &[Route], addr: Ipv6Addr) -> Option<&Route> {
    routes
        .iter()
        .filter(|r| r.dst.contains(&addr))
        .min_by_key(|r| (std::cmp::Reverse(r.dst.prefix_len()), r.metric))
}

/// `major.minor` from `openvpn --version` ("OpenVPN 2.6.14 x86_64-...").
pub(crate) fn openvpn_version(text: &str) -> Option<(u32, u32, String)> {
    let first = text
        .lines()
        .find(|l| l.trim_start().starts_with("OpenVPN "))?;
    let v = first.split_whitespace().nth(1)?;
    let mut parts = v.split(['.', '_', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor_text: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let minor = minor_text.parse().ok()?;
    Some((major, minor, v.chars().take(32).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_json_is_parsed_leniently() {
        let addrs = r#"[{"ifindex":1,"ifname":"lo","link_type":"loopback","addr_info":[
            {"family":"inet","local":"127.0.0.1","prefixlen":8},
            {"family":"inet6","local":"::1","prefixlen":128}]},
          {"ifname":"tun0","link_type":"none","addr_info":[
            {"family":"inet6","local":"2001:db8:0:f100::f1ab:2","prefixlen":112},
            {"family":"inet6","local":"bogus","prefixlen":64},
            {"family":"inet6","local":"::2","prefixlen":300}]},
          {"ifindex":3}, 7, "x"]"#;
        let i = parse_interfaces(addrs).unwrap();
        assert_eq!(i.len(), 2);
        assert_eq!(i[1].addrs.len(), 1);
        assert!(i[1].has_addr("2001:db8:0:f100::f1ab:2".parse().unwrap()));
        assert!(parse_interfaces("{}").is_err());
        assert!(parse_interfaces("not json").is_err());

        let routes = r#"[{"dst":"default","dev":"eth0","metric":1024},
            {"dst":"2000::/4","dev":"tun0","metric":1024},
            {"dst":"2001:db8::5","dev":"eth1"},
            {"dst":"2001:db8::/32","type":"unreachable","dev":"lo"},
            {"dst":"junk"}, {"nodst":1}]"#;
        let r = parse_routes(routes).unwrap();
        assert_eq!(r.len(), 4);
        let best = best_route(&r, "2a00::1".parse().unwrap()).unwrap();
        assert_eq!(best.dev.as_deref(), Some("tun0"));
        let best = best_route(&r, "2001:db8::5".parse().unwrap()).unwrap();
        assert_eq!(best.dst.prefix_len(), 128);
        let best = best_route(&r, "2001:db8::6".parse().unwrap()).unwrap();
        assert_eq!(best.kind, "unreachable");
        assert_eq!(best_route(&r[1..2], "fe80::1".parse().unwrap()), None);
    }

    #[test]
    fn openvpn_versions() {
        let v =
            openvpn_version("OpenVPN 2.6.14 x86_64-pc-linux-gnu [SSL (OpenSSL)]\nlibrary versions")
                .unwrap();
        assert_eq!((v.0, v.1), (2, 6));
        assert_eq!(v.2, "2.6.14");
        assert_eq!(
            openvpn_version("OpenVPN 2.5_git x").map(|v| (v.0, v.1)),
            Some((2, 5))
        );
        assert_eq!(
            openvpn_version("OpenVPN 3.0").map(|v| (v.0, v.1)),
            Some((3, 0))
        );
        for bad in ["", "OpenVPN", "OpenVPN x.y", "openvpn 2.6", "OpenVPN 2"] {
            assert!(openvpn_version(bad).is_none(), "{bad}");
        }
    }
}
