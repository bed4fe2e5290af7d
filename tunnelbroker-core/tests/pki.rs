//! The CA checked with someone else's eyes: `openssl verify`, `openssl crl`
//! and `pkilint`, for every key algorithm, for generated and imported CAs.
//!
//! `openssl` is looked up at /usr/bin/openssl and on PATH; `pkilint` in
//! `$PKILINT_BIN_DIR` and on PATH (`scripts/test` installs it into
//! `target/test-venv`). A missing tool skips with a printed reason, except
//! when `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use time::OffsetDateTime;
use tunnelbroker_core::pki::{
    Ca, CaParams, Certificate, Crl, KeyType, PrivateKey, Purpose, RevocationReason, RevokedCert,
    Serial,
};
use tunnelbroker_core::{ClientId, Error};

const ALL: [KeyType; 6] = [
    KeyType::P256,
    KeyType::P384,
    KeyType::Ed25519,
    KeyType::Rsa2048,
    KeyType::Rsa3072,
    KeyType::Rsa4096,
];

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skips (returns `None`) with a reason, or panics under `CI=true`.
fn missing<T>(what: &str) -> Option<T> {
    if in_ci() {
        panic!("{what} is required when CI=true");
    }
    eprintln!("SKIPPED: {what} not found");
    None
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn openssl() -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/bin/openssl");
    if fixed.is_file() {
        return Some(fixed);
    }
    on_path("openssl").or_else(|| missing("openssl"))
}

/// The directory holding pkilint's `lint_*` programs.
fn pkilint_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PKILINT_BIN_DIR") {
        let dir = PathBuf::from(dir);
        if dir.join("lint_pkix_cert").is_file() {
            return Some(dir);
        }
    }
    if let Some(p) = on_path("lint_pkix_cert") {
        return p.parent().map(Path::to_path_buf);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-venv/bin");
    if venv.join("lint_pkix_cert").is_file() {
        return Some(venv);
    }
    missing("pkilint (set PKILINT_BIN_DIR or run scripts/test)")
}

fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write(dir: &Path, name: &str, data: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p.to_str().unwrap().to_owned()
}

fn id(s: &str) -> ClientId {
    s.parse().unwrap()
}

fn revoke(cert: &Certificate, reason: RevocationReason) -> RevokedCert {
    RevokedCert {
        serial: cert.serial().clone(),
        revoked_at: OffsetDateTime::now_utc(),
        reason,
        not_after: cert.info().not_after,
    }
}

/// `openssl verify` of `leaf` against `ca`, optionally with a CRL.
fn verify(openssl: &Path, ca: &str, leaf: &str, crl: Option<&str>) -> Output {
    let mut args = vec!["verify", "-CAfile", ca];
    if let Some(crl) = crl {
        args.extend(["-crl_check", "-CRLfile", crl]);
    }
    args.push(leaf);
    run(openssl, &args)
}

/// The serials `openssl crl -text` lists, upper-case hex without colons.
fn openssl_crl_serials(openssl: &Path, crl: &str) -> Vec<String> {
    let out = run(openssl, &["crl", "-in", crl, "-noout", "-text"]);
    assert!(out.status.success(), "openssl crl: {}", text(&out));
    let mut serials: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number: "))
        .map(|s| s.trim().to_uppercase())
        .collect();
    serials.sort();
    serials
}

