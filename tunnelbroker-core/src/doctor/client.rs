//! `doctor`: the client-side checks.

use std::net::Ipv6Addr;
use std::path::Path;

use time::Duration;

use super::Report;
use super::system::{self, Interface, Route, System};
use crate::error::shown;
use crate::openvpn::LAN_INTERFACE_ENV;
use crate::openvpn::facts::BundleFacts;
use crate::openvpn::parse::{ClientConfigFile, Material};
use crate::pki::{Certificate, PrivateKey, Purpose, TlsCryptKey, TlsCryptV2ClientKey};
use crate::plan::ClientKind;

/// The address whose route decides whether "global IPv6 goes through the
/// tunnel" (any global unicast address would do; nothing is sent to it).
const GLOBAL_PROBE: Ipv6Addr = Ipv6Addr::new(0x2a00, 0, 0, 0, 0, 0, 0, 1);

/// What `doctor` may be told besides the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DoctorOptions {
    /// The LAN interface of a subnet client, instead of the one the
    /// configuration names (or `eth0`).
    pub lan_interface: Option<crate::openvpn::InterfaceName>,
    /// Whether to send the one `ping -6` to the server (default true).
    pub ping: bool,
    /// Warn when the certificate expires within this many days (default 30).
    pub expiry_warning_days: u32,
}

impl Default for DoctorOptions {
    fn default() -> Self {
        DoctorOptions {
            lan_interface: None,
            ping: true,
            expiry_warning_days: 30,
        }
    }
}

/// Checks a client: OpenVPN and the kernel, the configuration's material,
/// and, while the tunnel is up, addresses, routes, the server's answer and
/// (subnet clients) forwarding and the LAN. Never fails: a configuration
/// that cannot be read is a FAIL in the report.
///
/// ```
/// use tunnelbroker_core::doctor::{self, DoctorOptions, LiveSystem, Status};
/// let report = doctor::run(std::path::Path::new("/nonexistent.conf"), &DoctorOptions::default(), &LiveSystem);
/// assert_eq!(report.status_of("config"), Some(Status::Fail));
/// assert!(report.failed());
/// ```
pub fn run(config: &Path, options: &DoctorOptions, sys: &dyn System) -> Report {
    let mut r = Report::new(format!("tunnelbroker doctor: {}", config.display()));
    check_openvpn(sys, &mut r);
    check_kernel(sys, &mut r);
    let cfg = match ClientConfigFile::read(config) {
        Ok(c) => {
            r.pass("config", format!("{} parses", config.display()));
            Some(c)
        }
        Err(e) => {
            r.fail(
                "config",
                e.to_string(),
                "give the .conf (Linux) or .ovpn file of your extracted bundle",
            );
            None
        }
    };
    let Some(cfg) = cfg else {
        // Everything from `assignment` to `ping`, in CHECKS order (the
        // subnet checks need the kind, which is unknown).
        let after_config = CHECKS.iter().skip_while(|&&n| n != "assignment");
        for name in after_config.take_while(|&&n| n != "forwarding") {
            r.skip(name, "the configuration could not be read");
        }
        return r;
    };
    let facts = check_assignment(&cfg, &mut r);
    check_material(&cfg, facts.as_ref(), options, sys, &mut r);
    match facts {
        Some(f) => check_tunnel(&cfg, &f, options, sys, &mut r),
        None => r.skip("tunnel", "the expected addresses are unknown"),
    }
    r
}

fn check_openvpn(sys: &dyn System, r: &mut Report) {
    let install = "install OpenVPN 2.6 or later, e.g. `apt-get install openvpn`";
    let Some(out) = sys.run("openvpn", &["--version"]) else {
        r.fail(
            "openvpn",
            "openvpn is not installed (not found in PATH)",
            install,
        );
        return;
    };
    // `openvpn --version` exits 1 on many versions: read the text only.
    let text = format!("{}\n{}", out.stdout, out.stderr);
    match system::openvpn_version(&text) {
        Some((major, minor, v)) if (major, minor) >= (2, 6) => {
            r.pass("openvpn", format!("OpenVPN {v} is installed"));
        }
        Some((_, _, v)) => r.fail(
            "openvpn",
            format!("OpenVPN {} is too old: 2.6 or later is needed", shown(&v)),
            install,
        ),
        None => r.warn(
            "openvpn",
            "`openvpn --version` does not say which version it is",
            "check that `openvpn` is OpenVPN 2.6 or later",
        ),
    }
}

