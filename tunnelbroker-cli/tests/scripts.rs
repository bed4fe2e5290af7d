//! The benchmark and fuzz scripts of `scripts/` refuse bad arguments before
//! they build, install or start anything: exit 2, one line that names what
//! was wrong, and nothing run that was hidden in an argument (their numbers
//! go into shell arithmetic, which runs a command substitution in them).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::operator_tempdir;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .join("scripts")
        .join(name)
}

#[test]
fn scripts_refuse_bad_arguments_in_one_line_and_run_nothing_hidden_in_them() {
    let tmp = operator_tempdir();
    let marker = tmp.path().join("ran");
    let hidden = format!("x[$(touch {})]", marker.display());
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("bench-render", vec!["0"], "from 10 to 50000"),
        ("bench-render", vec!["9"], "from 10 to 50000"),
        ("bench-render", vec!["50001"], "from 10 to 50000"),
        ("bench-render", vec!["1;x"], "'1;x'"),
        ("bench-render", vec![" 10"], "number of clients"),
        ("bench-render", vec!["ü"], "number of clients"),
        ("bench-render", vec![&hidden], "number of clients"),
        ("bench-storm", vec!["0"], "number of clients"),
        ("bench-storm", vec![&hidden], "number of clients"),
        ("bench-storm", vec!["10", "--timeout", &hidden], "--timeout"),
        ("bench-storm", vec!["10", "--timeout"], "--timeout"),
        ("bench-storm", vec!["10", "--servers", "9"], "--servers"),
        ("bench-storm", vec!["10", "--servers", ""], "--servers"),
        ("bench-tunnel", vec!["--cipher", "AES;reboot"], "--cipher"),
        ("bench-tunnel", vec!["--cipher", ""], "--cipher"),
        ("bench-tunnel", vec!["--cipher"], "--cipher"),
        ("bench-tunnel", vec!["--time", "0"], "--time"),
        ("bench-tunnel", vec!["--time", &hidden], "--time"),
        ("bench-tunnel", vec!["--txqueuelen", "1;x"], "--txqueuelen"),
        ("bench-tunnel", vec!["--speed"], "unknown argument"),
        ("fuzz", vec!["soon"], "usage"),
        ("fuzz", vec![&hidden], "usage"),
        ("fuzz", vec!["1", "../plan"], "no such target"),
    ];
    for (name, args, says) in &cases {
        let out = Command::new("bash")
            .arg(script(name))
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {err}");
        assert!(err.contains(says), "{name} {args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name} {args:?}: {err}");
        assert!(out.stdout.is_empty(), "{name} {args:?}");
        assert!(!marker.exists(), "{name} {args:?} ran what was hidden");
    }
}
