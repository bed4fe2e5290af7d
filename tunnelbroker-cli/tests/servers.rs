//! `tunnelbroker server add/list/remove/parent/render NAME/renew NAME`,
//! `client add --server` and `client move` (issue 13).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{fails, json, ok, tb, text};

fn run_ok(dir: &Path, args: &[&str]) -> String {
    let out = tb(dir, args);
    let stdout = ok(&out);
    assert!(out.stderr.is_empty(), "{args:?}: {}", text(&out.stderr));
    stdout
}

/// A broker with main in 2001:db8:0:f100::/56 and the parent 2001:db8::/48.
fn broker(tmp: &Path) -> PathBuf {
    let dir = tmp.join("broker");
    run_ok(
        &dir,
        &[
            "init",
            "--pool",
            "2001:db8:0:f100::/56",
            "--endpoint",
            "vpn.example.net",
            "--parent",
            "2001:db8::/48",
        ],
    );
    dir
}

#[test]
fn add_list_place_move_and_remove() {
    let tmp = crate::operator_tempdir();
    let dir = broker(tmp.path());
    // Today's usage: one server, main.
    let list = json(&tb(&dir, &["--json", "server", "list"]));
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "main");
    assert_eq!(list[0]["pool"], "2001:db8:0:f100::/56");
    let alice = json(&tb(&dir, &["--json", "client", "add", "alice", "--subnet"]));
    assert_eq!(alice["server"], "main");

    // Without --pool: the next free /56 of the parent.
    let added = run_ok(
        &dir,
        &[
            "server",
            "add",
            "b",
            "--endpoint",
            "vpn-b.example.net",
            "--mode",
            "shared",
            "--port",
            "1194",
        ],
    );
    assert!(added.contains("2001:db8::/56"), "{added}");
    assert!(added.contains("tunnelbroker-server-b"), "{added}");
    let c = json(&tb(
        &dir,
        &[
            "--json",
            "server",
            "add",
            "c",
            "--endpoint",
            "vpn-c.example.net",
            "--pool",
            "2001:db8:0:e000::/60",
        ],
    ));
    assert_eq!(c["pool"], "2001:db8:0:e000::/60");

    // --server names it; without, the one with most room (b's /56 has 254
    // free subnets like main, main has one taken: b), and the output says which.
    let bob = run_ok(&dir, &["client", "add", "bob", "--subnet"]);
    assert!(bob.contains("server        b"), "{bob}");
    let carol = json(&tb(
        &dir,
        &[
            "--json", "client", "add", "carol", "--hermit", "--server", "c",
        ],
    ));
    assert_eq!(carol["server"], "c");
    assert_eq!(carol["assignment"]["address"], "2001:db8:0:e00f::1");

    let list = run_ok(&dir, &["server", "list"]);
    assert!(
        list.contains("NAME") && list.contains("vpn-c.example.net"),
        "{list}"
    );
    let list = json(&tb(&dir, &["--json", "server", "list"]));
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b", "c", "main"]);
    assert_eq!(list[0]["clients"], 1);
    assert_eq!(list[0]["mode"], "shared");
    assert_eq!(list[0]["port"], 1194);

    // Move: old and new printed, a new bundle written.
    let bundle = tmp.path().join("alice.tar.gz");
    let moved = run_ok(
        &dir,
        &[
            "client",
            "move",
            "alice",
            "--server",
            "c",
            "-o",
            bundle.to_str().unwrap(),
        ],
    );
    assert!(
        moved.contains("old           2001:db8:0:f101::/64 on main"),
        "{moved}"
    );
    assert!(
        moved.contains("new           2001:db8:0:e001::/64 on c"),
        "{moved}"
    );
    assert!(bundle.exists());
    let show = json(&tb(&dir, &["--json", "client", "show", "alice"]));
    assert_eq!(show["server"], "c");

    // Remove: refused with clients, then done.
    let e = fails(&tb(&dir, &["server", "remove", "c"]), 2);
    assert!(e.contains("client"), "{e}");
    fails(&tb(&dir, &["server", "remove", "main"]), 2);
    ok(&tb(&dir, &["client", "revoke", "carol"]));
    run_ok(&dir, &["client", "purge", "carol"]);
    run_ok(
        &dir,
        &[
            "client",
            "move",
            "alice",
            "--server",
            "main",
            "-o",
            bundle.to_str().unwrap(),
        ],
    );
    let removed = run_ok(&dir, &["server", "remove", "c"]);
    assert!(removed.contains("removed server c"), "{removed}");
}

