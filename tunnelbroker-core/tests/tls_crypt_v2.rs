//! Issue 15 at the broker, on both stores: per-client tls-crypt-v2 keys in
//! bundles, the list of current clients the server's verify program reads,
//! old brokers that keep v1, and moving a broker between the two.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use tunnelbroker_core::broker::{RenderOptions, TlsCryptVersion};
use tunnelbroker_core::pki::{ClientBinding, RevocationReason, TlsCryptV2ClientKey};
use tunnelbroker_core::{Broker, ClientKind, NewClient, Settings};

use crate::stores::{TestStore, by_store, sql};

fn settings() -> Settings {
    Settings::new(
        "2001:db8:0:f100::/56".parse().unwrap(),
        "vpn.example.net".parse().unwrap(),
    )
}

fn add(b: &Broker, id: &str) -> tunnelbroker_core::Client {
    b.add_client(&NewClient::new(id.parse().unwrap(), ClientKind::Hermit))
        .unwrap()
}

/// The `<tls-crypt-v2>` key of a client's configuration, if it has one.
fn inline_v2_key(b: &Broker, id: &str) -> Option<TlsCryptV2ClientKey> {
    let cfg = b.client_config(&id.parse().unwrap()).unwrap();
    let text = cfg.config().to_string();
    let body = text
        .split("<tls-crypt-v2>\n")
        .nth(1)?
        .split("</tls-crypt-v2>")
        .next()?;
    Some(TlsCryptV2ClientKey::parse(body).unwrap())
}

fn render(b: &Broker, tmp: &std::path::Path) -> std::path::PathBuf {
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o755)).unwrap();
    let mut o = RenderOptions::new();
    o.dir = Some(tmp.join("server"));
    o.run_dir = Some(tmp.join("run"));
    b.render_server_with(&o).unwrap().dir
}

/// A new broker uses v2: each bundle carries a key of the client's own,
/// bound to its current certificate; the rendered list follows revocation
/// and renewal without a new rendering.
fn new_brokers_give_each_client_its_own_bound_key(store: &TestStore) {
    let tmp = tempfile::tempdir().unwrap();
    let b = Broker::init(&tmp.path().join("broker"), &store.options(settings())).unwrap();
    assert_eq!(b.settings().tls_crypt, TlsCryptVersion::V2);
    let alice = add(&b, "alice");
    let bob = add(&b, "bob");
    let server = b.tls_crypt_v2_server_key().unwrap();
    let key = inline_v2_key(&b, "alice").expect("a <tls-crypt-v2> block");
    let meta = key.unwrap_with(&server).unwrap();
    assert_eq!(
        ClientBinding::from_metadata(&meta).unwrap(),
        ClientBinding::new(alice.id.clone(), alice.serial.clone())
    );
    // Every bundle carries a fresh key; no v1 key is inlined.
    assert_ne!(inline_v2_key(&b, "alice").unwrap(), key);
    let text = b.client_config(&alice.id).unwrap().config().to_string();
    assert!(!text.contains("<tls-crypt>"), "{text}");

    let dir = render(&b, tmp.path());
    let conf = fs::read_to_string(dir.join("tb-client-alice.conf")).unwrap();
    assert!(conf.contains(&format!(
        "\ntls-crypt-v2 {}/tls-crypt-v2-server.key\nscript-security 2\ntls-crypt-v2-verify {}/tls-crypt-v2-verify\n",
        dir.display(),
        dir.display()
    )), "{conf}");
    assert!(!conf.contains("\ntls-crypt "), "{conf}");
    let mode = |f: &str| fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("tls-crypt-v2-server.key"), 0o600);
    assert_eq!(mode("tls-crypt-v2-verify"), 0o755);
    assert_eq!(mode("tls-crypt-v2-clients"), 0o644);
    assert!(!dir.join("tls-crypt.key").exists());
    let list = || fs::read_to_string(dir.join("tls-crypt-v2-clients")).unwrap();
    let line = |c: &tunnelbroker_core::Client| format!("\ntunnelbroker-1 {} {}\n", c.serial, c.id);
    assert!(
        list().contains(&line(&alice)) && list().contains(&line(&bob)),
        "{}",
        list()
    );

    // Renewing alice replaces her binding; revoking bob removes his.
    let renewed = b.renew(&alice.id, None).unwrap();
    assert!(!list().contains(&line(&alice)), "{}", list());
    assert!(list().contains(&line(&renewed)), "{}", list());
    let old = key.unwrap_with(&server).unwrap();
    assert!(!list().contains(&String::from_utf8_lossy(&old[1..]).into_owned()));
    let fresh = inline_v2_key(&b, "alice").unwrap();
    assert_eq!(
        ClientBinding::from_metadata(&fresh.unwrap_with(&server).unwrap()).unwrap(),
        ClientBinding::new(renewed.id.clone(), renewed.serial.clone())
    );
    b.revoke(&bob.id, RevocationReason::KeyCompromise).unwrap();
    assert!(!list().contains("bob"), "{}", list());
    assert!(b.tls_crypt_v2_client_key(&bob.id).is_err());
    // A second rendering changes nothing.
    let again = {
        let mut o = RenderOptions::new();
        o.dir = Some(dir.clone());
        b.render_server_with(&o).unwrap()
    };
    assert!(again.written.is_empty(), "{:?}", again.written);
}
by_store!(new_brokers_give_each_client_its_own_bound_key);

