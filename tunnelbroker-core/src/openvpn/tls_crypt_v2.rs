//! The server side of `tls-crypt-v2`: the verify program OpenVPN runs for
//! every client key before TLS, and the list of current clients it reads.
//!
//! OpenVPN unwraps a client's key from its first packet, then runs
//! `tls-crypt-v2-verify` (as `nobody` once it has dropped privileges, with
//! only its own variables in the environment) with `metadata_type` (0 for
//! user data) and `metadata_file` (the metadata without its type byte).
//! Exit status 0 accepts the key; anything else drops the packet before any
//! TLS takes place, and the server logs `TLS CRYPT V2 VERIFY SCRIPT ERROR`.
//!
//! The program is a POSIX shell script of a few lines (nothing to install,
//! nothing `nobody` cannot run): it accepts a key only when its metadata is
//! exactly one line of [`TlsCryptV2Clients`], the bindings
//! ([`ClientBinding`]) of the active clients' current certificates, which
//! the broker rewrites with every CRL. A revoked, purged, renewed-away or
//! unknown client's key is refused, and so is every key the broker did not
//! make (another metadata type or form).

use std::fmt;

use super::text::sh_quote;
use super::values::ConfigPath;
use crate::pki::ClientBinding;

/// The `tls-crypt-v2-verify` program of a server directory.
///
/// ```
/// use tunnelbroker_core::openvpn::{ConfigPath, TlsCryptV2Verify};
/// let v = TlsCryptV2Verify::new(ConfigPath::new("/etc/openvpn/server/tls-crypt-v2-clients")?);
/// let text = v.to_string();
/// assert!(text.starts_with("#!/bin/sh\n"));
/// assert!(text.contains("list='/etc/openvpn/server/tls-crypt-v2-clients'\n"));
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsCryptV2Verify {
    list: ConfigPath,
}

impl TlsCryptV2Verify {
    /// The program that checks keys against the list at `list`.
    pub fn new(list: ConfigPath) -> Self {
        TlsCryptV2Verify { list }
    }
}

/// The longest metadata line the program reads (a binding is at most
/// `tunnelbroker-1`, a 20-byte serial in hex and a 64-byte ID).
const MAX_LINE: usize = 160;

impl fmt::Display for TlsCryptV2Verify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The one interpolated value is a validated path, single-quoted.
        write!(
            f,
            r#"#!/bin/sh
# tunnelbroker: tls-crypt-v2-verify. OpenVPN runs this (as nobody) for every
# client key before TLS; it accepts the key only when its metadata is a line
# of the list below, the active clients' current certificates, which the
# broker rewrites with every CRL. Anything else is refused (exit 1).
set -u
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
list={list}
refuse() {{
    printf 'tunnelbroker tls-crypt-v2-verify: refused: %s\n' "$1" >&2
    exit 1
}}
[ "${{metadata_type:-}}" = 0 ] || refuse "metadata type ${{metadata_type:-none}}, not a tunnelbroker client key"
file="${{metadata_file:-}}"
[ -n "$file" ] && [ -f "$file" ] || refuse "no metadata file"
size=$(wc -c < "$file") || refuse "cannot read the metadata file"
[ "$size" -le {max} ] || refuse "the metadata is too long"
meta=$(cat -- "$file") || refuse "cannot read the metadata file"
case $meta in
    *[!A-Za-z0-9._\ -]*) refuse "the metadata holds other characters" ;;
    'tunnelbroker-1 '*) ;;
    *) refuse "the metadata is not a tunnelbroker client binding" ;;
esac
[ "${{#meta}}" -eq "$size" ] || refuse "the metadata is not one line"
grep -qxF -e "$meta" -- "$list" || refuse "$meta is not a current client (revoked, purged, renewed or unknown)"
printf 'tunnelbroker tls-crypt-v2-verify: accepted: %s\n' "$meta" >&2
exit 0
"#,
            list = sh_quote(self.list.as_str()),
            max = MAX_LINE,
        )
    }
}

/// The list of current clients the verify program reads: a comment header,
/// then one [`ClientBinding`] per line, sorted.
///
/// ```
/// use tunnelbroker_core::openvpn::TlsCryptV2Clients;
/// use tunnelbroker_core::pki::ClientBinding;
/// let list = TlsCryptV2Clients::new(vec![
///     ClientBinding::new("bob".parse()?, "0B".parse()?),
///     ClientBinding::new("alice".parse()?, "0A".parse()?),
/// ]);
/// let text = list.to_string();
/// assert!(text.ends_with("\ntunnelbroker-1 0A alice\ntunnelbroker-1 0B bob\n"));
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsCryptV2Clients {
    bindings: Vec<ClientBinding>,
}

impl TlsCryptV2Clients {
    /// The list of `bindings` (sorted, duplicates dropped).
    pub fn new(mut bindings: Vec<ClientBinding>) -> Self {
        // Each line formatted once, not at every comparison.
        bindings.sort_by_cached_key(|b| b.to_string());
        bindings.dedup();
        TlsCryptV2Clients { bindings }
    }

    /// The bindings, sorted.
    pub fn bindings(&self) -> &[ClientBinding] {
        &self.bindings
    }
}

impl fmt::Display for TlsCryptV2Clients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "# tunnelbroker: the clients whose tls-crypt-v2 keys this server accepts"
        )?;
        writeln!(
            f,
            "# (active clients, current certificates); rewritten with every CRL"
        )?;
        for b in &self.bindings {
            writeln!(f, "{b}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Runs the program against the list of alice's binding with `meta` as
    /// the metadata file (type `kind`).
    fn verify(meta: &[u8], kind: &str) -> (bool, String) {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("clients");
        let alice = ClientBinding::new("alice".parse().unwrap(), "0A".parse().unwrap());
        std::fs::write(&list, TlsCryptV2Clients::new(vec![alice]).to_string()).unwrap();
        let script = dir.path().join("verify");
        let path = ConfigPath::new(list.to_str().unwrap()).unwrap();
        std::fs::write(&script, TlsCryptV2Verify::new(path).to_string()).unwrap();
        let file = dir.path().join("meta");
        std::fs::write(&file, meta).unwrap();
        // OpenVPN gives the program only its own variables.
        let out = Command::new("/bin/sh")
            .arg(&script)
            .env_clear()
            .env("metadata_type", kind)
            .env("metadata_file", &file)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn the_verify_program_accepts_only_listed_bindings() {
        let (ok, said) = verify(b"tunnelbroker-1 0A alice", "0");
        assert!(ok, "{said}");
        for (meta, kind) in [
            (&b"tunnelbroker-1 0A alice"[..], "1"),
            (b"tunnelbroker-1 0A alice", ""),
            (b"tunnelbroker-1 0A alice\n", "0"),
            (b"tunnelbroker-1 0B alice", "0"),
            (b"tunnelbroker-1 0A bob", "0"),
            (b"tunnelbroker-1 0A alice\ntunnelbroker-1 0A bob", "0"),
            (b"tunnelbroker-1 0A $(touch /tmp/x)", "0"),
            (b"tunnelbroker-1 0A ali*", "0"),
            (b"tunnelbroker-1 0A .*", "0"),
            (b"# tunnelbroker: the clients", "0"),
            (b"", "0"),
            (b"\xc3\xa9", "0"),
            (&[b'a'; 4096][..], "0"),
        ] {
            let (ok, said) = verify(meta, kind);
            assert!(!ok, "{meta:?} type {kind} was accepted");
            assert!(said.contains("refused"), "{said}");
        }
    }
}