fn check_kernel(sys: &dyn System, r: &mut Report) {
    match sys.is_char_device("/dev/net/tun") {
        Some(true) => r.pass("tun-device", "/dev/net/tun exists"),
        Some(false) => r.fail(
            "tun-device",
            "/dev/net/tun is not a character device",
            "remove it and load the module: `modprobe tun`",
        ),
        None => r.fail(
            "tun-device",
            "/dev/net/tun does not exist",
            "load the module with `modprobe tun`; in a container, pass the device (--device /dev/net/tun)",
        ),
    }
    if sys.read("/proc/net/if_inet6").is_none() {
        r.fail(
            "ipv6",
            "the kernel has no IPv6 (/proc/net/if_inet6 is missing)",
            "boot without ipv6.disable=1 or load the ipv6 module",
        );
    } else if sys
        .read("/proc/sys/net/ipv6/conf/all/disable_ipv6")
        .is_some_and(|v| v.trim() == "1")
    {
        r.fail(
            "ipv6",
            "IPv6 is disabled (net.ipv6.conf.all.disable_ipv6 = 1)",
            "sysctl -w net.ipv6.conf.all.disable_ipv6=0",
        );
    } else {
        r.pass("ipv6", "the kernel has IPv6");
    }
}

fn check_assignment(cfg: &ClientConfigFile, r: &mut Report) -> Option<BundleFacts> {
    match cfg.facts() {
        Some((line, Ok(f))) => {
            // The facts line wins; a per-client configuration's own
            // `ifconfig-ipv6` must agree with it.
            match cfg.derived_facts() {
                Some(d) if (d.tunnel, d.server) != (f.tunnel, f.server) => r.fail(
                    "assignment",
                    format!(
                        "line {line} says tunnel address {} and server {}, but `ifconfig-ipv6` sets {} and {}",
                        f.tunnel, f.server, d.tunnel, d.server
                    ),
                    "the configuration was altered: get a fresh bundle from your broker",
                ),
                _ => r.pass("assignment", describe(&f)),
            }
            Some(f)
        }
        Some((line, Err(e))) => {
            r.fail(
                "assignment",
                format!("line {line}: {e}"),
                "the configuration was altered: get a fresh bundle from your broker",
            );
            None
        }
        None => match cfg.derived_facts() {
            Some(f) => {
                r.pass(
                    "assignment",
                    format!("{} (from ifconfig-ipv6)", describe(&f)),
                );
                Some(f)
            }
            None => {
                r.warn(
                    "assignment",
                    "the configuration does not say which addresses the client has",
                    "get a fresh bundle from your broker (it has a `# tunnelbroker-doctor:` line)",
                );
                None
            }
        },
    }
}

fn describe(f: &BundleFacts) -> String {
    let who =
        f.id.as_ref()
            .map(|i| format!("client {i}: "))
            .unwrap_or_default();
    match f.kind {
        ClientKind::Subnet => format!(
            "{who}subnet {}, tunnel address {}, server {}",
            f.prefix, f.tunnel, f.server
        ),
        ClientKind::Hermit => format!("{who}hermit {}, server {}", f.tunnel, f.server),
    }
}

fn load(cfg: &ClientConfigFile, m: Material) -> Result<(String, String), String> {
    match cfg.material(m) {
        None => Err(format!(
            "the configuration has no {0} (neither `{0} FILE` nor <{0}>)",
            m.option()
        )),
        Some((src, Err(e))) => Err(format!("{} ({src}): {e}", m.option())),
        Some((src, Ok(text))) => Ok((src, text)),
    }
}

