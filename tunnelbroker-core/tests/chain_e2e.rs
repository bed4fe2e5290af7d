//! An institution's own CA that is an intermediate (issue 17, finding 5):
//! a root and a "VPN Issuing CA" under it, made with `openssl` as someone
//! else's CA would be. The broker keeps the whole chain in `ca.crt` and
//! ships it in the server's `ca` file and every bundle's `<ca>`; its CRL is
//! signed by the intermediate; real OpenVPN connects such a client and
//! refuses it once revoked.
//!
//! OpenVPN 2.6 (OpenSSL backend) checks CRLs for every certificate of the
//! chain (X509_V_FLAG_CRL_CHECK_ALL) but turns a missing CRL into
//! "VERIFY WARNING: ... unable to get certificate CRL" and goes on: the
//! intermediate's CRL alone revokes clients, the root's is not needed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tunnelbroker_core::broker::{ImportedCa, ServerMode, TlsCryptVersion};
use tunnelbroker_core::pki::{Certificate, Crl, RevocationReason};
use tunnelbroker_core::{Broker, ClientKind, Error, InitOptions, Settings};

use crate::lab::*;

/// A root CA and an intermediate under it, made with `openssl`.
pub(crate) struct OpensslChain {
    /// The root's certificate (PEM).
    pub root: String,
    /// The intermediate's certificate (PEM).
    pub int: String,
    /// The intermediate's key (PEM).
    pub int_key: String,
}

impl OpensslChain {
    /// The file a CA hands out: the intermediate, then the root.
    pub(crate) fn chain(&self) -> String {
        format!("{}{}", self.int, self.root)
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes "Example University Root CA" and "VPN Issuing CA" (pathlen 0)
/// under it in `dir`, or `None` (printed; a failure under `CI=true`)
/// without `openssl`.
pub(crate) fn openssl_chain(dir: &Path) -> Option<OpensslChain> {
    openssl_chain_for(dir, "3650")
}

/// [`openssl_chain`] with a root valid for `root_days` days.
fn openssl_chain_for(dir: &Path, root_days: &str) -> Option<OpensslChain> {
    if Command::new("openssl").arg("version").output().is_err() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("openssl is required when CI=true");
        }
        eprintln!("SKIPPED: openssl not found");
        return None;
    }
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
    fs::write(
        dir.join("ext.cnf"),
        "[v3_int]\n\
         basicConstraints = critical, CA:TRUE, pathlen:0\n\
         keyUsage = critical, keyCertSign, cRLSign\n\
         subjectKeyIdentifier = hash\n\
         authorityKeyIdentifier = keyid:always\n",
    )
    .unwrap();
    let mut root = vec!["req", "-x509", "-nodes", "-days", root_days, "-sha256"];
    root.extend(ec);
    root.extend([
        "-subj",
        "/C=DE/O=Example University/CN=Example University Root CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        "root.key",
        "-out",
        "root.crt",
    ]);
    openssl(dir, &root);
    let mut csr = vec!["req", "-new", "-nodes", "-sha256"];
    csr.extend(ec);
    csr.extend([
        "-subj",
        "/C=DE/O=Example University/CN=VPN Issuing CA",
        "-keyout",
        "int.key",
        "-out",
        "int.csr",
    ]);
    openssl(dir, &csr);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "int.csr",
            "-CA",
            "root.crt",
            "-CAkey",
            "root.key",
            "-set_serial",
            "0x3e1f5a77c0de",
            "-days",
            "1825",
            "-sha256",
            "-extfile",
            "ext.cnf",
            "-extensions",
            "v3_int",
            "-out",
            "int.crt",
        ],
    );
    let read = |name: &str| fs::read_to_string(dir.join(name)).unwrap();
    Some(OpensslChain {
        root: read("root.crt"),
        int: read("int.crt"),
        int_key: read("int.key"),
    })
}

/// A broker of the imported intermediate in a world-searchable directory
/// (OpenVPN re-reads the CRL as `nobody`).
fn chain_broker(tmp: &Path, chain: &OpensslChain, mode: ServerMode, port: u16) -> Broker {
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o755)).unwrap();
    let mut s = Settings::new(POOL.parse().unwrap(), SERVER_IP.parse().unwrap());
    s.mode = mode;
    s.port = port;
    s.lan_interface = LAN_IF.into();
    // The CRL refuses the revoked client in TLS (v1); tls_crypt_v2_e2e
    // covers v2, where the key is refused before TLS.
    s.tls_crypt = TlsCryptVersion::V1;
    let mut options = InitOptions::new(s);
    options.ca = Some(ImportedCa {
        cert_pem: chain.chain(),
        key_pem: chain.int_key.clone(),
    });
    Broker::init(&tmp.join("broker"), &options).unwrap()
}

