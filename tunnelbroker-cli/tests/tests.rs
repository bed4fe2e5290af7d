//! The integration tests of the `tunnelbroker` binary: one binary, one module per command.

mod agent;
mod broker;
mod database;
mod docs;
mod doctor;
mod exit;
mod hosts;
mod lifecycle;
mod password;
// The core's PostgreSQL test helper, shared (not every helper is used here).
#[allow(dead_code)]
#[path = "../../tunnelbroker-core/tests/pg.rs"]
mod pg;
mod plan;
mod scripts;
mod server;
mod servers;
mod sessions;

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// Runs the built `tunnelbroker` with `args` and no inherited broker
/// directory. `RUST_BACKTRACE=1`, so that a panic could not hide.
pub fn run<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunnelbroker"))
        .args(args)
        .env_remove("TUNNELBROKER_DIR")
        .env_remove("TUNNELBROKER_DATABASE")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run tunnelbroker")
}

/// Runs `tunnelbroker --dir DIR` with `args` and stdout a pipe whose
/// reading end is closed before it starts, so that every write to stdout
/// fails (EPIPE), as in `tunnelbroker audit | head -0`.
pub fn tb_stdout_closed(dir: &Path, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_tunnelbroker"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("TUNNELBROKER_DIR")
        .env("RUST_BACKTRACE", "1")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run tunnelbroker")
}

/// Runs `tunnelbroker` with `args` (no `--dir`).
pub fn tunnelbroker(args: &[&str]) -> Output {
    run(args)
}

/// Runs `tunnelbroker --dir DIR` with `args`.
pub fn tb(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec![OsStr::new("--dir"), dir.as_os_str()];
    all.extend(args.iter().map(OsStr::new));
    run(&all)
}

/// Bytes of an output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Stdout as text, after checking that the command succeeded.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

/// Stdout parsed as JSON, after checking that the command succeeded.
pub fn json(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).expect("stdout is JSON")
}

/// Stderr as text, after checking exit status `code`, exactly one line of
/// stderr in the agreed form and no panic.
pub fn fails(out: &Output, code: i32) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.starts_with("tunnelbroker: error: "), "{stderr:?}");
    stderr
}

/// A usage error from clap: status 2, no panic (clap's own multi-line
/// message with the usage is expected here).
pub fn usage_error(out: &Output) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Stdout as text, after checking that the command succeeded quietly.
pub fn success(args: &[&str]) -> String {
    let out = tunnelbroker(args);
    let stdout = ok(&out);
    assert!(
        out.stderr.is_empty(),
        "{args:?} wrote to stderr: {}",
        text(&out.stderr)
    );
    stdout
}

/// Stderr as text, after checking exit status `code`, one line of stderr
/// in the agreed form, no stdout and no panic.
pub fn failure(args: &[&str], code: i32) -> String {
    let out = tunnelbroker(args);
    let stderr = fails(&out, code);
    assert!(out.stdout.is_empty(), "{args:?} wrote to stdout");
    stderr
}

/// `tunnelbroker init` of a broker on the documentation pool in `dir`,
/// with `extra` options.
pub fn init(dir: &Path, extra: &[&str]) {
    let mut args = vec![
        "init",
        "--pool",
        "2001:db8:0:f100::/56",
        "--endpoint",
        "vpn.example.net",
    ];
    args.extend_from_slice(extra);
    ok(&tb(dir, &args));
}

/// The arguments of `init` on the test pool with an imported CA (`cert`,
/// `key`), then `extra`.
pub fn init_args<'a>(cert: &'a str, key: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "init",
        "--pool",
        "2001:db8:0:f100::/56",
        "--endpoint",
        "vpn.example.net",
        "--ca-cert",
        cert,
        "--ca-key",
        key,
    ];
    args.extend_from_slice(extra);
    args
}

/// A temporary directory with mode 0755, as an operator's directory would
/// be: OpenVPN must reach what is rendered below it as `nobody`.
pub fn operator_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    // Where an operator's directories are: searchable by others (OpenVPN
    // re-reads the CRL and CCD entries as nobody) and outside the
    // directories Debian's unit hides (/tmp, /home, /root), wherever the
    // checkout is. Falls back to the target directory without root.
    let base = std::path::Path::new("/var/lib/tunnelbroker-tests");
    let tmp = std::fs::create_dir_all(base)
        .and_then(|()| std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)))
        .and_then(|()| tempfile::tempdir_in(base))
        .unwrap_or_else(|_| tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap());
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    tmp
}