fn check_material(
    cfg: &ClientConfigFile,
    facts: Option<&BundleFacts>,
    options: &DoctorOptions,
    sys: &dyn System,
    r: &mut Report,
) {
    let fresh = "get a fresh bundle from your broker";
    let now = sys.now();
    // CA: the issuing CA first, then (for an intermediate) its issuers.
    let mut chain = Vec::new();
    let ca = match load(cfg, Material::Ca).and_then(|(src, t)| {
        let mut certs =
            Certificate::all_from_pem(&t).map_err(|e| format!("CA certificate ({src}): {e}"))?;
        let first = certs.remove(0);
        chain = certs;
        Ok(first)
    }) {
        Ok(ca) if ca.info().purpose != Purpose::Ca => {
            r.fail(
                "ca",
                format!("{} is not a CA certificate", shown(&ca.info().common_name)),
                fresh,
            );
            None
        }
        Ok(ca) if !ca.info().valid_at(now) => {
            r.fail(
                "ca",
                format!(
                    "the CA certificate {} is not valid now (valid {} to {})",
                    shown(&ca.info().common_name),
                    ca.info().not_before.date(),
                    ca.info().not_after.date()
                ),
                "check the clock (`date -u`); if it is right, the broker must make a new CA",
            );
            Some(ca)
        }
        Ok(ca) => {
            r.pass("ca", format!("CA {}", shown(&ca.info().common_name)));
            Some(ca)
        }
        Err(e) => {
            r.fail("ca", e, fresh);
            None
        }
    };
    // Certificate
    let cert = match load(cfg, Material::Cert).and_then(|(src, t)| {
        Certificate::from_pem(&t).map_err(|e| format!("client certificate ({src}): {e}"))
    }) {
        Ok(c) => Some(c),
        Err(e) => {
            r.fail("certificate", e, fresh);
            None
        }
    };
    if let Some(cert) = &cert {
        let cn = cert.info().common_name.clone();
        let expected = facts.and_then(|f| f.id.as_ref());
        if cert.info().purpose == Purpose::Ca || cert.info().purpose == Purpose::Server {
            r.fail(
                "certificate",
                format!("{} is not a client certificate", shown(&cn)),
                fresh,
            );
        } else if let Some(Err(e)) = ca.as_ref().map(|ca| {
            cert.check_issued_by(ca).or_else(|e| {
                // Issued by a CA further up the file is fine for OpenVPN too.
                if chain.iter().any(|c| cert.check_issued_by(c).is_ok()) {
                    Ok(())
                } else {
                    Err(e)
                }
            })
        }) {
            r.fail(
                "certificate",
                format!("{e} (the bundle's CA)"),
                "the certificate and the CA come from different brokers: get a fresh bundle",
            );
        } else if let Some(id) = expected.filter(|id| id.as_str() != cn) {
            r.fail(
                "certificate",
                format!(
                    "the certificate is for {}, the configuration for {id}",
                    shown(&cn)
                ),
                "the certificate of another client was put in: get a fresh bundle",
            );
        } else if ca.is_none() {
            r.warn(
                "certificate",
                format!(
                    "certificate for {} (its CA could not be checked)",
                    shown(&cn)
                ),
                "fix the CA first",
            );
        } else {
            r.pass(
                "certificate",
                format!("certificate for {}, issued by the bundle's CA", shown(&cn)),
            );
        }
    } else {
        r.skip("validity", "no certificate to check");
    }
    // Key
    match load(cfg, Material::Key)
        .and_then(|(src, t)| PrivateKey::from_pem(&t).map_err(|e| format!("key ({src}): {e}")))
    {
        Err(e) => r.fail(
            "key",
            e,
            "a client that made its own key puts it next to the configuration as <id>.key (mode 0600)",
        ),
        Ok(key) => match &cert {
            Some(c) if !c.matches_key(&key) => r.fail(
                "key",
                format!(
                    "the key does not belong to the certificate of {} (is it another client's key?)",
                    shown(&c.info().common_name)
                ),
                "use the key from the same bundle as the certificate, or get a fresh bundle",
            ),
            Some(_) => r.pass("key", "the key belongs to the certificate"),
            None => r.skip("key", "no certificate to match the key with"),
        },
    }
    // Validity
    if let Some(c) = &cert {
        let i = c.info();
        if now < i.not_before {
            r.fail(
                "validity",
                format!("the certificate is not valid before {}", i.not_before),
                "check the clock (`date -u`)",
            );
        } else if now > i.not_after {
            r.fail(
                "validity",
                format!("the certificate expired on {}", i.not_after.date()),
                "ask your broker to renew it (`tunnelbroker client renew ID`) and install the new bundle",
            );
        } else {
            let left = i.not_after - now;
            if left < Duration::days(i64::from(options.expiry_warning_days)) {
                r.warn(
                    "validity",
                    format!(
                        "the certificate expires in {} days, on {}",
                        left.whole_days(),
                        i.not_after.date()
                    ),
                    "ask your broker to renew it soon",
                );
            } else {
                r.pass(
                    "validity",
                    format!("the certificate is valid until {}", i.not_after.date()),
                );
            }
        }
    }
    check_tls_crypt(cfg, r);
}