/// The common names of the certificates in a PEM text, in order.
fn names(pem: &str) -> Vec<String> {
    Certificate::all_from_pem(pem)
        .unwrap()
        .iter()
        .map(|c| c.info().common_name.clone())
        .collect()
}

const CHAIN_NAMES: [&str; 2] = ["VPN Issuing CA", "Example University Root CA"];

/// The text between `<tag>` and `</tag>` of a configuration.
fn inline(config: &str, tag: &str) -> String {
    let open = format!("<{tag}>\n");
    let start = config.find(&open).expect("inline block") + open.len();
    let end = config
        .find(&format!("</{tag}>"))
        .expect("end of inline block");
    config[start..end].to_owned()
}

#[test]
fn broker_of_an_intermediate_ships_the_whole_chain() {
    let tmp = crate::operator_tempdir();
    let Some(chain) = openssl_chain(tmp.path()) else {
        return;
    };
    let b = chain_broker(tmp.path(), &chain, ServerMode::Shared, 5170);
    assert_eq!(b.ca().certificate().info().common_name, "VPN Issuing CA");

    // ca.crt holds the chain, and the broker opens again from it.
    let stored = fs::read_to_string(&b.paths().ca_cert).unwrap();
    assert_eq!(names(&stored), CHAIN_NAMES);
    let again = Broker::open(b.dir()).unwrap();
    assert_eq!(again.ca().chain_pem(), b.ca().chain_pem());
    drop(again);
    // ca.crt is a cache of the chain the database holds: one that lost its
    // root is written again, whole, with a warning.
    fs::write(&b.paths().ca_cert, &chain.int).unwrap();
    let again = Broker::open(b.dir()).unwrap();
    assert_eq!(again.ca().chain_pem(), b.ca().chain_pem());
    let warnings = again.open_warnings().join("\n");
    assert!(warnings.contains("ca.crt"), "{warnings}");
    drop(again);
    assert_eq!(
        names(&fs::read_to_string(&b.paths().ca_cert).unwrap()),
        CHAIN_NAMES
    );

    // Every bundle's <ca> carries it.
    let alice = add(&b, "alice", ClientKind::Hermit);
    let cfg = b.client_config(&alice.id).unwrap();
    let files = cfg.emit().unwrap();
    let conf = files.iter().find(|f| f.name == cfg.file_name()).unwrap();
    assert_eq!(names(&inline(&conf.text, "ca")), CHAIN_NAMES);

    // So does the rendered server's ca file.
    let report = render_with_own_run_dir(&b);
    let server_ca = fs::read_to_string(report.dir.join("ca.crt")).unwrap();
    assert_eq!(names(&server_ca), CHAIN_NAMES);

    // The CRL is the intermediate's, with its key identifier; openssl
    // verifies the client against the chain and the CRL.
    let cert = b.client_credentials(&alice.id).unwrap().certificate;
    b.revoke(&alice.id, RevocationReason::KeyCompromise)
        .unwrap();
    let crl = Crl::from_pem(&fs::read_to_string(&b.paths().crl).unwrap()).unwrap();
    assert!(
        crl.issuer().contains("CN=VPN Issuing CA"),
        "{}",
        crl.issuer()
    );
    assert_eq!(crl.authority_key_id(), b.ca().subject_key_id());
    b.ca().check_crl(&crl).unwrap();
    let d = tmp.path();
    fs::write(d.join("alice.crt"), cert.pem()).unwrap();
    let verify = |crl: bool| {
        let mut args = vec!["verify", "-CAfile", "broker/ca.crt"];
        if crl {
            args.extend(["-crl_check", "-CRLfile", "broker/crl.pem"]);
        }
        args.push("alice.crt");
        let out = Command::new("openssl")
            .current_dir(d)
            .args(&args)
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    assert!(verify(false).contains("alice.crt: OK"), "{}", verify(false));
    assert!(
        verify(true).contains("certificate revoked"),
        "{}",
        verify(true)
    );
}

#[test]
fn init_refuses_an_intermediate_without_its_root() {
    let tmp = crate::operator_tempdir();
    let Some(chain) = openssl_chain(tmp.path()) else {
        return;
    };
    let dir = tmp.path().join("broker");
    let mut options = InitOptions::new(Settings::new(
        POOL.parse().unwrap(),
        SERVER_IP.parse().unwrap(),
    ));
    options.ca = Some(ImportedCa {
        cert_pem: chain.int.clone(),
        key_pem: chain.int_key.clone(),
    });
    let err = Broker::init(&dir, &options).unwrap_err();
    assert!(matches!(err, Error::CaIssuerMissing { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "the CA certificate \"C=DE, O=Example University, CN=VPN Issuing CA\" is issued by \
         \"C=DE, O=Example University, CN=Example University Root CA\", which is not in the \
         file: append the issuing CA's certificates up to the root"
    );
    assert!(!dir.exists());
}

/// A client of an imported intermediate connects over the tunnel, is
/// revoked, and is refused on its next connection by the intermediate's
/// CRL, in both modes.
#[test]
fn openvpn_client_of_an_intermediate_connects_and_is_revoked() {
    needs_root(
        "openvpn_client_of_an_intermediate_connects_and_is_revoked",
        || {
            connect_and_revoke(ServerMode::Shared, 5180);
            connect_and_revoke(ServerMode::PerClient, 5190);
        },
    );
}

fn connect_and_revoke(mode: ServerMode, port: u16) {
    let tmp = crate::operator_tempdir();
    let Some(chain) = openssl_chain(tmp.path()) else {
        return;
    };
    let b = chain_broker(tmp.path(), &chain, mode, port);
    let alice = add(&b, "alice", ClientKind::Hermit);
    let report = render_with_own_run_dir(&b);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let (instance, server_addr) = match mode {
        ServerMode::Shared => ("tb-shared", "2001:db8:0:f100::1"),
        ServerMode::PerClient => ("tb-client-alice", "fe80::1%tun0"),
    };

    let mut lab = Lab::new(match mode {
        ServerMode::Shared => "chs",
        ServerMode::PerClient => "chp",
    });
    let (s, ns) = underlay(&mut lab, &["a"]);
    let srv_log = start_server(&mut lab, &s, &b, &report.dir, instance);
    // A per-client instance is ready only once its client is there.
    if mode == ServerMode::Shared {
        assert!(log_has(&srv_log, READY, UP), "server:\n{}", tail(&srv_log));
    }

    let dir: PathBuf = unpack(&b, "alice", tmp.path());
    let log = start_client(&mut lab, "alice", &ns[0], &dir, "alice");
    wait_connected(&log, &srv_log);
    let client_log = fs::read_to_string(&log).unwrap();
    assert!(
        client_log.contains("VERIFY OK: depth=2")
            && client_log.contains("CN=Example University Root CA"),
        "{client_log}"
    );
    assert!(
        lab.ping(&ns[0], server_addr, None, 10),
        "{mode}: alice -> server over the tunnel"
    );

    // Revoked: the CRL (signed by the intermediate) refuses her next
    // connection (a per-client instance is started again for it).
    b.revoke(&alice.id, RevocationReason::KeyCompromise)
        .unwrap();
    let crl = Crl::from_pem(&fs::read_to_string(&b.paths().crl).unwrap()).unwrap();
    assert!(
        crl.issuer().contains("CN=VPN Issuing CA"),
        "{}",
        crl.issuer()
    );
    lab.stop("alice");
    if mode == ServerMode::PerClient {
        lab.stop(instance);
        start_server(&mut lab, &s, &b, &report.dir, instance);
    }
    let _ = fs::remove_file(&log);
    start_client(&mut lab, "alice", &ns[0], &dir, "alice");
    assert_refused(
        &log,
        &srv_log,
        &["certificate revoked", "CN=alice"],
        &format!("{mode}: revoked alice reconnecting"),
    );
    lab.stop("alice");
    let server_text = fs::read_to_string(&srv_log).unwrap();
    assert!(
        !server_text.contains("unable to get issuer certificate"),
        "{server_text}"
    );
}

/// A root that ends before the intermediate it signed ends the broker's CA
/// with it: nothing is issued past it, and audit names it (regression: the
/// `ca` check and the clamp looked at the intermediate alone).
#[test]
fn a_root_that_ends_before_the_intermediate_cuts_certificates_and_audit_names_it() {
    let tmp = crate::operator_tempdir();
    let Some(chain) = openssl_chain_for(tmp.path(), "20") else {
        return;
    };
    let b = chain_broker(tmp.path(), &chain, ServerMode::Shared, 1194);
    let r = tunnelbroker_core::doctor::audit(&b, &Default::default());
    assert_eq!(
        r.status_of("ca"),
        Some(tunnelbroker_core::doctor::Status::Warn),
        "{r}"
    );
    let ca = r.checks.iter().find(|c| c.name == "ca").unwrap();
    assert!(
        ca.message.contains("Example University Root CA")
            && ca.message.contains("certificate 2 of ca.crt"),
        "{r}"
    );
    // Nothing is issued past the root's end either, and the warning says so.
    let root_end = Certificate::from_pem(&chain.root).unwrap().info().not_after;
    let alice = b
        .add_client(&tunnelbroker_core::NewClient::new(
            "alice".parse().unwrap(),
            ClientKind::Subnet,
        ))
        .unwrap();
    assert!(
        alice.not_after <= root_end,
        "{} > {root_end}",
        alice.not_after
    );
    let warnings = b.lifetime_warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("Example University Root CA")),
        "{warnings:?}"
    );
}