#[test]
fn bad_input_is_exit_2_with_one_line() {
    let tmp = crate::operator_tempdir();
    let dir = broker(tmp.path());
    let long = "x".repeat(40);
    // (A leading '-' is an option to clap: --server=-x gives it as a value.)
    fails(
        &tb(&dir, &["client", "add", "alice", "--hermit", "--server=-x"]),
        2,
    );
    for name in ["../etc", "a;id", "$(id)", "", "ä", ".x", long.as_str()] {
        fails(
            &tb(
                &dir,
                &[
                    "server",
                    "add",
                    name,
                    "--endpoint",
                    "h",
                    "--pool",
                    "2001:db8:0:e000::/56",
                ],
            ),
            2,
        );
        fails(
            &tb(
                &dir,
                &["client", "add", "alice", "--hermit", "--server", name],
            ),
            2,
        );
        fails(&tb(&dir, &["server", "remove", name]), 2);
    }
    for pool in [
        "2001:db8:0:f100::/60",
        "2001:db9::/56",
        "2001:db8::1/56",
        "garbage",
    ] {
        fails(
            &tb(
                &dir,
                &["server", "add", "b", "--endpoint", "h", "--pool", pool],
            ),
            2,
        );
    }
    fails(
        &tb(
            &dir,
            &[
                "server",
                "add",
                "b",
                "--endpoint",
                "h",
                "--pool-length",
                "70",
            ],
        ),
        2,
    );
    fails(
        &tb(&dir, &["server", "add", "b", "--endpoint", "bad host!"]),
        2,
    );
    fails(
        &tb(
            &dir,
            &["client", "add", "alice", "--hermit", "--server", "nope"],
        ),
        2,
    );
    fails(&tb(&dir, &["server", "render", "nope", "-o", "x"]), 2);
    fails(&tb(&dir, &["server", "renew", "nope"]), 2);
    fails(&tb(&dir, &["server", "parent", "2001:db9::/48"]), 2);
    run_ok(&dir, &["client", "add", "alice", "--hermit"]);
    fails(
        &tb(&dir, &["client", "move", "alice", "--server", "nope"]),
        2,
    );
    fails(
        &tb(&dir, &["client", "move", "alice", "--server", "main"]),
        2,
    );
    // Nothing of it was recorded.
    let list: Value = json(&tb(&dir, &["--json", "server", "list"]));
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[test]
fn render_and_renew_one_server() {
    let tmp = crate::operator_tempdir();
    let dir = broker(tmp.path());
    run_ok(
        &dir,
        &["server", "add", "b", "--endpoint", "vpn-b.example.net"],
    );
    run_ok(
        &dir,
        &["client", "add", "alice", "--subnet", "--server", "main"],
    );
    run_ok(&dir, &["client", "add", "bob", "--subnet", "--server", "b"]);
    let out = tmp.path().join("b");
    let r = json(&tb(
        &dir,
        &[
            "--json",
            "server",
            "render",
            "b",
            "-o",
            out.to_str().unwrap(),
            "--run-dir",
            tmp.path().to_str().unwrap(),
        ],
    ));
    assert_eq!(r["instances"], serde_json::json!(["tb-client-bob"]));
    assert!(!out.join("tb-client-alice.conf").exists());
    // Another server is rendered only into a directory named for its host.
    fails(&tb(&dir, &["server", "render", "b"]), 2);
    let renewed = run_ok(&dir, &["server", "renew", "b"]);
    assert!(
        renewed.contains("openvpn-server@tb-client-bob"),
        "{renewed}"
    );
    // --help of every new command.
    for cmd in [
        &["server", "add", "--help"][..],
        &["server", "list", "--help"],
        &["server", "remove", "--help"],
        &["server", "parent", "--help"],
        &["client", "move", "--help"],
    ] {
        let out = crate::tunnelbroker(cmd);
        assert!(ok(&out).contains("Usage"), "{cmd:?}");
    }
}

/// Issue 19: two shared servers on one host rendered into one directory;
/// the second gets the next port and its own names, and `server render`
/// prints the instance to start for each.
#[test]
fn two_shared_servers_render_into_one_directory() {
    let tmp = crate::operator_tempdir();
    let dir = tmp.path().join("broker");
    run_ok(
        &dir,
        &[
            "init",
            "--pool",
            "2001:db8:0:f100::/56",
            "--endpoint",
            "vpn.example.net",
            "--mode",
            "shared",
            "--port",
            "1194",
        ],
    );
    let added = json(&tb(
        &dir,
        &[
            "--json",
            "server",
            "add",
            "core2",
            "--endpoint",
            "vpn.example.net",
            "--mode",
            "shared",
            "--pool",
            "2001:db8:0:f200::/56",
        ],
    ));
    assert_eq!(added["port"], 1195);
    run_ok(
        &dir,
        &["client", "add", "alice", "--hermit", "--server", "main"],
    );
    run_ok(
        &dir,
        &["client", "add", "bob", "--hermit", "--server", "core2"],
    );
    let out = tmp.path().join("etc-openvpn-server");
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let (o, r) = (out.to_str().unwrap(), run.to_str().unwrap());
    let main = run_ok(&dir, &["server", "render", "main", "-o", o, "--run-dir", r]);
    assert!(
        main.contains("start with: systemctl enable --now openvpn-server@tb-shared\n"),
        "{main}"
    );
    let core2 = run_ok(
        &dir,
        &["server", "render", "core2", "-o", o, "--run-dir", r],
    );
    assert!(
        core2.contains("start with: systemctl enable --now openvpn-server@tb-shared-core2\n"),
        "{core2}"
    );
    assert!(
        core2.contains(", 0 removed\n") && !core2.contains("  removed "),
        "{core2}"
    );
    for f in [
        "tb-shared.conf",
        "ccd/alice",
        "server.crt",
        "tb-shared-core2.conf",
        "ccd-core2/bob",
        "server-core2.crt",
        "server-core2.key",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let again: Value = serde_json::from_str(&run_ok(
        &dir,
        &[
            "--json",
            "server",
            "render",
            "main",
            "-o",
            o,
            "--run-dir",
            r,
        ],
    ))
    .unwrap();
    assert_eq!(again["instances"], serde_json::json!(["tb-shared"]));
    assert_eq!(again["removed"], serde_json::json!([]));
    assert!(out.join("tb-shared-core2.conf").is_file());
}
