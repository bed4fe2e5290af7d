//! Hostile input for every text parser of the core: client configurations
//! (what `doctor` reads), settings, PEM certificates, keys, CRLs and CSRs,
//! tls-crypt keys, client IDs and CSV imports. Random text and random edits
//! of valid text: never a panic, and every refusal is one line of bounded
//! length (a message must not echo a megabyte of garbage back).

use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use tunnelbroker_core::broker::ServerMode;
use tunnelbroker_core::doctor::ClientConfigFile;
use tunnelbroker_core::pki::{Certificate, Crl, PrivateKey, TlsCryptKey};
use tunnelbroker_core::{Broker, ClientId, ClientKind, InitOptions, NewClient, Settings};

/// Valid texts to edit: a broker with a subnet and a hermit client.
struct Fixture {
    _dir: tempfile::TempDir,
    broker: Broker,
    configs: Vec<String>,
    settings: String,
    cert: String,
    key: String,
    crl: String,
    tls: String,
    csr: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Settings::new(
            "2001:db8:0:f100::/56".parse().unwrap(),
            "vpn.example.net".parse().unwrap(),
        );
        s.mode = ServerMode::PerClient;
        let broker = Broker::init(&dir.path().join("b"), &InitOptions::new(s)).unwrap();
        let mut configs = Vec::new();
        for (id, kind) in [("alice", ClientKind::Subnet), ("bob", ClientKind::Hermit)] {
            let id: ClientId = id.parse().unwrap();
            broker
                .add_client(&NewClient::new(id.clone(), kind))
                .unwrap();
            let cfg = broker.client_config(&id).unwrap();
            let name = cfg.file_name();
            let files = cfg.emit().unwrap();
            let conf = files.iter().find(|f| f.name == name).unwrap();
            configs.push(conf.text.clone());
        }
        let alice = broker
            .client_credentials(&"alice".parse().unwrap())
            .unwrap();
        let csr = rcgen::CertificateParams::new(vec![])
            .unwrap()
            .serialize_request(&rcgen::KeyPair::generate().unwrap())
            .unwrap()
            .pem()
            .unwrap();
        Fixture {
            settings: std::fs::read_to_string(&broker.paths().settings).unwrap(),
            cert: alice.certificate.pem().to_owned(),
            key: alice.key.unwrap().to_pem().to_owned(),
            crl: broker.crl().unwrap().pem().to_owned(),
            tls: broker.tls_crypt_key().unwrap().to_text().to_owned(),
            csr,
            configs,
            broker,
            _dir: dir,
        }
    })
}

/// One edit of a text: delete a span, insert text, or repeat a line.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, String),
    RepeatLine(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let junk = prop_oneof![
        "[ -~]{0,40}",
        "\\PC{0,20}",
        Just("\n".to_owned()),
        Just("<key>\n".to_owned()),
        Just("</ca>".to_owned()),
        Just("-----END CERTIFICATE-----\n".to_owned()),
        Just("# tunnelbroker-doctor: id=x kind=subnet prefix=::/0\n".to_owned()),
        Just("\u{0}".to_owned()),
        Just("=\"\"\"".to_owned()),
    ];
    prop_oneof![
        (any::<usize>(), 0usize..200).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), junk).prop_map(|(at, s)| Edit::Insert(at, s)),
        any::<usize>().prop_map(Edit::RepeatLine),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut t = text.to_owned();
    let boundary = |t: &str, at: usize| {
        let mut i = at % (t.len() + 1);
        while !t.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    for e in edits {
        match e {
            Edit::Delete(at, n) => {
                let s = boundary(&t, *at);
                let e = boundary(&t, s.saturating_add(*n).min(t.len()));
                if s <= e {
                    t.replace_range(s..e, "");
                }
            }
            Edit::Insert(at, s) => {
                let i = boundary(&t, *at);
                t.insert_str(i, s);
            }
            Edit::RepeatLine(n) => {
                let lines: Vec<&str> = t.lines().collect();
                if !lines.is_empty() {
                    let line = lines[n % lines.len()].to_owned();
                    t.push('\n');
                    t.push_str(&line);
                    t.push('\n');
                }
            }
        }
    }
    t
}

