//! Reading a client's OpenVPN configuration back (the parser beside the
//! emitter in `text.rs`; `doctor` is its user): the
//! directives, the inline blocks (`<ca>`, `<cert>`, `<key>`, `<tls-crypt>`),
//! files it names (only inside its own directory) and the machine-readable
//! [`BundleFacts`] line.
//!
//! The syntax follows OpenVPN's `parse_line`: whitespace separates words,
//! `"..."` and `'...'` quote, a backslash escapes the next character outside
//! single quotes, `#` or `;` at the start of a word begins a comment, and an
//! inline block is `<tag>` ... `</tag>` on lines of their own.

use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv6Net;

use super::facts::{BundleFacts, FACTS_TAG};
use crate::client_id::ClientId;
use crate::error::{Error, Result, shown};
use crate::plan::ClientKind;

/// Largest configuration (and referenced file) `doctor` reads.
const MAX_FILE: u64 = 1 << 20;

/// One directive of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The option name (`remote`, `dev`, ...).
    pub name: String,
    /// Its arguments, unquoted.
    pub args: Vec<String>,
    /// Its line number (from 1).
    pub line: usize,
}

/// Key and certificate material a configuration carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Material {
    /// `ca` / `<ca>`.
    Ca,
    /// `cert` / `<cert>`.
    Cert,
    /// `key` / `<key>`.
    Key,
    /// `tls-crypt` / `<tls-crypt>`.
    TlsCrypt,
    /// `tls-crypt-v2` / `<tls-crypt-v2>` (a client's own key).
    TlsCryptV2,
}

impl Material {
    /// The option and inline tag name.
    pub fn option(self) -> &'static str {
        match self {
            Material::Ca => "ca",
            Material::Cert => "cert",
            Material::Key => "key",
            Material::TlsCrypt => "tls-crypt",
            Material::TlsCryptV2 => "tls-crypt-v2",
        }
    }
}

/// A client's OpenVPN configuration, read for diagnosis.
///
/// ```
/// use tunnelbroker_core::doctor::{ClientConfigFile, Material};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("alice.conf");
/// let cfg = ClientConfigFile::parse(&path, "client\ndev tun\n<ca>\nPEM\n</ca>\nkey ../../etc/shadow\n")?;
/// assert_eq!(cfg.device(), "tun");
/// assert_eq!(cfg.material(Material::Ca).unwrap().1.unwrap(), "PEM\n");
/// // Files outside the configuration's directory are refused.
/// assert!(cfg.material(Material::Key).unwrap().1.is_err());
/// assert!(ClientConfigFile::parse(&path, "<ca>\nno end\n").is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClientConfigFile {
    path: PathBuf,
    dir: PathBuf,
    directives: Vec<Directive>,
    inline: Vec<(String, String)>,
    facts: Option<(usize, String)>,
    description: Option<String>,
}