fn sorted(serials: &[&Serial]) -> Vec<String> {
    let mut v: Vec<String> = serials.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// The full chain of checks for one CA: server and client verify, a
/// certificate of another CA fails, the CRL lists exactly the revoked
/// serials and `-crl_check` reports the revoked client as revoked.
fn check_ca_with_openssl(openssl: &Path, dir: &Path, ca: &Ca, leaf_type: KeyType) {
    let tag = format!("{leaf_type}");
    let ca_pem = write(dir, "ca.pem", ca.certificate().pem());
    let server = ca.issue_server("vpn.example.net", leaf_type, 730).unwrap();
    let alice = ca.issue_client(&id("alice"), leaf_type, 365).unwrap();
    let bob = ca.issue_client(&id("bob"), leaf_type, 365).unwrap();
    assert_eq!(server.certificate.info().purpose, Purpose::Server);
    assert_eq!(alice.certificate.info().purpose, Purpose::Client);
    assert_eq!(alice.certificate.info().common_name, "alice");
    let server_pem = write(dir, "server.pem", server.certificate.pem());
    let alice_pem = write(dir, "alice.pem", alice.certificate.pem());
    let bob_pem = write(dir, "bob.pem", bob.certificate.pem());

    for leaf in [&server, &alice, &bob] {
        ca.verify(&leaf.certificate).unwrap();
        assert!(leaf.certificate.matches_key(&leaf.key), "{tag}");
    }
    for leaf in [&server_pem, &alice_pem, &bob_pem] {
        let out = verify(openssl, &ca_pem, leaf, None);
        assert!(out.status.success(), "{tag}: {}", text(&out));
        assert!(text(&out).contains(": OK"), "{tag}: {}", text(&out));
    }
    // openssl agrees that key and certificate belong together.
    let key_path = write(dir, "alice.key", alice.key.to_pem());
    let pub_from_key = run(openssl, &["pkey", "-in", &key_path, "-pubout"]);
    let pub_from_cert = run(openssl, &["x509", "-in", &alice_pem, "-noout", "-pubkey"]);
    assert!(pub_from_key.status.success(), "{}", text(&pub_from_key));
    assert_eq!(pub_from_key.stdout, pub_from_cert.stdout, "{tag}");

    // A certificate of another CA fails.
    let stranger = Ca::generate(&CaParams::default()).unwrap();
    let eve = stranger.issue_client(&id("eve"), leaf_type, 365).unwrap();
    let eve_pem = write(dir, "eve.pem", eve.certificate.pem());
    let out = verify(openssl, &ca_pem, &eve_pem, None);
    assert!(!out.status.success(), "{tag}: {}", text(&out));
    assert!(ca.verify(&eve.certificate).is_err());

    // Revoke alice: the CRL lists exactly her serial, openssl says revoked,
    // bob and the server still pass with -crl_check.
    let crl = ca
        .crl(
            &[revoke(&alice.certificate, RevocationReason::KeyCompromise)],
            1,
            30,
        )
        .unwrap();
    let crl_pem = write(dir, "crl.pem", crl.pem());
    assert_eq!(
        openssl_crl_serials(openssl, &crl_pem),
        sorted(&[alice.certificate.serial()])
    );
    let out = verify(openssl, &ca_pem, &alice_pem, Some(&crl_pem));
    assert!(!out.status.success(), "{tag}: {}", text(&out));
    assert!(
        text(&out).contains("certificate revoked"),
        "{tag}: {}",
        text(&out)
    );
    for leaf in [&server_pem, &bob_pem] {
        let out = verify(openssl, &ca_pem, leaf, Some(&crl_pem));
        assert!(out.status.success(), "{tag}: {}", text(&out));
    }

    // Two revoked: both listed, the CRL text says Key Compromise / Superseded.
    let crl = ca
        .crl(
            &[
                revoke(&alice.certificate, RevocationReason::KeyCompromise),
                revoke(&bob.certificate, RevocationReason::Superseded),
            ],
            2,
            30,
        )
        .unwrap();
    let crl_pem = write(dir, "crl2.pem", crl.pem());
    assert_eq!(
        openssl_crl_serials(openssl, &crl_pem),
        sorted(&[alice.certificate.serial(), bob.certificate.serial()])
    );
    let out = run(openssl, &["crl", "-in", &crl_pem, "-noout", "-text"]);
    let t = text(&out);
    assert!(
        t.contains("Key Compromise") && t.contains("Superseded"),
        "{t}"
    );
    assert!(
        t.contains("X509v3 CRL Number") && t.contains("Next Update"),
        "{t}"
    );
    let out = verify(openssl, &ca_pem, &bob_pem, Some(&crl_pem));
    assert!(
        text(&out).contains("certificate revoked"),
        "{tag}: {}",
        text(&out)
    );
}

/// The key identifier `openssl x509 -text` shows after `label`.
fn openssl_key_id(openssl: &Path, args: &[&str], label: &str) -> String {
    let out = run(openssl, args);
    let t = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = t.lines();
    while let Some(l) = lines.next() {
        if l.contains(label) {
            let v = lines.next().unwrap_or_default().trim();
            return v.trim_start_matches("keyid:").to_owned();
        }
    }
    panic!("no {label} in {t}");
}

#[test]
fn every_algorithm_verifies_and_revokes_with_openssl() {
    let Some(openssl) = openssl() else { return };
    for kt in ALL {
        let started = std::time::Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate(&CaParams {
            key_type: kt,
            ..CaParams::default()
        })
        .unwrap();
        check_ca_with_openssl(&openssl, dir.path(), &ca, kt);
        eprintln!("{kt}: {:?}", started.elapsed());
    }
}

#[test]
fn mixed_algorithms_verify_with_openssl() {
    let Some(openssl) = openssl() else { return };
    for (ca_type, leaf_type) in [
        (KeyType::P256, KeyType::Ed25519),
        (KeyType::Ed25519, KeyType::P256),
        (KeyType::P384, KeyType::Rsa2048),
        (KeyType::Rsa2048, KeyType::P256),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate(&CaParams {
            key_type: ca_type,
            ..CaParams::default()
        })
        .unwrap();
        check_ca_with_openssl(&openssl, dir.path(), &ca, leaf_type);
    }
}

/// `openssl req -x509` CAs: EC (SEC1 and PKCS#8 keys), RSA (PKCS#1 key).
/// OpenSSL derives its SKI with SHA-1, rcgen with SHA-256: the CRL's AKI
/// must still be the CA's own SKI, or OpenVPN ignores the CRL.
#[test]
fn imported_openssl_cas_issue_and_revoke() {
    let Some(openssl) = openssl() else { return };
    let ku = "keyUsage=critical,keyCertSign,cRLSign";
    let cases: [(&str, Vec<&str>); 3] = [
        (
            "ec-pkcs8",
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ),
        (
            "ec-sec1",
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
        ),
        ("rsa-pkcs1", vec!["-newkey", "rsa:2048"]),
    ];
    for (name, newkey) in cases {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let key = d.join("ca.key").to_str().unwrap().to_owned();
        let cert = d.join("ca.pem").to_str().unwrap().to_owned();
        let mut args = vec!["req", "-x509", "-nodes", "-days", "30", "-subj"];
        args.push("/C=DE/O=Imported/CN=Imported CA");
        args.extend(["-addext", ku, "-keyout", &key, "-out", &cert]);
        args.extend(newkey.iter().copied());
        let out = run(&openssl, &args);
        assert!(out.status.success(), "{name}: {}", text(&out));
        let mut key_pem = std::fs::read_to_string(&key).unwrap();
        if name == "ec-sec1" {
            let out = run(&openssl, &["ec", "-in", &key]);
            key_pem = String::from_utf8(out.stdout).unwrap();
            assert!(key_pem.contains("BEGIN EC PRIVATE KEY"), "{key_pem}");
        }
        if name == "rsa-pkcs1" {
            let out = run(&openssl, &["rsa", "-in", &key, "-traditional"]);
            key_pem = String::from_utf8(out.stdout).unwrap();
            assert!(key_pem.contains("BEGIN RSA PRIVATE KEY"), "{key_pem}");
        }
        let cert_pem = std::fs::read_to_string(&cert).unwrap();
        let ca = Ca::from_pem(&cert_pem, &key_pem).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            ca.key()
                .unwrap()
                .to_pem()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        check_ca_with_openssl(&openssl, d, &ca, KeyType::P256);

        // AKI of the CRL and of a leaf = SKI of the imported CA, as openssl sees them.
        let ski = openssl_key_id(
            &openssl,
            &["x509", "-in", &cert, "-noout", "-text"],
            "Subject Key Identifier",
        );
        let crl = ca.crl(&[], 3, 30).unwrap();
        let crl_path = write(d, "empty.pem", crl.pem());
        let crl_aki = openssl_key_id(
            &openssl,
            &["crl", "-in", &crl_path, "-noout", "-text"],
            "Authority Key Identifier",
        );
        assert_eq!(crl_aki, ski, "{name}");
        let leaf = ca.issue_client(&id("frank"), KeyType::P256, 30).unwrap();
        let leaf_path = write(d, "frank.pem", leaf.certificate.pem());
        let leaf_aki = openssl_key_id(
            &openssl,
            &["x509", "-in", &leaf_path, "-noout", "-text"],
            "Authority Key Identifier",
        );
        assert_eq!(leaf_aki, ski, "{name}");
    }
}

#[test]
fn imported_non_ca_and_foreign_key_are_refused() {
    let Some(openssl) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = d.join("leaf.key").to_str().unwrap().to_owned();
    let cert = d.join("leaf.pem").to_str().unwrap().to_owned();
    let out = run(
        &openssl,
        &[
            "req",
            "-x509",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=not a ca",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
            &key,
            "-out",
            &cert,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let cert_pem = std::fs::read_to_string(&cert).unwrap();
    let key_pem = std::fs::read_to_string(&key).unwrap();
    let err = Ca::from_pem(&cert_pem, &key_pem).unwrap_err();
    assert!(matches!(err, Error::NotACa { .. }), "{err}");

    let ours = Ca::generate(&CaParams::default()).unwrap();
    let err = Ca::from_pem(ours.certificate().pem(), &key_pem).unwrap_err();
    assert!(matches!(err, Error::CaKeyMismatch { .. }), "{err}");
}

/// A CSR made by openssl: the CN it asks for is replaced by the client ID,
/// the client's key (which never reaches the broker) matches the result.
#[test]
fn openssl_csr_is_signed_for_the_client_id() {
    let Some(openssl) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::generate(&CaParams::default()).unwrap();
    let ca_pem = write(d, "ca.pem", ca.certificate().pem());
    for (name, newkey) in [
        (
            "ec",
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ),
        ("ed25519", vec!["-newkey", "ed25519"]),
        ("rsa", vec!["-newkey", "rsa:2048"]),
    ] {
        let key = d.join(format!("{name}.key")).to_str().unwrap().to_owned();
        let csr = d.join(format!("{name}.csr")).to_str().unwrap().to_owned();
        let mut args = vec!["req", "-new", "-nodes", "-subj", "/CN=root/O=evil"];
        args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        args.extend(["-keyout", &key, "-out", &csr]);
        args.extend(newkey.iter().copied());
        let out = run(&openssl, &args);
        assert!(out.status.success(), "{name}: {}", text(&out));
        let csr_pem = std::fs::read_to_string(&csr).unwrap();
        let cert = ca.sign_client_csr(&id("grace"), &csr_pem, 365).unwrap();
        assert_eq!(cert.info().common_name, "grace");
        assert_eq!(cert.info().purpose, Purpose::Client);
        let client_key = PrivateKey::from_pem(&std::fs::read_to_string(&key).unwrap()).unwrap();
        assert!(cert.matches_key(&client_key), "{name}");
        let cert_path = write(d, &format!("{name}.pem"), cert.pem());
        let out = verify(&openssl, &ca_pem, &cert_path, None);
        assert!(out.status.success(), "{name}: {}", text(&out));
        let out = run(
            &openssl,
            &[
                "x509",
                "-in",
                &cert_path,
                "-noout",
                "-subject",
                "-ext",
                "basicConstraints",
            ],
        );
        let t = text(&out);
        assert!(
            t.contains("CN = grace") && !t.contains("evil") && t.contains("CA:FALSE"),
            "{t}"
        );
    }
}

/// pkilint at WARNING: CA, server, client, both chains and the CRL, for
/// every key algorithm.
#[test]
fn pkilint_finds_nothing_at_warning() {
    let Some(bin) = pkilint_dir() else { return };
    for kt in ALL {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = Ca::generate(&CaParams {
            key_type: kt,
            ..CaParams::default()
        })
        .unwrap();
        let server = ca.issue_server("vpn.example.net", kt, 730).unwrap();
        let client = ca.issue_client(&id("alice"), kt, 365).unwrap();
        let crl = ca
            .crl(
                &[revoke(&client.certificate, RevocationReason::KeyCompromise)],
                1,
                30,
            )
            .unwrap();
        let ca_pem = write(d, "ca.pem", ca.certificate().pem());
        let server_pem = write(d, "server.pem", server.certificate.pem());
        let client_pem = write(d, "client.pem", client.certificate.pem());
        let crl_pem = write(d, "crl.pem", crl.pem());
        let empty_crl_pem = write(d, "crl0.pem", ca.crl(&[], 2, 30).unwrap().pem());
        let mut runs: Vec<(&str, Vec<&str>)> = Vec::new();
        for cert in [&ca_pem, &server_pem, &client_pem] {
            runs.push(("lint_pkix_cert", vec!["lint", "-s", "WARNING", cert]));
        }
        for leaf in [&server_pem, &client_pem] {
            runs.push((
                "lint_pkix_signer_signee_cert_chain",
                vec!["lint", "-s", "WARNING", &ca_pem, leaf],
            ));
        }
        for c in [&crl_pem, &empty_crl_pem] {
            runs.push((
                "lint_crl",
                vec!["lint", "-s", "WARNING", "-t", "CRL", "-p", "PKIX", c],
            ));
        }
        // pkilint starts slowly: run this algorithm's lints side by side.
        lint_side_by_side(&bin, &format!("{kt}"), &runs);
    }
}

#[test]
fn crl_read_back_matches_what_was_revoked() {
    let ca = Ca::generate(&CaParams::default()).unwrap();
    let a = ca.issue_client(&id("a"), KeyType::P256, 30).unwrap();
    let b = ca.issue_client(&id("b"), KeyType::Ed25519, 30).unwrap();
    let crl = ca
        .crl(
            &[
                revoke(&a.certificate, RevocationReason::Unspecified),
                revoke(&b.certificate, RevocationReason::CessationOfOperation),
            ],
            9,
            30,
        )
        .unwrap();
    let back = Crl::from_pem(crl.pem()).unwrap();
    assert_eq!(back.number(), 9);
    let mut got = back.revoked_serials();
    got.sort();
    let mut want = vec![
        a.certificate.serial().clone(),
        b.certificate.serial().clone(),
    ];
    want.sort();
    assert_eq!(got, want);
    assert!(back.next_update() > OffsetDateTime::now_utc() + time::Duration::days(29));
}

/// The broker and the Python layer share these across threads.
#[test]
fn pki_values_are_send_and_sync() {
    fn both<T: Send + Sync>() {}
    both::<Ca>();
    both::<PrivateKey>();
    both::<Certificate>();
    both::<Crl>();
    both::<tunnelbroker_core::pki::TlsCryptKey>();
}

/// pkilint at WARNING on an imported intermediate (openssl-made, under an
/// openssl-made root): the chains root → intermediate → client and
/// intermediate → server, the leaves and the intermediate's CRL.
#[test]
fn pkilint_passes_the_chain_root_intermediate_client() {
    let Some(bin) = pkilint_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(made) = crate::chain_e2e::openssl_chain(d) else {
        return;
    };
    let ca = Ca::from_pem(&made.chain(), &made.int_key).unwrap();
    assert_eq!(ca.issuers().len(), 1);
    let server = ca
        .issue_server("vpn.example.net", KeyType::P256, 730)
        .unwrap();
    let client = ca.issue_client(&id("alice"), KeyType::P256, 365).unwrap();
    let crl = ca
        .crl(
            &[revoke(&client.certificate, RevocationReason::KeyCompromise)],
            1,
            30,
        )
        .unwrap();
    let root_pem = write(d, "root.pem", &made.root);
    let int_pem = write(d, "int.pem", &made.int);
    let server_pem = write(d, "server.pem", server.certificate.pem());
    let client_pem = write(d, "client.pem", client.certificate.pem());
    let crl_pem = write(d, "crl.pem", crl.pem());
    let chain = "lint_pkix_signer_signee_cert_chain";
    let runs: Vec<(&str, Vec<&str>)> = vec![
        (chain, vec!["lint", "-s", "WARNING", &root_pem, &int_pem]),
        (chain, vec!["lint", "-s", "WARNING", &int_pem, &client_pem]),
        (chain, vec!["lint", "-s", "WARNING", &int_pem, &server_pem]),
        ("lint_pkix_cert", vec!["lint", "-s", "WARNING", &client_pem]),
        ("lint_pkix_cert", vec!["lint", "-s", "WARNING", &server_pem]),
        (
            "lint_crl",
            vec!["lint", "-s", "WARNING", "-t", "CRL", "-p", "PKIX", &crl_pem],
        ),
    ];
    lint_side_by_side(&bin, "chain", &runs);
    // openssl agrees: the client verifies against the chain, and not once
    // revoked.
    let chain_pem = write(d, "chain.pem", &ca.chain_pem());
    let Some(openssl) = openssl() else { return };
    let out = verify(&openssl, &chain_pem, &client_pem, None);
    assert!(out.status.success(), "{}", text(&out));
    let out = verify(&openssl, &chain_pem, &client_pem, Some(&crl_pem));
    assert!(text(&out).contains("certificate revoked"), "{}", text(&out));
}

/// Runs pkilint's programs `(program, args)` side by side (pkilint starts
/// slowly) and asserts that each passes with nothing to say.
fn lint_side_by_side(bin: &Path, label: &str, runs: &[(&str, Vec<&str>)]) {
    let children: Vec<_> = runs
        .iter()
        .map(|(prog, args)| {
            Command::new(bin.join(prog))
                .args(args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"))
        })
        .collect();
    for ((prog, args), child) in runs.iter().zip(children) {
        let out = child.wait_with_output().unwrap();
        let t = text(&out);
        assert!(
            out.status.success() && t.trim().is_empty(),
            "{label}: {prog} {args:?}: status {:?}\n{t}",
            out.status
        );
    }
}

fn openvpn() -> Option<PathBuf> {
    on_path("openvpn")
        .or_else(|| Some(PathBuf::from("/usr/sbin/openvpn")).filter(|p| p.is_file()))
        .or_else(|| missing("openvpn"))
}

/// Issue 15: client keys that `openvpn --genkey tls-crypt-v2-client` makes
/// with our server key are unwrapped by us, metadata and all; and a server
/// key OpenVPN made is read by us and wraps keys we unwrap again.
#[test]
fn tls_crypt_v2_keys_cross_check_with_openvpn() {
    use tunnelbroker_core::pki::{ClientBinding, TlsCryptV2ClientKey, TlsCryptV2ServerKey};
    let Some(openvpn) = openvpn() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ours = TlsCryptV2ServerKey::generate().unwrap();
    let server = write(dir, "server.key", &ours.to_pem());
    let binding = ClientBinding::new(id("alice.lab-1_b"), "7F00FF".parse().unwrap());
    let line = binding.to_string();
    // OpenVPN takes the user metadata in base64 and adds the type byte 0x00.
    let b64 = base64(line.as_bytes());
    let client = dir.join("client.key");
    let out = run(
        &openvpn,
        &[
            "--tls-crypt-v2",
            &server,
            "--genkey",
            "tls-crypt-v2-client",
            client.to_str().unwrap(),
            &b64,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let made = TlsCryptV2ClientKey::parse(&std::fs::read_to_string(&client).unwrap()).unwrap();
    let meta = made.unwrap_with(&ours).unwrap();
    assert_eq!(ClientBinding::from_metadata(&meta).unwrap(), binding);
    // Another server key cannot unwrap it.
    let other = TlsCryptV2ServerKey::generate().unwrap();
    assert!(made.unwrap_with(&other).is_err());

    // Without metadata OpenVPN writes a timestamp (type 0x01): not ours.
    let stamped = dir.join("stamped.key");
    let out = run(
        &openvpn,
        &[
            "--tls-crypt-v2",
            &server,
            "--genkey",
            "tls-crypt-v2-client",
            stamped.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stamped = TlsCryptV2ClientKey::parse(&std::fs::read_to_string(&stamped).unwrap()).unwrap();
    let meta = stamped.unwrap_with(&ours).unwrap();
    assert_eq!(meta.len(), 9);
    assert_eq!(meta[0], 0x01);
    assert!(ClientBinding::from_metadata(&meta).is_err());

    // OpenVPN's own server key: we read it, and OpenVPN wraps with it what
    // we unwrap.
    let theirs = dir.join("theirs.key");
    let out = run(
        &openvpn,
        &["--genkey", "tls-crypt-v2-server", theirs.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let theirs_key =
        TlsCryptV2ServerKey::parse(&std::fs::read_to_string(&theirs).unwrap()).unwrap();
    let client2 = dir.join("client2.key");
    let out = run(
        &openvpn,
        &[
            "--tls-crypt-v2",
            theirs.to_str().unwrap(),
            "--genkey",
            "tls-crypt-v2-client",
            client2.to_str().unwrap(),
            &b64,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let made2 = TlsCryptV2ClientKey::parse(&std::fs::read_to_string(&client2).unwrap()).unwrap();
    assert_eq!(
        ClientBinding::from_metadata(&made2.unwrap_with(&theirs_key).unwrap()).unwrap(),
        binding
    );
    // And our PEM of their key is byte for byte what OpenVPN wrote.
    assert_eq!(
        theirs_key.to_pem().trim(),
        std::fs::read_to_string(&theirs).unwrap().trim()
    );
}

/// Standard base64 with padding (for OpenVPN's metadata argument).
fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