/// A refusal is one line, not empty, and short.
fn check<T>(what: &str, input: &str, r: tunnelbroker_core::Result<T>) -> Result<(), TestCaseError> {
    if let Err(e) = r {
        let text = e.to_string();
        prop_assert!(!text.is_empty(), "{what}: empty message for {input:?}");
        prop_assert_eq!(text.lines().count(), 1, "{}: {:?}", what, text);
        prop_assert!(text.len() <= 600, "{what}: {} bytes: {text}", text.len());
    }
    Ok(())
}

/// Each parser over `input`.
fn parse_all(input: &str) -> Result<(), TestCaseError> {
    let f = fixture();
    check(
        "config",
        input,
        ClientConfigFile::parse(Path::new("x.conf"), input),
    )?;
    check("settings", input, Settings::from_toml(input))?;
    check("certificate", input, Certificate::from_pem(input))?;
    check("key", input, PrivateKey::from_pem(input))?;
    check("crl", input, Crl::from_pem(input))?;
    check("tls-crypt", input, TlsCryptKey::parse(input))?;
    check("client id", input, ClientId::new(input))?;
    check(
        "state",
        input,
        tunnelbroker_core::openvpn::parse_state(input),
    )?;
    check(
        "p2p status",
        input,
        tunnelbroker_core::openvpn::parse_link_bytes(input),
    )?;
    let id: ClientId = "mallory".parse().unwrap();
    check("csr", input, f.broker.ca().sign_client_csr(&id, input, 30))?;
    Ok(())
}

// 256 cases each (proptest's default; PROPTEST_CASES=N for a longer hunt).
proptest! {
    #[test]
    fn random_text_is_refused_cleanly(input in prop_oneof!["\\PC{0,300}", "[ -~\n]{0,300}"]) {
        parse_all(&input)?;
    }

    #[test]
    fn edited_valid_texts_are_parsed_or_refused_cleanly(
        which in 0usize..7,
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        let f = fixture();
        let base = match which {
            0 => &f.configs[0],
            1 => &f.configs[1],
            2 => &f.settings,
            3 => &f.cert,
            4 => &f.key,
            5 => &f.crl,
            _ => &f.tls,
        };
        parse_all(&apply(base, &edits))?;
        let csr = apply(&f.csr, &edits);
        let id: ClientId = "mallory".parse().unwrap();
        check("csr", &csr, f.broker.ca().sign_client_csr(&id, &csr, 30))?;
    }
}

#[test]
fn the_unedited_texts_parse() {
    let f = fixture();
    for c in &f.configs {
        ClientConfigFile::parse(Path::new("x.conf"), c).unwrap();
    }
    Settings::from_toml(&f.settings).unwrap();
    Certificate::from_pem(&f.cert).unwrap();
    PrivateKey::from_pem(&f.key).unwrap();
    Crl::from_pem(&f.crl).unwrap();
    TlsCryptKey::parse(&f.tls).unwrap();
    f.broker
        .ca()
        .sign_client_csr(&"mallory".parse().unwrap(), &f.csr, 30)
        .unwrap();
}

#[test]
fn overlong_input_gets_a_short_answer() {
    let big = "A".repeat(2 << 20);
    let lines = "remote x 1\n".repeat(200_000);
    for input in [&big, &lines] {
        parse_all(input).unwrap();
    }
}

#[test]
fn a_csv_import_of_edited_rows_keeps_every_good_row() {
    let f = fixture();
    let good = "id,kind,os,email,name\nc1,subnet,linux,a@example.org,A\nc2,hermit,windows,,\n";
    let hostile = "\
../etc/passwd,hermit,linux,,
c3;reboot,hermit,linux,,
c4,subnet,plan9,,
c5,hermit,linux,,,2001:db8:9::1
c6,router,linux,,
\u{e9}t\u{e9},hermit,linux,,
c7,hermit,linux,\"a\nb\",
,hermit,linux,,
c8,subnet,linux,,,2001:db8:0:f1ff::/64
";
    let report = f
        .broker
        .import_csv(&format!("{good}{hostile}"), &mut |_, _| {})
        .unwrap();
    let added: Vec<_> = report.added.iter().map(|c| c.id.to_string()).collect();
    assert_eq!(added, ["c1", "c2"]);
    assert_eq!(report.errors.len(), 9, "{:?}", report.errors);
    for e in &report.errors {
        assert_eq!(e.error.lines().count(), 1, "{e:?}");
        assert!(e.line >= 4, "{e:?}");
    }
}

