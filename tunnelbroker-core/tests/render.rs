//! The runtime layout of the rendered server side (issue 17, findings 1
//! and 2): everything OpenVPN reads is in the rendered directory, which
//! is recorded and kept current by every CRL the broker signs; render
//! refuses a directory OpenVPN could not reach as nobody.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tunnelbroker_core::broker::{RenderOptions, ServerMode, SessionEnd};
use tunnelbroker_core::pki::RevocationReason;
use tunnelbroker_core::{Broker, ClientKind, Error, ErrorKind, InitOptions, NewClient, Settings};

use crate::operator_tempdir;

fn broker_in(dir: &Path, mode: ServerMode) -> Broker {
    let mut s = Settings::new(
        "2001:db8:0:f100::/56".parse().unwrap(),
        "vpn.example.net".parse().unwrap(),
    );
    s.mode = mode;
    let b = Broker::init(&dir.join("broker"), &InitOptions::new(s)).unwrap();
    b.add_client(&NewClient::new(
        "alice".parse().unwrap(),
        ClientKind::Subnet,
    ))
    .unwrap();
    b
}

fn options(dir: &Path, run: &Path) -> RenderOptions {
    let mut o = RenderOptions::default();
    o.dir = Some(dir.to_owned());
    o.run_dir = Some(run.to_owned());
    o
}

