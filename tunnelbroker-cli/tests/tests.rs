//! The integration tests of the `tunnelbroker` binary: one binary, one module per command.

mod broker;
mod doctor;
mod plan;
mod server;

use std::process::{Command, Output};

/// Runs the built `tunnelbroker` with `args` and no inherited broker directory.
pub fn tunnelbroker(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunnelbroker"))
        .args(args)
        .env_remove("TUNNELBROKER_DIR")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run tunnelbroker")
}

/// Stdout as text, after checking that the command succeeded quietly.
pub fn success(args: &[&str]) -> String {
    let out = tunnelbroker(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    assert!(stderr.is_empty(), "{args:?} wrote to stderr: {stderr}");
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// Stderr as text, after checking exit status `code`, one line of stderr
/// in the agreed form, no stdout and no panic.
pub fn failure(args: &[&str], code: i32) -> String {
    let out = tunnelbroker(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?} wrote to stdout");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "{args:?}: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?}: not one line: {stderr:?}"
    );
    assert!(
        stderr.starts_with("tunnelbroker: error: "),
        "{args:?}: {stderr:?}"
    );
    stderr
}