/// Serves one connection on a management socket: reads the command line,
/// answers `reply` and closes.
fn management_reply(reply: &'static [u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("mgmt.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
        let _ = reader.read_line(&mut String::new());
        let _ = (&conn).write_all(reply);
    });
    (dir, socket)
}

// Found by the fuzz target `management`: the text of an `ERROR:` or
// `SUCCESS:` line went into the message and the revocation report raw, NULs
// and escape sequences included.
#[test]
fn management_replies_with_control_characters_stay_one_line() {
    use tunnelbroker_core::openvpn::{CommonName, Management};
    let (_dir, socket) =
        management_reply(b">INFO:hello\r\nERROR:SUCCESS: signal\0\0\x1b[31mTERM thrown\r\n");
    let err = Management::connect(&socket)
        .unwrap()
        .terminate()
        .unwrap_err();
    let msg = err.to_string();
    assert!(!msg.chars().any(char::is_control), "{msg:?}");
    assert!(
        msg.contains("signal\\u{0}\\u{0}\\u{1b}[31mTERM thrown"),
        "{msg}"
    );

    let (_dir, socket) = management_reply(b"SUCCESS: common name 'a\x1b]0;x\x07' found\n");
    let cn = CommonName::new("a").unwrap();
    let text = Management::connect(&socket)
        .unwrap()
        .kill_client(&cn)
        .unwrap();
    assert!(!text.chars().any(char::is_control), "{text:?}");
    assert!(
        text.starts_with("common name 'a\\u{1b}]0;x\\u{7}'"),
        "{text}"
    );
}

// Found by the fuzz target `client_id`: text ending in '\r' gained a "\r\n"
// when checked, and checking the result again changed it once more.
#[test]
fn inline_text_checked_twice_is_unchanged() {
    use tunnelbroker_core::openvpn::InlineText;
    for text in [
        "-----BEGIN CERTIFICATE-----\r\r\r",
        "-----BEGIN CERTIFICATE-----\rMIIB\r-----END CERTIFICATE-----\r",
        "-----BEGIN CERTIFICATE-----\r\nMIIB\r\n-----END CERTIFICATE-----\r\n",
    ] {
        let once = InlineText::new("certificate", text).unwrap();
        assert!(!once.as_str().contains('\r'), "{:?}", once.as_str());
        assert!(once.as_str().ends_with('\n'));
        let twice = InlineText::new("certificate", once.as_str()).unwrap();
        assert_eq!(twice.as_str(), once.as_str());
    }
}

// Found by the fuzz target `client_config`: a description comment naming a
// subnet /65 gave derived facts that no facts line may hold (their own line
// did not parse).
#[test]
fn derived_facts_hold_only_a_subnet_64_or_a_hermit_128() {
    use tunnelbroker_core::doctor::BundleFacts;
    let conf = |desc: &str| {
        format!(
            "# tunnelbroker: client alice ({desc}, tunnel address 2001:db8:0:f100::f101:2)\n\
             ifconfig-ipv6 2001:db8:0:f100::f101:2/112 2001:db8:0:f100::f101:1\n"
        )
    };
    for bad in [
        "subnet 2001:db8:0:f101::/65",
        "subnet 2001:db8:0:f101::1/64",
        "hermit 2001:db8:0:f1ff::1/64",
    ] {
        let cfg = ClientConfigFile::parse(Path::new("alice.conf"), &conf(bad)).unwrap();
        assert_eq!(cfg.derived_facts(), None, "{bad}");
    }
    let cfg = ClientConfigFile::parse(
        Path::new("alice.conf"),
        &conf("subnet 2001:db8:0:f101::/64"),
    )
    .unwrap();
    let facts = cfg.derived_facts().unwrap();
    assert_eq!(facts.to_string().parse::<BundleFacts>().unwrap(), facts);
}