fn mode_of(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn render_refuses_a_directory_nobody_cannot_reach() {
    let tmp = operator_tempdir();
    let b = broker_in(tmp.path(), ServerMode::Shared);
    let private = tmp.path().join("private");
    fs::create_dir(&private).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    let out = private.join("server");
    let err = b
        .render_server_with(&options(&out, tmp.path()))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(matches!(err, Error::ServerDirUnreachable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    assert!(
        msg.contains(&format!("chmod o+x {}", private.display())),
        "{msg}"
    );
    assert!(msg.contains("/etc/openvpn/server"), "{msg}");
    // Nothing was written or recorded.
    assert!(!out.exists());
    assert_eq!(b.recorded_server().unwrap().dir, None);
    // The broker's own directory may be private: rendering elsewhere works.
    fs::set_permissions(b.dir(), fs::Permissions::from_mode(0o700)).unwrap();
    let elsewhere = tmp.path().join("etc");
    b.render_server_with(&options(&elsewhere, tmp.path()))
        .unwrap();
    // ... but its default server/ below it is refused.
    let mut o = RenderOptions::default();
    o.dir = Some(b.paths().server_dir.clone());
    assert!(matches!(
        b.render_server_with(&o),
        Err(Error::ServerDirUnreachable { .. })
    ));
}

#[test]
fn render_warns_about_directories_debians_unit_hides() {
    // Under /tmp: PrivateTmp gives the unit another /tmp.
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let b = broker_in(tmp.path(), ServerMode::PerClient);
    let r = b
        .render_server_with(&options(&tmp.path().join("out"), tmp.path()))
        .unwrap();
    assert!(
        r.warnings.iter().any(|w| w.contains("PrivateTmp")),
        "{:?}",
        r.warnings
    );
}

#[test]
fn render_puts_everything_openvpn_reads_in_the_directory_and_records_it() {
    let tmp = operator_tempdir();
    for mode in [ServerMode::PerClient, ServerMode::Shared] {
        let base = tmp.path().join(mode.to_string());
        fs::create_dir(&base).unwrap();
        let b = broker_in(&base, mode);
        let out = base.join("out");
        let run = base.join("run");
        fs::create_dir(&run).unwrap();
        let mut o = options(&out, &run);
        o.binary = Some("/opt/tb/bin/tunnelbroker".into());
        let r = b.render_server_with(&o).unwrap();
        let out = fs::canonicalize(&out).unwrap();
        assert_eq!(r.dir, out);
        assert_eq!(r.run_dir, run);
        // The CRL is a 0644 copy of the broker's.
        assert_eq!(mode_of(&out.join("crl.pem")), 0o644);
        assert_eq!(
            fs::read(out.join("crl.pem")).unwrap(),
            fs::read(&b.paths().crl).unwrap()
        );
        let conf = match mode {
            ServerMode::Shared => "tb-shared.conf",
            _ => "tb-client-alice.conf",
        };
        let conf = fs::read_to_string(out.join(conf)).unwrap();
        let broker_dir = fs::canonicalize(b.dir()).unwrap();
        assert!(
            !conf.contains(broker_dir.to_str().unwrap()),
            "the config points into the broker directory:\n{conf}"
        );
        assert!(
            conf.contains(&format!("\ncrl-verify {}/crl.pem\n", out.display())),
            "{conf}"
        );
        assert!(
            conf.contains(&format!(
                "\nmanagement {}/tb5000.sock unix\n",
                run.display()
            )),
            "{conf}"
        );
        assert!(!conf.contains("log-append"), "{conf}");
        // The units that keep the CRL fresh.
        let service = fs::read_to_string(out.join("systemd/tunnelbroker-crl.service")).unwrap();
        assert!(
            service.contains(&format!(
                "\nExecStart=/opt/tb/bin/tunnelbroker --dir {} crl\n",
                std::path::absolute(b.dir()).unwrap().display()
            )),
            "{service}"
        );
        let timer = fs::read_to_string(out.join("systemd/tunnelbroker-crl.timer")).unwrap();
        for line in ["OnCalendar=daily", "Persistent=true", "RandomizedDelaySec="] {
            assert!(timer.contains(line), "{timer}");
        }
        // Recorded in the settings, which still parse as before.
        let rec = b.recorded_server().unwrap();
        assert_eq!(rec.dir.as_deref(), Some(out.as_path()));
        assert_eq!(rec.run_dir.as_deref(), Some(run.as_path()));
        let reopened = Broker::open(b.dir()).unwrap();
        assert_eq!(reopened.settings().server, rec);
        // Without -o, the next rendering goes to the recorded directory.
        let again = b.render_server(None).unwrap();
        assert_eq!(again.dir, out);
        assert_eq!(again.run_dir, run);
        // ... and the unit keeps the binary it named.
        assert!(again.written.is_empty(), "{:?}", again.written);
        assert!(!b.paths().server_dir.exists());
    }
}

#[test]
fn every_crl_the_broker_signs_reaches_the_recorded_directory() {
    let tmp = operator_tempdir();
    let b = broker_in(tmp.path(), ServerMode::Shared);
    b.add_client(&NewClient::new("bob".parse().unwrap(), ClientKind::Hermit))
        .unwrap();
    let out = tmp.path().join("out");
    b.render_server_with(&options(&out, tmp.path())).unwrap();
    let copy = out.join("crl.pem");
    let same = || {
        assert_eq!(fs::read(&copy).unwrap(), fs::read(&b.paths().crl).unwrap());
        assert_eq!(mode_of(&copy), 0o644);
    };
    // Revoke: the copy lists the serial, with no re-render.
    let alice = b.client(&"alice".parse().unwrap()).unwrap();
    let revoked = b
        .revoke(&alice.id, RevocationReason::KeyCompromise)
        .unwrap();
    same();
    let crl = tunnelbroker_core::pki::Crl::from_pem(&fs::read_to_string(&copy).unwrap()).unwrap();
    assert!(crl.is_revoked(&alice.serial));
    // No server runs here: the revocation says so.
    assert!(
        matches!(revoked.session, SessionEnd::NoServer(ref s) if s.starts_with(tmp.path())),
        "{:?}",
        revoked.session
    );
    // Renew and refresh too.
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o600)).unwrap();
    b.renew(&"bob".parse().unwrap(), None).unwrap();
    same();
    let before = fs::read(&copy).unwrap();
    b.refresh_crl().unwrap();
    same();
    assert_ne!(fs::read(&copy).unwrap(), before);
}

#[test]
fn a_recorded_path_that_is_not_absolute_is_refused() {
    let tmp = operator_tempdir();
    let b = broker_in(tmp.path(), ServerMode::Shared);
    let text = fs::read_to_string(&b.paths().settings).unwrap();
    assert!(
        text.contains("[server]\n# dir = \"\"\n# run_dir = \"\"\n"),
        "{text}"
    );
    let bad = text.replace("# dir = \"\"", "dir = \"relative/server\"");
    fs::write(&b.paths().settings, bad).unwrap();
    let err = Broker::open(b.dir()).unwrap_err();
    assert!(err.to_string().contains("server.dir"), "{err}");
}

#[test]
fn the_server_section_round_trips_through_the_settings_file() {
    let mut s = Settings::new(
        "2001:db8:0:f100::/56".parse().unwrap(),
        "vpn.example.net".parse().unwrap(),
    );
    assert_eq!(Settings::from_toml(&s.to_toml()).unwrap(), s);
    s.server.dir = Some("/etc/openvpn/server".into());
    s.server.run_dir = Some("/run/openvpn-server".into());
    let text = s.to_toml();
    assert!(
        text.contains(
            "[server]\ndir = \"/etc/openvpn/server\"\nrun_dir = \"/run/openvpn-server\"\n"
        ),
        "{text}"
    );
    assert_eq!(Settings::from_toml(&text).unwrap(), s);
    // A settings file of an older broker, without the section, still reads.
    let old = text[..text.find("\n# Where `tunnelbroker server render`").unwrap()].to_owned();
    assert_eq!(
        Settings::from_toml(&old).unwrap().server,
        Default::default()
    );
}

#[test]
fn a_run_dir_too_long_for_a_socket_is_refused_before_anything_is_written() {
    let tmp = operator_tempdir();
    let b = broker_in(tmp.path(), ServerMode::Shared);
    let out = tmp.path().join("out");
    let long = Path::new("/run").join("r".repeat(100));
    let err = b.render_server_with(&options(&out, &long)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("shorter run directory"), "{err}");
    assert!(!out.join("tb-shared.conf").exists());
    assert_eq!(b.recorded_server().unwrap(), Default::default());
}