/// The control channel key: a `tls-crypt-v2` client key when the
/// configuration names one (the broker's default), else the shared
/// `tls-crypt` key; a configuration with both, or neither, fails.
fn check_tls_crypt(cfg: &ClientConfigFile, r: &mut Report) {
    let v1 = cfg.material(Material::TlsCrypt).is_some();
    let v2 = cfg.material(Material::TlsCryptV2).is_some();
    if v1 && v2 {
        r.fail(
            "tls-crypt",
            "the configuration has both a tls-crypt and a tls-crypt-v2 key",
            "OpenVPN uses one of them: get a fresh bundle",
        );
        return;
    }
    if v2 {
        let checked = load(cfg, Material::TlsCryptV2).and_then(|(src, t)| {
            TlsCryptV2ClientKey::parse(&t).map_err(|e| format!("tls-crypt-v2 ({src}): {e}"))
        });
        match checked {
            Ok(_) => r.pass(
                "tls-crypt",
                "the tls-crypt-v2 client key is well formed",
            ),
            Err(e) => r.fail(
                "tls-crypt",
                e,
                "the server refuses clients without a tls-crypt-v2 key of theirs: get a fresh bundle",
            ),
        }
        return;
    }
    match load(cfg, Material::TlsCrypt)
        .and_then(|(src, t)| TlsCryptKey::parse(&t).map_err(|e| format!("tls-crypt ({src}): {e}")))
    {
        Ok(_) => r.pass("tls-crypt", "the tls-crypt key is well formed"),
        Err(e) => r.fail(
            "tls-crypt",
            e,
            "the server refuses clients without its tls-crypt key: get a fresh bundle",
        ),
    }
}