impl ClientConfigFile {
    /// Reads and parses a configuration file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = read_bounded(path).map_err(|reason| Error::InvalidClientConfig {
            path: path.to_owned(),
            reason,
        })?;
        Self::parse(path, &text)
    }

    /// Parses configuration text; `path` names the file (its directory is
    /// where referenced files are looked up).
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let bad = |line: usize, reason: String| Error::InvalidClientConfig {
            path: path.to_owned(),
            reason: format!("line {line}: {reason}"),
        };
        if text.len() as u64 > MAX_FILE {
            return Err(Error::InvalidClientConfig {
                path: path.to_owned(),
                reason: format!("longer than {MAX_FILE} bytes; not an OpenVPN configuration"),
            });
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let mut cfg = ClientConfigFile {
            path: path.to_owned(),
            dir,
            directives: Vec::new(),
            inline: Vec::new(),
            facts: None,
            description: None,
        };
        let mut lines = text.split('\n').enumerate();
        while let Some((i, raw)) = lines.next() {
            let n = i + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw).trim();
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#').or_else(|| line.strip_prefix(';')) {
                let c = comment.trim();
                if c.starts_with(FACTS_TAG) && cfg.facts.is_none() {
                    cfg.facts = Some((n, c.to_owned()));
                } else if c.starts_with("tunnelbroker: client ") && cfg.description.is_none() {
                    cfg.description = Some(c.to_owned());
                }
                continue;
            }
            if let Some(tag) = line.strip_prefix('<').and_then(|l| l.strip_suffix('>')) {
                if tag.starts_with('/') {
                    return Err(bad(
                        n,
                        format!("{} closes a block that is not open", shown(line)),
                    ));
                }
                if tag.is_empty()
                    || tag.len() > 32
                    || !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(bad(
                        n,
                        format!("{} is not an inline block tag", shown(line)),
                    ));
                }
                let end = format!("</{tag}>");
                let mut body = String::new();
                let mut closed = false;
                for (_, l) in lines.by_ref() {
                    let l = l.strip_suffix('\r').unwrap_or(l);
                    if l.trim() == end {
                        closed = true;
                        break;
                    }
                    body.push_str(l);
                    body.push('\n');
                }
                if !closed {
                    return Err(bad(n, format!("<{tag}> is never closed with {end}")));
                }
                cfg.inline.push((tag.to_owned(), body));
                continue;
            }
            let words = split_words(line).map_err(|r| bad(n, r))?;
            let mut words = words.into_iter();
            if let Some(name) = words.next() {
                let name = name.strip_prefix("--").unwrap_or(&name).to_owned();
                cfg.directives.push(Directive {
                    name,
                    args: words.collect(),
                    line: n,
                });
            }
        }
        Ok(cfg)
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every directive, in order.
    pub fn directives(&self) -> &[Directive] {
        &self.directives
    }

    /// The last directive called `name` (the one OpenVPN uses).
    pub fn directive(&self, name: &str) -> Option<&Directive> {
        self.directives.iter().rev().find(|d| d.name == name)
    }

    /// The `dev` argument (`tun` when absent).
    pub fn device(&self) -> &str {
        self.directive("dev")
            .and_then(|d| d.args.first())
            .map_or("tun", String::as_str)
    }

    /// The value of `setenv NAME VALUE`, if the configuration sets it.
    pub fn setenv(&self, name: &str) -> Option<&str> {
        self.directives
            .iter()
            .rev()
            .filter(|d| d.name == "setenv" && d.args.first().map(String::as_str) == Some(name))
            .find_map(|d| d.args.get(1).map(String::as_str))
    }

    /// The material: where it comes from (`inline` or the file name) and its
    /// text, or why it cannot be read. `None` when the configuration has none.
    /// A file is read only if it lies inside the configuration's directory
    /// (after resolving symbolic links) and is at most 1 MiB.
    pub fn material(&self, m: Material) -> Option<(String, std::result::Result<String, String>)> {
        let name = m.option();
        let by_file = self
            .directive(name)
            .and_then(|d| d.args.first())
            .filter(|a| a.as_str() != "[inline]");
        if let Some(file) = by_file {
            return Some((file.clone(), self.read_inside(file)));
        }
        self.inline
            .iter()
            .rev()
            .find(|(t, _)| t == name)
            .map(|(_, body)| ("inline".to_owned(), Ok(body.clone())))
    }

    fn read_inside(&self, name: &str) -> std::result::Result<String, String> {
        if name.is_empty() || name.contains('\0') {
            return Err(format!("{} is not a file name", shown(name)));
        }
        let dir = self
            .dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let full = dir
            .join(name)
            .canonicalize()
            .map_err(|e| format!("{}: {e}", shown(name)))?;
        if !full.starts_with(&dir) {
            return Err(format!(
                "{} lies outside the configuration's directory {}; refused",
                shown(name),
                dir.display()
            ));
        }
        read_bounded(&full).map_err(|e| format!("{}: {e}", full.display()))
    }

    /// The facts line, parsed, with its line number; `None` when absent.
    pub fn facts(&self) -> Option<(usize, Result<BundleFacts>)> {
        self.facts.as_ref().map(|(n, t)| (*n, t.parse()))
    }

    /// What can be told about the client without a facts line: a per-client
    /// configuration's `ifconfig-ipv6 ADDRESS/LEN SERVER` gives the tunnel
    /// address and the server end; the broker's description comment gives
    /// the kind and prefix. `None` when that is not enough, or when it names a
    /// prefix that no facts line may hold (a subnet not a /64, a hermit not a
    /// /128).
    pub fn derived_facts(&self) -> Option<BundleFacts> {
        let d = self.directive("ifconfig-ipv6")?;
        let local: Ipv6Net = d.args.first()?.parse().ok()?;
        let server: Ipv6Addr = d.args.get(1)?.parse().ok()?;
        let desc = self.description.as_deref().unwrap_or("");
        let after = |word: &str| {
            desc.split_once(word)
                .and_then(|(_, r)| r.split([' ', ',', ')']).next())
                .and_then(|p| p.parse::<Ipv6Net>().ok())
        };
        let (kind, prefix) = if let Some(p) = after("(subnet ") {
            (ClientKind::Subnet, p)
        } else if let Some(p) = after("(hermit ") {
            (ClientKind::Hermit, p)
        } else if local.prefix_len() == 112 {
            // routing::H:2/112 belongs to the subnet /64 whose 4th hextet is H.
            let a = local.addr().segments();
            let p = Ipv6Addr::new(a[0], a[1], a[2], a[6], 0, 0, 0, 0);
            (ClientKind::Subnet, Ipv6Net::new(p, 64).ok()?)
        } else {
            (ClientKind::Hermit, Ipv6Net::new(local.addr(), 128).ok()?)
        };
        // What a facts line may say, and no more: a subnet's /64, a hermit's
        // /128, without host bits.
        let want = match kind {
            ClientKind::Subnet => 64,
            ClientKind::Hermit => 128,
        };
        if prefix.prefix_len() != want || prefix.trunc() != prefix {
            return None;
        }
        let id = self
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<ClientId>().ok());
        Some(BundleFacts {
            id,
            kind,
            prefix,
            tunnel: local.addr(),
            server,
            lan: None,
        })
    }
}

