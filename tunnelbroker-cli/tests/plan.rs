//! `tunnelbroker plan`.

use serde_json::{Value, json};

use crate::{failure, success, tunnelbroker};

const JOIN: &str = "2001:638:500:f100::/56";

#[test]
fn join_layout_as_json() {
    let out = success(&["plan", "--pool", JOIN, "--json"]);
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        v,
        json!({
            "pool": "2001:638:500:f100::/56",
            "routing": "2001:638:500:f100::/64",
            "hermit": "2001:638:500:f1ff::/64",
            "first_subnet": "2001:638:500:f101::/64",
            "last_subnet": "2001:638:500:f1fe::/64",
            "subnet_capacity": 254,
            "hermit_capacity": 18446744073709551487u64,
        })
    );
}

#[test]
fn json_flag_is_global() {
    let before = success(&["--json", "plan", "--pool", JOIN]);
    let after = success(&["plan", "--pool", JOIN, "--json"]);
    assert_eq!(before, after);
}

#[test]
fn join_layout_as_text() {
    let out = success(&["plan", "--pool", JOIN]);
    insta::assert_snapshot!(out, @r"
    pool          2001:638:500:f100::/56
    routing /64   2001:638:500:f100::/64
    hermit /64    2001:638:500:f1ff::/64
    first subnet  2001:638:500:f101::/64
    last subnet   2001:638:500:f1fe::/64
    capacity      254 subnets, 18446744073709551487 hermits
    ");
}

#[test]
fn slash_48_and_slash_62_layouts() {
    let v: Value = serde_json::from_str(&success(&[
        "plan",
        "--pool",
        "2001:db8:abcd::/48",
        "--json",
    ]))
    .unwrap();
    assert_eq!(v["hermit"], "2001:db8:abcd:ffff::/64");
    assert_eq!(v["first_subnet"], "2001:db8:abcd:1::/64");
    assert_eq!(v["last_subnet"], "2001:db8:abcd:fffe::/64");
    assert_eq!(v["subnet_capacity"], 65534);
    let v: Value = serde_json::from_str(&success(&[
        "plan",
        "--pool",
        "2001:db8:0:f1fc::/62",
        "--json",
    ]))
    .unwrap();
    assert_eq!(v["routing"], "2001:db8:0:f1fc::/64");
    assert_eq!(v["first_subnet"], "2001:db8:0:f1fd::/64");
    assert_eq!(v["last_subnet"], "2001:db8:0:f1fe::/64");
    assert_eq!(v["hermit"], "2001:db8:0:f1ff::/64");
}

#[test]
fn join_subnet_f1ab_as_text() {
    let out = success(&["plan", "--pool", JOIN, "--subnet", "2001:638:500:f1ab::/64"]);
    insta::assert_snapshot!(out, @r"
    subnet             2001:638:500:f1ab::/64
    routing net        2001:638:500:f100::f1ab:0/112
    server end         2001:638:500:f100::f1ab:1
    client end         2001:638:500:f100::f1ab:2
    server link-local  fe80::f1ab:1
    client link-local  fe80::f1ab:2
    ");
}

#[test]
fn join_subnet_f1ab_as_json() {
    let out = success(&[
        "plan",
        "--pool",
        JOIN,
        "--subnet",
        "2001:638:500:f1ab::/64",
        "--json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v,
        json!({
            "pool": "2001:638:500:f100::/56",
            "subnet": "2001:638:500:f1ab::/64",
            "routing_net": "2001:638:500:f100::f1ab:0/112",
            "server_end": "2001:638:500:f100::f1ab:1",
            "client_end": "2001:638:500:f100::f1ab:2",
            "server_link_local": "fe80::f1ab:1",
            "client_link_local": "fe80::f1ab:2",
        })
    );
}

#[test]
fn bad_pools_exit_2_with_a_reason() {
    for (pool, why) in [
        ("2001:db8::1/56", "host bits"),
        ("2001:db8::/47", "too short"),
        ("2001:db8::/63", "too long"),
        ("10.0.0.0/8", "IPv4"),
        ("hello", "not an IPv6 prefix"),
        ("", "empty"),
        ("jörg", "not an IPv6 prefix"),
        ("2001:db8::/56;reboot", "not an IPv6 prefix"),
        ("../../etc/passwd", "not an IPv6 prefix"),
    ] {
        let err = failure(&["plan", "--pool", pool], 2);
        assert!(err.contains(why), "{pool:?}: {err}");
        let err = failure(&["plan", "--pool", pool, "--json"], 2);
        assert!(err.contains(why), "{pool:?}: {err}");
    }
    let long = "f".repeat(100_000);
    let err = failure(&["plan", "--pool", &long], 2);
    assert!(err.len() < 300, "{} bytes", err.len());
}

#[test]
fn bad_subnets_exit_2_with_a_reason() {
    for (subnet, why) in [
        ("2001:638:500:f200::/64", "outside the pool"),
        ("2001:db8::/64", "outside the pool"),
        ("2001:638:500:f100::/64", "routing /64"),
        ("2001:638:500:f1ff::/64", "hermit /64"),
        ("2001:638:500:f1ab::/56", "host bits"),
        ("2001:638:500:f100::/56", "a /64"),
        ("2001:638:500:f1ab::1/64", "host bits"),
        ("2001:638:500:f1ab::1", "a /64"),
        ("10.0.0.0/8", "IPv4"),
        ("hello", "not an IPv6"),
        ("", "not an IPv6"),
    ] {
        let err = failure(&["plan", "--pool", JOIN, "--subnet", subnet], 2);
        assert!(err.contains(why), "{subnet:?}: {err}");
    }
}

#[test]
fn usage_errors_exit_2_without_a_panic() {
    for args in [
        &["plan"][..],
        &["plan", "--pool"],
        &["plan", "--pool", JOIN, "--frobnicate"],
        &["frobnicate"],
        &[],
    ] {
        let out = tunnelbroker(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn help_and_version_work() {
    let top = success(&["--help"]);
    assert!(top.contains("plan"), "{top}");
    assert!(top.contains("--json"), "{top}");
    assert!(top.contains("TUNNELBROKER_DIR"), "{top}");
    let plan = success(&["plan", "--help"]);
    assert!(plan.contains("--pool <PREFIX>"), "{plan}");
    assert!(plan.contains("--subnet <SUBNET>"), "{plan}");
    let version = success(&["--version"]);
    assert!(version.starts_with("tunnelbroker "), "{version}");
}

#[test]
fn broken_pipe_is_not_an_error() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    // The reader closes the pipe at once; the command must not panic.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tunnelbroker"))
        .args(["plan", "--pool", "2001:db8:abcd::/48", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(status.code().is_some(), "killed by a signal: {status:?}");
}