fn check_tunnel(
    cfg: &ClientConfigFile,
    f: &BundleFacts,
    options: &DoctorOptions,
    sys: &dyn System,
    r: &mut Report,
) {
    let subnet_checks = ["forwarding", "lan-address", "prefix-owner"];
    let skip_rest = |r: &mut Report, why: &str, from: usize| {
        let mut names = vec!["route", "ping"];
        if f.kind == ClientKind::Subnet {
            names.extend(subnet_checks);
        }
        for n in &names[from.min(names.len())..] {
            r.skip(n, why);
        }
    };
    let ip = |args: &[&str]| -> Result<String, String> {
        match sys.run("ip", args) {
            None => Err("`ip` is not installed (apt-get install iproute2)".into()),
            Some(o) if !o.success => Err(format!(
                "`ip {}` failed: {}",
                args.join(" "),
                o.stderr.trim()
            )),
            Some(o) => Ok(o.stdout),
        }
    };
    let ifaces = match ip(&["-j", "addr"]).and_then(|t| system::parse_interfaces(&t)) {
        Ok(i) => i,
        Err(e) => {
            r.fail(
                "tunnel",
                format!("cannot read the interfaces: {e}"),
                "install iproute2 4.14 or later",
            );
            skip_rest(r, "the interfaces could not be read", 0);
            return;
        }
    };
    // The tunnel interface: the one with the tunnel address, else a tun
    // device that matches `dev`.
    let dev = cfg.device();
    let tun = ifaces.iter().find(|i| i.has_addr(f.tunnel)).or_else(|| {
        ifaces.iter().find(|i| {
            if dev == "tun" {
                i.link_type == "none" && i.name.starts_with("tun")
            } else {
                i.name == dev
            }
        })
    });
    let Some(tun) = tun else {
        r.warn(
            "tunnel",
            "the tunnel is not up (no tun interface)",
            "start OpenVPN (`openvpn --config FILE` or `systemctl start openvpn-client@ID`), then run doctor again; its log says why a start fails",
        );
        skip_rest(r, "the tunnel is not up", 0);
        return;
    };
    let mut tunnel_ok = true;
    if tun.has_addr(f.tunnel) {
        r.pass("tunnel", format!("{} carries {}", tun.name, f.tunnel));
    } else {
        tunnel_ok = false;
        let other = ifaces.iter().find(|i| i.has_addr(f.tunnel));
        r.fail(
            "tunnel",
            match other {
                Some(o) => format!("{} is on {}, not on the tunnel {}", f.tunnel, o.name, tun.name),
                None => format!("{} is up but does not carry {}", tun.name, f.tunnel),
            },
            "the tunnel address is missing: see the OpenVPN log (did the server push it? is the configuration altered?)",
        );
    }
    let routes = match ip(&["-j", "-6", "route"]).and_then(|t| system::parse_routes(&t)) {
        Ok(rt) => rt,
        Err(e) => {
            r.fail(
                "route",
                format!("cannot read the routes: {e}"),
                "install iproute2 4.14 or later",
            );
            skip_rest(r, "the routes could not be read", 1);
            return;
        }
    };
    check_route(&routes, tun, r);
    if !options.ping {
        r.skip("ping", "not asked for (--no-ping)");
    } else if !tunnel_ok {
        r.skip("ping", "the tunnel has no address");
    } else {
        check_ping(f, tun, sys, r);
    }
    if f.kind == ClientKind::Subnet {
        let lan = options
            .lan_interface
            .as_ref()
            .map(|i| i.to_string())
            .or_else(|| cfg.setenv(LAN_INTERFACE_ENV).map(str::to_owned))
            .or_else(|| f.lan.clone())
            .unwrap_or_else(|| "eth0".to_owned());
        check_subnet(f, &lan, &ifaces, &routes, sys, r);
    }
}

fn check_route(routes: &[Route], tun: &Interface, r: &mut Report) {
    let hint = format!(
        "the configuration's `redirect-gateway ipv6` sets it: see the OpenVPN log, or add it by hand: ip -6 route add 2000::/3 dev {}",
        tun.name
    );
    match system::best_route(routes, GLOBAL_PROBE) {
        Some(rt) if rt.kind == "unicast" && rt.dev.as_deref() == Some(tun.name.as_str()) => {
            r.pass(
                "route",
                format!(
                    "global IPv6 goes through {} (route {})",
                    tun.name,
                    show_dst(rt)
                ),
            );
        }
        Some(rt) => r.fail(
            "route",
            format!(
                "global IPv6 goes {} (route {}), not through the tunnel {}",
                match (&rt.dev, rt.kind.as_str()) {
                    (_, k) if k != "unicast" => format!("nowhere ({k})"),
                    (Some(d), _) => format!("via {}", shown(d)),
                    (None, _) => "nowhere".to_owned(),
                },
                show_dst(rt),
                tun.name
            ),
            hint,
        ),
        None => r.fail(
            "route",
            format!(
                "there is no route for global IPv6: the default route through {} is missing",
                tun.name
            ),
            hint,
        ),
    }
}

fn show_dst(rt: &Route) -> String {
    if rt.dst.prefix_len() == 0 {
        "default".to_owned()
    } else {
        rt.dst.to_string()
    }
}

fn check_ping(f: &BundleFacts, tun: &Interface, sys: &dyn System, r: &mut Report) {
    let target = if f.server.is_unicast_link_local() {
        format!("{}%{}", f.server, tun.name)
    } else {
        f.server.to_string()
    };
    match sys.run("ping", &["-6", "-c1", "-W2", &target]) {
        Some(o) if o.success => r.pass("ping", format!("the server's end {target} answers")),
        Some(_) => r.fail(
            "ping",
            format!("the server's end {target} does not answer"),
            "the tunnel is up but carries nothing: check the server is running and that the OpenVPN logs on both sides show no errors",
        ),
        None => r.warn(
            "ping",
            "`ping` is not installed; the server was not pinged",
            "install it (apt-get install iputils-ping)",
        ),
    }
}