/// Reads a regular file of at most [`MAX_FILE`] bytes as UTF-8 text; the
/// reason for a refusal does not repeat the path (callers name it).
fn read_bounded(path: &Path) -> std::result::Result<String, String> {
    crate::fsutil::read_limited(path, MAX_FILE).map_err(|r| r.to_string())
}

/// Splits a line into words as OpenVPN does.
fn split_words(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' | ';' if !in_word => break,
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err("unterminated \" quote".into()),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e) => cur.push(e),
                            None => return Err("unterminated \" quote".into()),
                        },
                        Some(x) => cur.push(x),
                    }
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err("unterminated ' quote".into()),
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(e) = chars.next() {
                    cur.push(e);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::plan::{Assignment, Pool};
    use crate::words::ServerMode;

    fn parse(text: &str) -> Result<ClientConfigFile> {
        ClientConfigFile::parse(Path::new("/nonexistent/alice.conf"), text)
    }

    #[test]
    fn words_split_like_openvpn() {
        assert_eq!(
            split_words(r#"remote "vpn example" 5000 # comment"#).unwrap(),
            ["remote", "vpn example", "5000"]
        );
        assert_eq!(
            split_words(r"a\ b 'c d' e;f ;x").unwrap(),
            ["a b", "c d", "e;f"]
        );
        assert!(split_words("remote \"open").is_err());
        assert!(split_words("remote 'open").is_err());
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn directives_blocks_and_facts_are_read() {
        let cfg = parse(
            "# tunnelbroker: client alice (subnet 2001:db8:0:f1ab::/64, tunnel address x)\n\
             # tunnelbroker-doctor: id=alice kind=hermit prefix=2001:db8:0:f1ff::7/128 tunnel=2001:db8:0:f1ff::7 server=2001:db8:0:f100::1\n\
             client\r\ndev tun\nsetenv TUNNELBROKER_LAN_IF lan0\n<ca>\nA\r\nB\n</ca>\n<tls-crypt>\n# c\nK\n</tls-crypt>\n",
        )
        .unwrap();
        assert_eq!(cfg.directive("dev").unwrap().args, ["tun"]);
        assert_eq!(cfg.setenv("TUNNELBROKER_LAN_IF"), Some("lan0"));
        assert_eq!(cfg.material(Material::Ca).unwrap().1.unwrap(), "A\nB\n");
        assert_eq!(
            cfg.material(Material::TlsCrypt).unwrap().1.unwrap(),
            "# c\nK\n"
        );
        assert!(cfg.material(Material::Cert).is_none());
        let (line, facts) = cfg.facts().unwrap();
        assert_eq!(line, 2);
        let facts = facts.unwrap();
        assert_eq!(facts.kind, ClientKind::Hermit);
        assert_eq!(facts.lan_address(), None);
    }

    #[test]
    fn facts_are_derived_from_a_per_client_config() {
        let cfg = parse(
            "tls-client\nifconfig-ipv6 2001:db8:0:f100::f1ab:2/112 2001:db8:0:f100::f1ab:1\n",
        )
        .unwrap();
        let f = cfg.derived_facts().unwrap();
        assert_eq!(f.kind, ClientKind::Subnet);
        assert_eq!(f.prefix.to_string(), "2001:db8:0:f1ab::/64");
        assert_eq!(f.server.to_string(), "2001:db8:0:f100::f1ab:1");
        assert_eq!(f.id.unwrap().as_str(), "alice");
        let cfg = parse("ifconfig-ipv6 2001:db8:0:f1ff::7/64 fe80::1\n").unwrap();
        let f = cfg.derived_facts().unwrap();
        assert_eq!(f.kind, ClientKind::Hermit);
        assert_eq!(f.prefix.to_string(), "2001:db8:0:f1ff::7/128");
        assert!(parse("client\n").unwrap().derived_facts().is_none());
    }

    #[test]
    fn facts_lines_round_trip_and_bad_ones_are_refused() {
        let pool: Pool = "2001:db8:0:f100::/56".parse().unwrap();
        let id: ClientId = "bob".parse().unwrap();
        let h = Assignment::in_pool(
            &pool,
            ClientKind::Hermit,
            "2001:db8:0:f1ff::7/128".parse().unwrap(),
        )
        .unwrap();
        let f = BundleFacts::new(&id, &h, &pool, ServerMode::Shared, "eth0");
        assert_eq!(f.server.to_string(), "2001:db8:0:f100::1");
        assert_eq!(f.lan, None);
        assert_eq!(f.to_string().parse::<BundleFacts>().unwrap(), f);
        let f = BundleFacts::new(&id, &h, &pool, ServerMode::PerClient, "eth0");
        assert_eq!(f.server.to_string(), "fe80::1");
        let long = format!("{FACTS_TAG} {}", "x=y ".repeat(10_000));
        for bad in [
            "",
            "tunnelbroker-doctor:",
            "tunnelbroker-doctor: kind=subnet prefix=2001:db8::/64 tunnel=::1",
            "tunnelbroker-doctor: kind=subnet prefix=2001:db8::1/64 tunnel=::1 server=::2",
            "tunnelbroker-doctor: kind=hermit prefix=2001:db8::/64 tunnel=::1 server=::2",
            "tunnelbroker-doctor: kind=router prefix=2001:db8::/64 tunnel=::1 server=::2",
            "tunnelbroker-doctor: id=../etc kind=subnet prefix=2001:db8::/64 tunnel=::1 server=::2",
            "tunnelbroker-doctor: kind=subnet prefix=2001:db8::/64 tunnel=::1 server=::2 lan=eth0;reboot",
            "tunnelbroker-doctor: kind=subnet prefix=2001:db8::/64 tunnel=é server=::2",
            "tunnelbroker-doctor: novalue",
            long.as_str(),
        ] {
            assert!(bad.parse::<BundleFacts>().is_err(), "{bad}");
        }
    }

    #[test]
    fn hostile_configs_are_refused_or_read_safely() {
        for bad in [
            "<ca>\nnever closed\n",
            "</ca>\n",
            "<>\n",
            "<ca b>\nx\n</ca b>\n",
            "remote \"unterminated\n",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.to_string().contains("line "), "{bad}: {err}");
        }
        let huge = "#".repeat(2 << 20);
        assert!(parse(&huge).is_err());
        // Non-ASCII, control characters and shell metacharacters are just words.
        let cfg = parse("dev tün\nremote $(reboot) `x` |y\n\u{0}\n").unwrap();
        assert_eq!(cfg.device(), "tün");
    }

    #[test]
    fn referenced_files_must_stay_inside_the_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("bundle");
        fs::create_dir(&dir).unwrap();
        fs::write(root.path().join("secret"), "outside").unwrap();
        fs::write(dir.join("ca.crt"), "inside").unwrap();
        std::os::unix::fs::symlink(root.path().join("secret"), dir.join("link.crt")).unwrap();
        fs::create_dir(dir.join("sub")).unwrap();
        let abs = root.path().join("secret");
        let cfg_path = dir.join("alice.conf");
        let text = format!(
            "ca ca.crt\ncert ../secret\nkey link.crt\ntls-crypt {}\n",
            abs.display()
        );
        fs::write(&cfg_path, &text).unwrap();
        let cfg = ClientConfigFile::read(&cfg_path).unwrap();
        assert_eq!(cfg.material(Material::Ca).unwrap().1.unwrap(), "inside");
        for m in [Material::Cert, Material::Key, Material::TlsCrypt] {
            let err = cfg.material(m).unwrap().1.unwrap_err();
            assert!(err.contains("outside"), "{m:?}: {err}");
        }
        let cfg = parse_in(&dir, "ca sub\ncert missing.crt\nkey sub/../ca.crt\n");
        assert!(
            cfg.material(Material::Ca)
                .unwrap()
                .1
                .unwrap_err()
                .contains("not a regular file")
        );
        assert!(cfg.material(Material::Cert).unwrap().1.is_err());
        assert_eq!(cfg.material(Material::Key).unwrap().1.unwrap(), "inside");
        // A binary file is refused, not read lossily.
        fs::write(dir.join("bin.key"), [0xff, 0xfe, 0x00]).unwrap();
        let cfg = parse_in(&dir, "key bin.key\n");
        assert!(cfg.material(Material::Key).unwrap().1.is_err());
        assert!(ClientConfigFile::read(&dir.join("bin.key")).is_err());
        assert!(ClientConfigFile::read(&dir).is_err());
    }

    fn parse_in(dir: &Path, text: &str) -> ClientConfigFile {
        ClientConfigFile::parse(&dir.join("x.conf"), text).unwrap()
    }
}