/// Per-client sessions (issue 14): what a point-to-point instance answers
/// to `state` and `status` is parsed defensively: what OpenVPN never
/// writes is refused in one short line, whatever it holds.
#[test]
fn hostile_p2p_state_and_status_replies_are_refused_in_one_line() {
    use tunnelbroker_core::openvpn::{parse_link_bytes, parse_state};
    let one_line = |what: &str, r: tunnelbroker_core::Result<()>| {
        let err = r.expect_err(what).to_string();
        assert_eq!(err.lines().count(), 1, "{what}: {err:?}");
        assert!(!err.chars().any(char::is_control), "{what}: {err:?}");
        assert!(err.len() <= 600, "{what}: {} bytes", err.len());
        err
    };
    let long = format!("1764622740,CONNECTED,{}\nEND\n", "x".repeat(70 << 10));
    let states = [
        ("overlong", long.as_str()),
        (
            "NUL",
            "1764622740,CONNECTED,SUCCESS,,198.18.0.2\0,51234\nEND\n",
        ),
        ("escape", "1764622740,CONN\x1b[31mECTED,SUCCESS\nEND\n"),
        (
            "bell in a field",
            "1764622740,CONNECTED,\x07,,198.18.0.2,51234\nEND\n",
        ),
        ("no state line", "END\n"),
        ("empty", ""),
        ("one field", "1764622740\nEND\n"),
        ("ten fields", "1,CONNECTED,a,b,198.18.0.2,1,c,d,e,f\nEND\n"),
        (
            "time",
            "yesterday,CONNECTED,SUCCESS,,198.18.0.2,51234\nEND\n",
        ),
        (
            "time out of range",
            "99999999999999999,CONNECTED,,,198.18.0.2,1\nEND\n",
        ),
        (
            "lowercase state",
            "1764622740,connected,SUCCESS,,198.18.0.2,1\nEND\n",
        ),
        (
            "connected without address",
            "1764622740,CONNECTED,SUCCESS\nEND\n",
        ),
        (
            "bad address",
            "1764622740,CONNECTED,SUCCESS,,198.18.0.256,1\nEND\n",
        ),
        (
            "bad port",
            "1764622740,CONNECTED,SUCCESS,,198.18.0.2,65536\nEND\n",
        ),
        (
            "host name",
            "1764622740,CONNECTED,SUCCESS,,evil.example,1\nEND\n",
        ),
    ];
    for (what, text) in states {
        one_line(what, parse_state(text).map(|_| ()));
    }
    // Notifications before the reply are skipped; the last state counts.
    let ok =
        ">STATE:1,WAIT,,,,,,,\n1764622740,CONNECTED,SUCCESS,,::ffff:198.18.0.2,51234,,,\r\nEND\n";
    let peer = parse_state(ok).unwrap().unwrap();
    assert_eq!(peer.real_address.to_string(), "198.18.0.2:51234");
    assert!(
        parse_state("1764622740,EXITING,SIGTERM,,,,,,\nEND\n")
            .unwrap()
            .is_none()
    );

    let long = format!(
        "TCP/UDP read bytes,1\n{}END\n",
        "Updated,x\n".repeat(8 << 10)
    );
    let statuses = [
        ("overlong", long.as_str()),
        (
            "NUL",
            "TCP/UDP read bytes,1\0\nTCP/UDP write bytes,2\nEND\n",
        ),
        (
            "escape",
            "TCP/UDP read bytes,1\nTCP/UDP write bytes,2\x1b[0m\nEND\n",
        ),
        (
            "negative",
            "TCP/UDP read bytes,-1\nTCP/UDP write bytes,2\nEND\n",
        ),
        (
            "past u64",
            "TCP/UDP read bytes,18446744073709551616\nTCP/UDP write bytes,2\nEND\n",
        ),
        (
            "twice",
            "TCP/UDP read bytes,1\nTCP/UDP read bytes,2\nTCP/UDP write bytes,2\nEND\n",
        ),
        ("missing", "TCP/UDP read bytes,1\nEND\n"),
        (
            "a shared server's list",
            "TITLE\tOpenVPN\nHEADER\tCLIENT_LIST\tCommon Name\nEND\n",
        ),
        (
            "after END",
            "END\nTCP/UDP read bytes,1\nTCP/UDP write bytes,2\n",
        ),
    ];
    for (what, text) in statuses {
        one_line(what, parse_link_bytes(text).map(|_| ()));
    }
    assert_eq!(
        parse_link_bytes(
            "OpenVPN STATISTICS\r\nTCP/UDP read bytes\t7\nTCP/UDP write bytes,8\nEND\n"
        )
        .unwrap(),
        (7, 8)
    );
}