/// A broker made before tls-crypt-v2 (no `tls_crypt` in its settings
/// file, no shared value in its database, no server key) keeps v1; the
/// move makes the key, and the next rendering and bundles are v2.
fn old_brokers_keep_v1_until_moved(store: &TestStore) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("broker");
    let mut s = settings();
    s.tls_crypt = TlsCryptVersion::V1;
    let b = Broker::init(&dir, &store.options(s)).unwrap();
    add(&b, "alice");
    // Make it look old.
    sql(&b, "DELETE FROM shared WHERE key = 'settings.tls_crypt'");
    let toml = fs::read_to_string(&b.paths().settings).unwrap();
    let old: String = toml
        .lines()
        .filter(|l| !l.starts_with("tls_crypt") && !l.contains("tls-crypt-v2 key per client"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!old.contains("tls_crypt ="), "{old}");
    fs::write(&b.paths().settings, &old).unwrap();
    fs::remove_file(&b.paths().tls_crypt_v2_server_key).unwrap();
    drop(b);

    let mut b = Broker::open(&dir).unwrap();
    assert_eq!(b.settings().tls_crypt, TlsCryptVersion::V1);
    assert!(b.open_warnings().is_empty(), "{:?}", b.open_warnings());
    let text = b
        .client_config(&"alice".parse().unwrap())
        .unwrap()
        .config()
        .to_string();
    assert!(text.contains("\n<tls-crypt>\n"), "{text}");
    let server = render(&b, tmp.path());
    assert!(server.join("tls-crypt.key").exists());
    assert!(!server.join("tls-crypt-v2-clients").exists());

    let change = b.set_tls_crypt(TlsCryptVersion::V2).unwrap();
    assert!(change.changed() && change.made_server_key);
    let mode = fs::metadata(&b.paths().tls_crypt_v2_server_key)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let b = Broker::open(&dir).unwrap();
    assert_eq!(b.settings().tls_crypt, TlsCryptVersion::V2);
    assert!(inline_v2_key(&b, "alice").is_some());
    let mut o = RenderOptions::new();
    o.dir = Some(server.clone());
    let report = b.render_server_with(&o).unwrap();
    assert!(
        report.removed.contains(&server.join("tls-crypt.key")),
        "{report:?}"
    );
    assert!(server.join("tls-crypt-v2-clients").exists());

    // And back: v1 again, the same v1 key as before.
    let mut b = b;
    let change = b.set_tls_crypt(TlsCryptVersion::V1).unwrap();
    assert!(change.changed() && !change.made_server_key);
    let text = b
        .client_config(&"alice".parse().unwrap())
        .unwrap()
        .config()
        .to_string();
    assert!(
        text.contains(b.tls_crypt_key().unwrap().to_text()),
        "{text}"
    );
}
by_store!(old_brokers_keep_v1_until_moved);

/// A damaged server key is refused before the setting changes.
#[test]
fn a_damaged_server_key_is_refused_by_the_move() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("broker");
    let mut s = settings();
    s.tls_crypt = TlsCryptVersion::V1;
    let mut b = Broker::init(&dir, &TestStore::Sqlite.options(s)).unwrap();
    fs::write(&b.paths().tls_crypt_v2_server_key, "-----BEGIN OpenVPN tls-crypt-v2 server key-----\nAAAA\n-----END OpenVPN tls-crypt-v2 server key-----\n").unwrap();
    let err = b.set_tls_crypt(TlsCryptVersion::V2).unwrap_err();
    assert!(err.to_string().contains("tls-crypt-v2-server.key"), "{err}");
    assert_eq!(
        Broker::open(&dir).unwrap().settings().tls_crypt,
        TlsCryptVersion::V1
    );
}