fn check_subnet(
    f: &BundleFacts,
    lan: &str,
    ifaces: &[Interface],
    routes: &[Route],
    sys: &dyn System,
    r: &mut Report,
) {
    let script = "the bundle's up script does this when the tunnel comes up: is `up` in the configuration and the script executable?";
    let lan_iface = ifaces.iter().find(|i| i.name == lan);
    // Without its LAN the client is a host on the tunnel: the up script
    // leaves forwarding alone then, and so does this check.
    if lan_iface.is_none() {
        r.skip(
            "forwarding",
            format!("the LAN interface {} does not exist", shown(lan)),
        );
    } else {
        check_forwarding(sys, script, r);
    }
    let Some(lan_addr) = f.lan_address() else {
        return;
    };
    let want = format!("{lan_addr}/64");
    let Some(lan_iface) = lan_iface else {
        r.fail(
            "lan-address",
            format!(
                "the LAN interface {} does not exist: the tunnel serves this host only and the LAN got no prefix ({})",
                shown(lan),
                f.prefix
            ),
            format!("name your LAN interface with `setenv {LAN_INTERFACE_ENV} IFACE` in the configuration (or doctor --lan IFACE)"),
        );
        r.skip("prefix-owner", "the LAN interface does not exist");
        return;
    };
    if lan_iface
        .addrs
        .iter()
        .any(|a| a.addr() == lan_addr && a.prefix_len() == 64)
    {
        r.pass("lan-address", format!("{lan} carries {want}"));
    } else {
        r.fail(
            "lan-address",
            format!("{lan} does not carry {want}"),
            format!("ip -6 addr add {want} dev {lan} ({script})"),
        );
    }
    // Nothing but the LAN may claim the prefix: no address of it elsewhere,
    // no route of (part of) it to another device.
    let mut claims = Vec::new();
    for i in ifaces.iter().filter(|i| i.name != lan) {
        for a in i.addrs.iter().filter(|a| f.prefix.contains(&a.addr())) {
            claims.push(format!("address {} on {}", a, i.name));
        }
    }
    for rt in routes {
        let inside = f.prefix.contains(&rt.dst) && rt.dst.prefix_len() >= f.prefix.prefix_len();
        if inside && rt.dev.as_deref() != Some(lan) {
            claims.push(format!(
                "route {} {}",
                rt.dst,
                rt.dev
                    .as_deref()
                    .map_or_else(|| rt.kind.clone(), |d| format!("dev {d}"))
            ));
        }
    }
    if claims.is_empty() {
        r.pass("prefix-owner", format!("only {lan} claims {}", f.prefix));
    } else {
        r.fail(
            "prefix-owner",
            format!("{} is also claimed by: {}", f.prefix, claims.join(", ")),
            "remove those addresses and routes: the prefix belongs on the LAN interface only",
        );
    }
}

fn check_forwarding(sys: &dyn System, script: &str, r: &mut Report) {
    match sys
        .read("/proc/sys/net/ipv6/conf/all/forwarding")
        .map(|v| v.trim().to_owned())
    {
        Some(v) if v == "1" => r.pass("forwarding", "IPv6 forwarding is on"),
        Some(_) => r.fail(
            "forwarding",
            "IPv6 forwarding is off: the LAN cannot reach the tunnel",
            format!("sysctl -w net.ipv6.conf.all.forwarding=1 ({script})"),
        ),
        None => r.fail(
            "forwarding",
            "cannot read /proc/sys/net/ipv6/conf/all/forwarding",
            "is IPv6 enabled in the kernel?",
        ),
    }
}

/// The names of the checks [`run`] can report, in the order it reports them
/// (a hermit client gets the first thirteen; a subnet client all of them).
pub const CHECKS: &[&str] = &[
    "openvpn",
    "tun-device",
    "ipv6",
    "config",
    "assignment",
    "ca",
    "certificate",
    "key",
    "validity",
    "tls-crypt",
    "tunnel",
    "route",
    "ping",
    "forwarding",
    "lan-address",
    "prefix-owner",
];