/// Serves one connection that answers `state` and then `status` with the
/// given replies.
fn p2p_instance(
    state: &'static [u8],
    status: &'static [u8],
) -> (tempfile::TempDir, std::path::PathBuf) {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("mgmt.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
        let _ = (&conn).write_all(b">INFO:OpenVPN Management Interface Version 5\n");
        for reply in [state, status] {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let _ = (&conn).write_all(reply);
        }
    });
    (dir, socket)
}

#[test]
fn a_p2p_instance_tells_its_peer_and_hostile_answers_fail_in_one_line() {
    use tunnelbroker_core::openvpn::Management;
    let (_d, socket) = p2p_instance(
        b"1764622740,CONNECTED,SUCCESS,,198.18.0.2,51234,198.18.0.1,5000,\nEND\n",
        b"OpenVPN STATISTICS\nUpdated,2026-12-02 01:00:00\nTUN/TAP read bytes,1\nTUN/TAP write bytes,2\nTCP/UDP read bytes,300\nTCP/UDP write bytes,400\nEND\n",
    );
    let (link, received, sent) = Management::connect(&socket)
        .unwrap()
        .peer()
        .unwrap()
        .unwrap();
    assert_eq!(link.real_address.to_string(), "198.18.0.2:51234");
    assert_eq!((received, sent), (300, 400));
    // Waiting for its peer: no session, and no status asked.
    let (_d, socket) = p2p_instance(b"1764622740,WAIT,,,,,,,\nEND\n", b"");
    assert!(
        Management::connect(&socket)
            .unwrap()
            .peer()
            .unwrap()
            .is_none()
    );
    for (state, status) in [
        (&b"ERROR: unknown command\x1b[2J\n"[..], &b""[..]),
        (
            b"1764622740,CONNECTED,SUCCESS,,198.18.0.2\x00,1\nEND\n",
            b"",
        ),
        (
            b"1764622740,CONNECTED,SUCCESS,,198.18.0.2,1\nEND\n",
            b"TCP/UDP read bytes,\x1b]0;x\x07\nEND\n",
        ),
        (
            b"1764622740,CONNECTED,SUCCESS,,198.18.0.2,1\nEND\n",
            b"ERROR: no\0\n",
        ),
        // Closed before END.
        (b"1764622740,CONNECTED,SUCCESS,,198.18.0.2,1\n", b""),
    ] {
        let (_d, socket) = p2p_instance(state, status);
        let err = Management::connect(&socket)
            .unwrap()
            .peer()
            .unwrap_err()
            .to_string();
        assert_eq!(err.lines().count(), 1, "{err:?}");
        assert!(!err.chars().any(char::is_control), "{err:?}");
    }
    // More lines than a state reply has.
    let many: &'static [u8] = Box::leak("1,WAIT\n".repeat(200).into_bytes().into_boxed_slice());
    let (_d, socket) = p2p_instance(many, b"");
    let err = Management::connect(&socket)
        .unwrap()
        .peer()
        .unwrap_err()
        .to_string();
    assert!(err.contains("longer than 100 lines"), "{err}");
}
