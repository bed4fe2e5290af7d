//! Exit statuses (issue 18): one rule, 2 for bad input and 1 for the rest,
//! kept whatever happens to stdout.

use crate::{fails, init, ok, tb, tb_stdout_closed, text, tunnelbroker};

#[test]
fn a_failing_audit_exits_1_when_stdout_is_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    init(&dir, &[]);
    std::fs::remove_file(dir.join("crl.pem")).unwrap();
    for args in [&["audit"][..], &["--json", "audit"]] {
        let out = tb_stdout_closed(&dir, args);
        assert_eq!(
            text(&out.stderr),
            "tunnelbroker: error: 1 check failed\n",
            "{args:?}"
        );
        assert_eq!(out.status.code(), Some(1), "{args:?}");
    }
}

#[test]
fn a_bad_import_exits_2_when_stdout_is_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    init(&dir, &[]);
    let csv = tmp.path().join("bad.csv");
    std::fs::write(
        &csv,
        "id,kind,os,email,name\nalice,subnet,,,\n$(x),hermit,,,\n",
    )
    .unwrap();
    let out = tb_stdout_closed(&dir, &["client", "import", csv.to_str().unwrap()]);
    let err = fails(&out, 2);
    assert!(err.contains("1 row(s)"), "{err}");
}

#[test]
fn a_success_whose_output_is_lost_exits_1_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    init(&dir, &[]);
    for args in [
        &["client", "list"][..],
        &["--json", "client", "list"],
        &["crl"],
        &["client", "add", "alice", "--subnet"],
    ] {
        let out = tb_stdout_closed(&dir, args);
        let err = fails(&out, 1);
        assert!(
            err.starts_with("tunnelbroker: error: cannot write output: Broken pipe"),
            "{args:?}: {err}"
        );
    }
    // The command itself was done: alice exists.
    let list = ok(&tb(&dir, &["client", "list"]));
    assert!(list.contains("alice"), "{list}");
}

#[test]
fn bad_input_exits_2_and_other_failures_1() {
    let tmp = tempfile::tempdir().unwrap();
    // A directory that holds no broker: the user's --dir (or ./broker).
    let nothing = tmp.path().join("nothing");
    for args in [&["client", "list"][..], &["audit"], &["crl"]] {
        let err = fails(&tb(&nothing, args), 2);
        assert!(err.contains("no tunnelbroker.toml"), "{args:?}: {err}");
    }
    // init into a directory the user chose that is not empty.
    let full = tmp.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("notes.txt"), "mine").unwrap();
    let init_args = [
        "init",
        "--pool",
        "2001:db8:0:f100::/56",
        "--endpoint",
        "vpn.example.net",
    ];
    let err = fails(&tb(&full, &init_args), 2);
    assert!(err.contains("not empty"), "{err}");
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let err = fails(&tb(&file, &init_args), 2);
    assert!(err.contains("not a directory"), "{err}");
    // A file the user named that does not exist.
    let dir = tmp.path().join("b");
    init(&dir, &[]);
    let err = fails(&tb(&dir, &["client", "import", "/nonexistent.csv"]), 2);
    assert!(err.contains("/nonexistent.csv"), "{err}");
    // The environment: a database that is not one is not the user's input.
    std::fs::write(dir.join("clients.db"), "garbage that is not a database").unwrap();
    let err = fails(&tb(&dir, &["client", "list"]), 1);
    assert!(err.contains("client database"), "{err}");
    // The rule is stated in --help.
    let help = ok(&tunnelbroker(&["--help"]));
    assert!(
        help.contains("Exit status: 0 on success; 2 for bad input"),
        "{help}"
    );
}
