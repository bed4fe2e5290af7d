//! The examples of README.md and docs/*.md are real output (issue 18,
//! finding 9): an example that drifts from what the code does fails here.
//!
//! Two mechanisms:
//!
//! * **Generated regions.** An example the tests can produce is marked in
//!   the Markdown, fence included:
//!
//!   ````text
//!   <!-- generated: NAME -->
//!   ```text
//!   ...
//!   ```
//!   <!-- end -->
//!   ````
//!
//!   [`docs_examples_are_real_output`] produces every region again and
//!   compares. `NAME` is `console` (the region's own `$ tunnelbroker ...`
//!   lines are run in a scratch directory without a broker, and each is
//!   followed by its stdout, then its stderr) or one of the names that
//!   [`generate`] knows (a broker made in the test, its rendered server
//!   files, bundles, audit reports, the layout `init` creates, ...).
//!   Variable values are normalised so that the text is stable: the scratch
//!   directory disappears from paths (a broker made in `SCRATCH/var/lib/
//!   tunnelbroker` reads as `/var/lib/tunnelbroker`), dates are shifted as
//!   if the test ran on [`DOC_TODAY`], PEM bodies shrink to `…`, serials
//!   become fixed ones, the test binary's path becomes
//!   `/usr/bin/tunnelbroker` and the installed OpenVPN's version 2.6.14.
//! * **Command lines.** [`docs_commands_run_with_the_current_cli`] runs every
//!   `tunnelbroker ...` line of a ```` ```sh ```` block and every `$
//!   tunnelbroker ...` line of any block, in order, against a scratch
//!   directory (absolute paths are moved under it, so nothing outside is
//!   touched) and fails if the command line does not parse: a renamed
//!   subcommand or flag fails the suite. What the command then does (an
//!   unknown client, a missing file) does not matter there.
//!
//! After a change of behaviour, refresh every region with one command and
//! review the diff:
//!
//! ```sh
//! UPDATE_DOCS=1 cargo test -p tunnelbroker-cli --test tests docs::
//! UPDATE_DOCS=1 cargo test -p tunnelbroker-core --test tests doctor_e2e   # as root: doctor-pass
//! git diff -- README.md docs/
//! ```
//!
//! The doctor example shows this machine: OpenVPN installed, /dev/net/tun,
//! IPv6 and no tun interface up. Where the doctor sees otherwise, that
//! example is neither compared nor rewritten (the test says why), unless
//! `CI=true`, where it fails.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;
use time::{Date, OffsetDateTime};

use crate::text;

/// The day the examples pretend to be made on: every date of the output is
/// shifted by (this day - today).
const DOC_TODAY: Date = time::macros::date!(2026 - 11 - 26);

/// The files whose examples this module checks, relative to the workspace.
const DOCS: &[&str] = &[
    "README.md",
    "docs/operator-guide.md",
    "docs/address-plan.md",
    "docs/openvpn.md",
    "docs/python.md",
    "docs/troubleshooting.md",
];

/// The environment variable that makes [`docs_examples_are_real_output`]
/// rewrite the regions instead of comparing them.
const UPDATE: &str = "UPDATE_DOCS";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

// ----- Markdown regions ------------------------------------------------------

const OPEN: &str = "<!-- generated: ";
const CLOSE: &str = "<!-- end -->";

/// One `<!-- generated: NAME -->` region of a Markdown file: its name and
/// the lines between the markers (`start..end`, 0-based, end exclusive).
#[derive(Debug)]
struct Region {
    name: String,
    start: usize,
    end: usize,
}

/// The regions of `text`; a marker without its partner is an error.
fn regions(file: &str, text: &str) -> Result<Vec<Region>, String> {
    let mut found = Vec::new();
    let mut open: Option<(String, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix(OPEN) {
            let name = rest
                .strip_suffix("-->")
                .map(str::trim)
                .ok_or_else(|| format!("{file}:{}: a marker is `{OPEN}NAME -->`", i + 1))?;
            if let Some((other, at)) = &open {
                return Err(format!(
                    "{file}:{}: region {name} opens inside region {other} (line {})",
                    i + 1,
                    at + 1
                ));
            }
            open = Some((name.to_owned(), i));
        } else if line == CLOSE {
            let (name, at) = open
                .take()
                .ok_or_else(|| format!("{file}:{}: {CLOSE} without a region", i + 1))?;
            found.push(Region {
                name,
                start: at + 1,
                end: i,
            });
        }
    }
    match open {
        Some((name, at)) => Err(format!("{file}:{}: region {name} never ends", at + 1)),
        None => Ok(found),
    }
}

/// A generated example: its fence's info string and its text.
struct Example {
    lang: &'static str,
    body: String,
}

impl Example {
    fn text(body: String) -> Self {
        Example { lang: "text", body }
    }

    fn console(body: String) -> Self {
        Example {
            lang: "console",
            body,
        }
    }

    /// The lines that go between the markers.
    fn fenced(&self) -> String {
        let mut body = self.body.clone();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        // A fence longer than any backtick run of the body.
        let ticks = "`".repeat(longest_backtick_run(&body).max(2) + 1);
        format!("{ticks}{}\n{body}{ticks}\n", self.lang)
    }
}

fn longest_backtick_run(s: &str) -> usize {
    let (mut best, mut run) = (0, 0);
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

// ----- scratch directories and runs -----------------------------------------

/// A scratch root that stands for `/`: absolute paths of the examples live
/// under it, and it is removed from every output.
struct Scratch {
    _tmp: TempDir,
    root: PathBuf,
}

impl Scratch {
    fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("docs-")
            .tempdir_in(scratch_parent())
            .expect("tempdir");
        let root = tmp.path().canonicalize().expect("canonical tempdir");
        // OpenVPN reads the rendered files as nobody: the way there must be
        // open to others, as /etc/openvpn/server is.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod");
        let scratch = Scratch { _tmp: tmp, root };
        for dir in ["/root", "/etc/openvpn", "/var/lib", "/srv"] {
            fs::create_dir_all(scratch.path(dir)).expect("mkdir");
        }
        scratch
    }

    /// `p` (absolute, as the docs write it) under the scratch root.
    fn path(&self, p: &str) -> PathBuf {
        let p = p.strip_prefix('/').expect("an absolute path");
        self.root.join(p)
    }

    /// The working directory of every run: root's home.
    fn cwd(&self) -> PathBuf {
        self.path("/root")
    }

    /// A word of a documented command line, with an absolute path moved
    /// under the scratch root (also in `--flag=/path`).
    fn word(&self, w: &str) -> String {
        if w.starts_with('/') {
            return self.path(w).to_string_lossy().into_owned();
        }
        if let Some((flag, value)) = w.split_once('=')
            && flag.starts_with("--")
            && value.starts_with('/')
        {
            return format!("{flag}={}", self.path(value).display());
        }
        w.to_owned()
    }

    /// Runs a documented `tunnelbroker ...` line.
    ///
    /// `server render` gets `--run-dir SCRATCH/run/openvpn-server` (an
    /// existing directory) when the CLI has that option, so that it renders
    /// as on a Debian host with OpenVPN installed, whatever this machine's
    /// /run holds; the examples show the line without it.
    fn run(&self, line: &str) -> Output {
        let words = shell_words(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(
            words.first().map(String::as_str),
            Some("tunnelbroker"),
            "{line}"
        );
        let mut args: Vec<String> = words[1..].iter().map(|w| self.word(w)).collect();
        let render = words.windows(2).any(|w| w == ["server", "render"]);
        if render && render_has_run_dir() && !words.iter().any(|w| w.starts_with("--run-dir")) {
            let run = self.path("/run/openvpn-server");
            fs::create_dir_all(&run).expect("mkdir run dir");
            fs::set_permissions(&run, fs::Permissions::from_mode(0o710)).expect("chmod");
            args.push("--run-dir".into());
            args.push(run.to_string_lossy().into_owned());
        }
        Command::new(env!("CARGO_BIN_EXE_tunnelbroker"))
            .args(args)
            .current_dir(self.cwd())
            .env_remove("TUNNELBROKER_DIR")
            .env("RUST_BACKTRACE", "1")
            .env("COLUMNS", "100")
            .output()
            .expect("run tunnelbroker")
    }

    /// Runs `line`, which must succeed, and returns `$ line` with its
    /// output (stdout, then stderr).
    fn transcript(&self, line: &str) -> String {
        let out = self.run(line);
        assert!(
            out.status.success(),
            "{line}: {:?}\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        session(line, &out)
    }

    /// Runs `line`, which must fail with `code`, and returns its transcript.
    fn transcript_failing(&self, line: &str, code: i32) -> String {
        let out = self.run(line);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{line}\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        session(line, &out)
    }

    /// Runs `line`, which must succeed, and returns its stdout.
    fn stdout(&self, line: &str) -> String {
        let out = self.run(line);
        assert!(out.status.success(), "{line}: {}", text(&out.stderr));
        text(&out.stdout)
    }
}

/// Where scratch roots are made: not under a directory Debian's OpenVPN
/// unit hides (`/tmp`, `/var/tmp`, `/home`, `/root`, `/run/user`), so that
/// `server render` has nothing to warn about that would end up in the
/// examples; the build's own temporary directory if it qualifies, else
/// /dev/shm.
fn scratch_parent() -> PathBuf {
    let hidden = ["/tmp", "/var/tmp", "/home", "/root", "/run/user"];
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let target = target.canonicalize().unwrap_or(target);
    if !hidden.iter().any(|h| target.starts_with(h)) {
        return target;
    }
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        return shm;
    }
    std::env::temp_dir()
}

/// Whether `server render` takes `--run-dir`.
fn render_has_run_dir() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        let out = Command::new(env!("CARGO_BIN_EXE_tunnelbroker"))
            .args(["server", "render", "--help"])
            .output()
            .expect("run tunnelbroker");
        text(&out.stdout).contains("--run-dir")
    })
}

/// `$ line`, then what it printed.
fn session(line: &str, out: &Output) -> String {
    let mut s = format!("$ {line}\n");
    for part in [&out.stdout, &out.stderr] {
        let t = text(part);
        s.push_str(&t);
        if !t.is_empty() && !t.ends_with('\n') {
            s.push('\n');
        }
    }
    s
}

/// Splits a shell command line into words, as `sh` would for the simple
/// lines of the docs: single and double quotes, backslash escapes; it stops
/// at an unquoted `#`, `|`, `;`, `&` or redirection, and a process
/// substitution `<(...)` becomes one word naming a readable file.
fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            '|' | ';' | '&' | '>' => break,
            '<' if chars.peek() == Some(&'(') => {
                let mut depth = 0;
                for c in chars.by_ref() {
                    match c {
                        '(' => depth += 1,
                        ')' if depth == 1 => break,
                        ')' => depth -= 1,
                        _ => {}
                    }
                }
                cur.push_str("/dev/null");
                in_word = true;
            }
            '<' => break,
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated '".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => cur.push(chars.next().ok_or("trailing \\")?),
                        Some(c) => cur.push(c),
                        None => return Err("unterminated \"".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(chars.next().ok_or("trailing \\")?);
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

// ----- normalisation ---------------------------------------------------------

/// Makes output stable: see the module's documentation.
struct Normal<'a> {
    scratch: &'a Scratch,
    /// Values to replace verbatim (serials, ...), longest first.
    fixed: Vec<(String, String)>,
}

impl<'a> Normal<'a> {
    fn new(scratch: &'a Scratch) -> Self {
        Normal {
            scratch,
            fixed: Vec::new(),
        }
    }

    /// Replaces `from` with `to` wherever it occurs.
    fn replace(&mut self, from: impl Into<String>, to: impl Into<String>) {
        self.fixed.push((from.into(), to.into()));
        self.fixed.sort_by_key(|(f, _)| std::cmp::Reverse(f.len()));
    }

    /// Replaces the serials of every client certificate of the broker in
    /// `dir` (as `tunnelbroker client list --json` shows them) with fixed
    /// ones.
    fn serials_of(&mut self, broker: &str) {
        let list: Value = serde_json::from_str(
            &self
                .scratch
                .stdout(&format!("tunnelbroker --dir {broker} --json client list")),
        )
        .expect("client list --json");
        for (i, c) in list.as_array().expect("a list").iter().enumerate() {
            if let Some(serial) = c["serial"].as_str() {
                let n = self.fixed.len() + i + 1;
                self.replace(serial, fake_serial(serial, n));
            }
        }
    }

    fn apply(&self, s: &str) -> String {
        let root = self.scratch.root.to_string_lossy().into_owned();
        // Windows bundles have CRLF line ends; the Markdown has LF.
        let mut s = s.replace("\r\n", "\n").replace(&root, "");
        let bin = Path::new(env!("CARGO_BIN_EXE_tunnelbroker"));
        for b in [bin.to_path_buf(), bin.canonicalize().unwrap_or_default()] {
            if !b.as_os_str().is_empty() {
                s = s.replace(&*b.to_string_lossy(), "/usr/bin/tunnelbroker");
            }
        }
        for (from, to) in &self.fixed {
            s = s.replace(from.as_str(), to);
        }
        s = openvpn_version(&s);
        s = manifest_id(&s);
        s = shift_dates(&s, today());
        short_pem(&s)
    }
}

/// The manifest's name carries the first 16 hex digits of the CA's
/// fingerprint, new with every CA: a fixed one instead.
fn manifest_id(s: &str) -> String {
    const NAME: &str = ".tunnelbroker-manifest.";
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(NAME) {
        let (head, tail) = rest.split_at(i + NAME.len());
        out.push_str(head);
        let id_len = tail.bytes().take_while(u8::is_ascii_hexdigit).count();
        if id_len == 16 {
            out.push_str("3f9a1c0e5b7d2468");
            rest = &tail[16..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// A serial as long as `real`, made of a fixed pattern and `n`.
fn fake_serial(real: &str, n: usize) -> String {
    let pattern = "4a7e1c9d03b25f68e1d7a0c4b39f2e5d718c6a0b";
    let tail = format!("{n:02x}");
    let mut s: String = pattern
        .chars()
        .cycle()
        .take(real.len().saturating_sub(tail.len()))
        .collect();
    if real.chars().any(|c| c.is_ascii_uppercase()) {
        s = s.to_uppercase();
    }
    s + &tail
}

fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

/// Every `YYYY-MM-DD` (and the time of day after it) moved by
/// `DOC_TODAY - today`; times of day become 12:00:00.
fn shift_dates(s: &str, today: Date) -> String {
    let shift = DOC_TODAY - today;
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if let Some(date) = date_at(b, i) {
            let moved = date + shift;
            write!(
                out,
                "{:04}-{:02}-{:02}",
                moved.year(),
                u8::from(moved.month()),
                moved.day()
            )
            .unwrap();
            i += 10;
            // A time of day: THH:MM:SS or " HH:MM:SS", fractions dropped.
            if i + 9 <= b.len() && (b[i] == b'T' || b[i] == b' ') && is_time(&b[i + 1..i + 9]) {
                out.push(b[i] as char);
                out.push_str("12:00:00");
                i += 9;
                if i < b.len() && b[i] == b'.' {
                    i += 1;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            continue;
        }
        let c = s[i..].chars().next().unwrap();
        out.push(c);
        i += c.len_utf8();
    }
    out
}

fn date_at(b: &[u8], i: usize) -> Option<Date> {
    let w = b.get(i..i + 10)?;
    let digits = |r: std::ops::Range<usize>| w[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..4) && w[4] == b'-' && digits(5..7) && w[7] == b'-' && digits(8..10)) {
        return None;
    }
    if i > 0 && (b[i - 1].is_ascii_alphanumeric()) {
        return None;
    }
    if b.get(i + 10).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| std::str::from_utf8(&w[r]).ok()?.parse::<u32>().ok();
    let month = time::Month::try_from(n(5..7)? as u8).ok()?;
    Date::from_calendar_date(n(0..4)? as i32, month, n(8..10)? as u8).ok()
}

fn is_time(w: &[u8]) -> bool {
    w.len() == 8
        && w[2] == b':'
        && w[5] == b':'
        && [0, 1, 3, 4, 6, 7].iter().all(|&k| w[k].is_ascii_digit())
}

/// The body of every PEM block (and of OpenVPN static keys) as one `…`.
fn short_pem(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut inside = false;
    for line in s.split_inclusive('\n') {
        let t = line.trim_end();
        if t.starts_with("-----BEGIN ") && t.ends_with("-----") {
            inside = true;
            out.push_str(line);
            out.push_str("…\n");
        } else if t.starts_with("-----END ") && t.ends_with("-----") {
            inside = false;
            out.push_str(line);
        } else if !inside {
            out.push_str(line);
        }
    }
    out
}

/// `OpenVPN 2.6.N` of the machine as `OpenVPN 2.6.14`, the version of the
/// machine the examples were made on.
fn openvpn_version(s: &str) -> String {
    let Some(at) = s.find("OpenVPN 2.") else {
        return s.to_owned();
    };
    let rest = &s[at + "OpenVPN ".len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    format!("{}OpenVPN 2.6.14{}", &s[..at], &rest[end..])
}

// ----- the examples ------------------------------------------------------------

/// Where the examples keep the broker and the rendered files: the layout the
/// operator guide recommends.
const BROKER: &str = "/var/lib/tunnelbroker";
const SERVER: &str = "/etc/openvpn/server";

/// `tunnelbroker init` of an example broker in `BROKER`, mode `mode`.
fn init_line(mode: &str) -> String {
    let mode = if mode == "per-client" {
        String::new()
    } else {
        format!(" --mode {mode}")
    };
    format!(
        "tunnelbroker --dir {BROKER} init --pool 2001:db8:0:f100::/56 --endpoint vpn.example.net{mode}"
    )
}

/// Every named example, by name.
fn generate() -> BTreeMap<String, Example> {
    let mut all = BTreeMap::new();
    operator_guide(&mut all);
    servers(&mut all);
    audit(&mut all);
    doctor(&mut all);
    all
}

/// Writes `text` of `rel` under the scratch root.
fn write(scratch: &Scratch, rel: &str, text: &str) {
    let p = scratch.path(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

/// The entries under `dir` (recursive, sorted, directories with `/`), each
/// with its mode and what the describing function says of it.
fn layout(dir: &Path, describe: fn(&str) -> &'static str) -> String {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, u32)>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let meta = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                out.push((format!("{rel}/"), mode));
                walk(base, &p, out);
            } else {
                out.push((rel, mode));
            }
        }
    }
    let mut entries = Vec::new();
    walk(dir, dir, &mut entries);
    let width = entries.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut s = String::new();
    for (name, mode) in entries {
        let what = describe(&name);
        let line = format!("{name:width$}  {mode:04o}  {what}");
        writeln!(s, "{}", line.trim_end()).unwrap();
    }
    s
}

/// What each file `init` creates is for.
fn broker_entry(name: &str) -> &'static str {
    match name {
        "tunnelbroker.toml" => "settings, commented; validity periods, [server] dir and run_dir",
        "ca.crt" => "the CA certificate (with its issuers, for an imported intermediate)",
        "server.crt" => "the OpenVPN server's certificate (CN tunnelbroker-server)",
        "crl.pem" => "the current CRL; every CRL write also updates the rendered copy",
        "clients.db" => "the client database, SQLite in WAL mode (it holds client keys)",
        "clients.db-wal" | "clients.db-shm" => "SQLite's write-ahead log and index",
        "private/" => "the keys",
        "private/ca.key" => "the CA's key: keep an offline, encrypted copy",
        "private/server.key" => "the OpenVPN server's key",
        "private/tls-crypt.key" => "the tls-crypt key (v1: every client carries it)",
        "private/tls-crypt-v2-server.key" => {
            "the tls-crypt-v2 server key: wraps each client's own key"
        }
        "run/" => "management sockets of servers rendered by earlier versions",
        _ => "",
    }
}

/// What each file `server render` writes is for.
fn rendered_entry(name: &str) -> &'static str {
    match name {
        n if n.ends_with(".conf") => "an instance's configuration: openvpn-server@NAME",
        n if n.ends_with(".up") => "the instance's up script (link-local address)",
        n if n.ends_with(".down") => "the instance's down script, run by the down-root plugin",
        "ca.crt" => "the CA chain OpenVPN checks clients against",
        "server.crt" => "the server's certificate",
        "server.key" => "its key",
        "tls-crypt.key" => "the tls-crypt key",
        "tls-crypt-v2-server.key" => "the tls-crypt-v2 server key",
        "tls-crypt-v2-verify" => "refuses keys of revoked or unknown clients, before TLS",
        "tls-crypt-v2-clients" => "the clients it accepts, rewritten with every CRL",
        "crl.pem" => "the CRL, rewritten by every revocation and CRL refresh",
        "ccd/" => "shared mode: one entry per client",
        "systemd/" => "the daily CRL refresh: install into /etc/systemd/system",
        n if n.starts_with(".tunnelbroker-manifest.") => {
            "the files this broker wrote here (it touches no others)"
        }
        n if n.starts_with("systemd/") => "",
        n if n.starts_with("ccd/") => "",
        _ => "",
    }
}

fn operator_guide(all: &mut BTreeMap<String, Example>) {
    let s = Scratch::new();
    let init = s.transcript(&init_line("per-client"));
    let mut n = Normal::new(&s);
    all.insert("guide-init".into(), Example::console(n.apply(&init)));
    all.insert(
        "guide-broker-layout".into(),
        Example::text(n.apply(&layout(&s.path(BROKER), broker_entry))),
    );

    let add = s.transcript(&format!(
        "tunnelbroker --dir {BROKER} client add alice --subnet --email alice@example.org --name \"Alice A.\""
    ));
    s.stdout(&format!(
        "tunnelbroker --dir {BROKER} client add bob --hermit --os windows"
    ));
    n.serials_of(BROKER);
    all.insert("guide-client-add".into(), Example::console(n.apply(&add)));
    let show = s.transcript(&format!(
        "tunnelbroker --dir {BROKER} client show alice --json"
    ));
    all.insert("guide-client-show".into(), Example::console(n.apply(&show)));

    let csv = "id,kind,os,email,name,prefix\n\
               carol,subnet,linux,carol@example.org,Carol,\n\
               dave,hermit,windows,dave@example.org,Dave,2001:db8:0:f1ff::99\n\
               bob,hermit,linux,bob@example.org,Bob,\n\
               eve!,hermit,linux,,,\n";
    write(&s, "/root/users.csv", csv);
    let import = s.transcript_failing(
        &format!("tunnelbroker --dir {BROKER} client import users.csv"),
        2,
    );
    all.insert(
        "guide-client-import".into(),
        Example::console(format!("$ cat users.csv\n{csv}{}", n.apply(&import))),
    );

    let render = s.transcript(&format!(
        "tunnelbroker --dir {BROKER} server render -o {SERVER}"
    ));
    all.insert("guide-render".into(), Example::console(n.apply(&render)));
    all.insert(
        "guide-server-layout".into(),
        Example::text(n.apply(&layout(&s.path(SERVER), rendered_entry))),
    );
    let audit = s.transcript(&format!(
        "tunnelbroker --dir {BROKER} audit --server-dir {SERVER}"
    ));
    all.insert("guide-audit".into(), Example::console(n.apply(&audit)));
    // The settings as render left them (it records where it rendered).
    let settings = fs::read_to_string(s.path(BROKER).join("tunnelbroker.toml")).unwrap();
    all.insert("guide-settings".into(), Example::text(n.apply(&settings)));
}

/// The rendered server files and client bundles of docs/openvpn.md, in both
/// modes: alice, a subnet client with 2001:db8:0:f1ab::/64; bob, a hermit
/// with 2001:db8:0:f1ff::7; carol, a Windows subnet client (per-client mode).
fn servers(all: &mut BTreeMap<String, Example>) {
    for mode in ["per-client", "shared"] {
        let s = Scratch::new();
        s.stdout(&init_line(mode));
        s.stdout(&format!(
            "tunnelbroker --dir {BROKER} client add alice --subnet --prefix 2001:db8:0:f1ab::/64"
        ));
        s.stdout(&format!(
            "tunnelbroker --dir {BROKER} client add bob --hermit --prefix 2001:db8:0:f1ff::7"
        ));
        if mode == "per-client" {
            s.stdout(&format!(
                "tunnelbroker --dir {BROKER} client add carol --subnet --os windows --prefix 2001:db8:0:f1ac::/64"
            ));
        }
        let mut n = Normal::new(&s);
        n.serials_of(BROKER);
        let render = s.transcript(&format!(
            "tunnelbroker --dir {BROKER} server render -o {SERVER}"
        ));
        all.insert(
            format!("openvpn-{mode}-render"),
            Example::console(n.apply(&render)),
        );
        let dir = s.path(SERVER);
        let files: &[&str] = if mode == "per-client" {
            &[
                "tb-client-alice.conf",
                "tb-client-alice.up",
                "tb-client-alice.down",
                "tb-client-bob.conf",
            ]
        } else {
            &["tb-shared.conf", "ccd/alice", "ccd/bob"]
        };
        for f in files {
            let text = fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            all.insert(format!("openvpn-{mode}-{f}"), Example::text(n.apply(&text)));
        }

        // The bundle files docs/openvpn.md shows.
        let (clients, shown): (&[&str], &[&str]) = if mode == "per-client" {
            (
                &["alice", "bob", "carol"],
                &[
                    "alice-alice.conf",
                    "alice-alice.up",
                    "alice-alice.down",
                    "alice-README.txt",
                    "bob-bob.conf",
                    "carol-carol.ovpn",
                    "carol-README.txt",
                ],
            )
        } else {
            (&["alice"], &["alice-alice.conf"])
        };
        for id in clients {
            for (name, text) in bundle(&s, id) {
                if !shown.contains(&name.as_str()) {
                    continue;
                }
                all.insert(
                    format!("openvpn-{mode}-bundle-{name}"),
                    Example::text(n.apply(&text)),
                );
            }
        }
    }
}

/// The files of client `id`'s bundle, by name within the archive (the
/// folder dropped), written by `tunnelbroker client bundle`.
fn bundle(s: &Scratch, id: &str) -> Vec<(String, String)> {
    let out = s.stdout(&format!(
        "tunnelbroker --dir {BROKER} --json client bundle {id}"
    ));
    let v: Value = serde_json::from_str(&out).unwrap();
    let path = s.cwd().join(v["bundle"].as_str().unwrap());
    let mut files = Vec::new();
    let prefix = format!("{id}/");
    if path.extension().is_some_and(|e| e == "zip") {
        let mut zip = zip::ZipArchive::new(fs::File::open(&path).unwrap()).unwrap();
        for i in 0..zip.len() {
            let mut f = zip.by_index(i).unwrap();
            let mut text = String::new();
            if f.is_dir() {
                continue;
            }
            let name = f.name().unwrap().trim_start_matches(&prefix).to_owned();
            f.read_to_string(&mut text).unwrap();
            files.push((format!("{id}-{name}"), text));
        }
    } else {
        let gz = flate2::read::GzDecoder::new(fs::File::open(&path).unwrap());
        let mut tar = tar::Archive::new(gz);
        for entry in tar.entries().unwrap() {
            let mut e = entry.unwrap();
            if !e.header().entry_type().is_file() {
                continue;
            }
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let name = name.trim_start_matches(&prefix).to_owned();
            let mut text = String::new();
            e.read_to_string(&mut text).unwrap();
            files.push((format!("{id}-{name}"), text));
        }
    }
    files
}

/// The audit examples of docs/troubleshooting.md: three clients, bob's
/// certificate made to expire in 12 days, carol revoked after rendering.
fn audit(all: &mut BTreeMap<String, Example>) {
    let s = Scratch::new();
    s.stdout(&init_line("per-client"));
    s.stdout(&format!(
        "tunnelbroker --dir {BROKER} client add alice --subnet"
    ));
    // The validity periods are shared settings: the client database holds
    // them (tunnelbroker.toml is a cache), so that is where bob's shorter
    // one is set, and the usual one put back after.
    let db = rusqlite::Connection::open(s.path(BROKER).join("clients.db")).unwrap();
    let get = "SELECT value FROM shared WHERE key = 'settings.validity'";
    let set = "UPDATE shared SET value = ?1 WHERE key = 'settings.validity'";
    let validity: String = db.query_row(get, [], |r| r.get(0)).unwrap();
    let short = validity.replace("client_days = 365", "client_days = 12");
    assert_ne!(short, validity, "no client_days = 365 in {validity}");
    db.execute(set, [&short]).unwrap();
    s.stdout(&format!(
        "tunnelbroker --dir {BROKER} client add bob --hermit"
    ));
    db.execute(set, [&validity]).unwrap();
    s.stdout(&format!(
        "tunnelbroker --dir {BROKER} client add carol --subnet"
    ));
    s.stdout(&format!(
        "tunnelbroker --dir {BROKER} server render -o {SERVER}"
    ));
    let revoke = s.run(&format!("tunnelbroker --dir {BROKER} client revoke carol"));
    assert!(revoke.status.success(), "{}", text(&revoke.stderr));
    let mut n = Normal::new(&s);
    n.serials_of(BROKER);
    let report = s.transcript(&format!(
        "tunnelbroker --dir {BROKER} audit --server-dir {SERVER}"
    ));
    all.insert("audit-report".into(), Example::console(n.apply(&report)));
    let fix = s.transcript(&format!(
        "tunnelbroker --dir {BROKER} audit --fix --server-dir {SERVER}"
    ));
    // Only the `fixed:` lines: the report around them is the one above.
    let fixed: String = fix
        .lines()
        .filter(|l| l.starts_with("fixed:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!fixed.is_empty(), "audit --fix fixed nothing:\n{fix}");
    all.insert("audit-fixed".into(), Example::console(n.apply(&fixed)));
}

/// The examples made elsewhere or only on some machines, kept when not
/// made here: `doctor-wrong-key` (see [`DOCTOR_MACHINE`]) and `doctor-pass`,
/// which needs a real tunnel: tunnelbroker-core's `doctor_e2e` compares and
/// refreshes it, as root (`UPDATE_DOCS=1 cargo test -p tunnelbroker-core
/// --test tests doctor_e2e`).
const NEEDS_OPENVPN: &[&str] = &["doctor-wrong-key", "doctor-pass"];

/// What the doctor example shows of this machine: OpenVPN installed,
/// /dev/net/tun, IPv6, and no tun interface up. Where the doctor sees
/// otherwise, the example is not compared (unless `CI=true`).
const DOCTOR_MACHINE: &[&str] = &[
    "PASS  openvpn ",
    "PASS  tun-device ",
    "PASS  ipv6 ",
    "WARN  tunnel        the tunnel is not up",
];

/// The failing doctor of docs/troubleshooting.md: alice's bundle with bob's
/// key.
fn doctor(all: &mut BTreeMap<String, Example>) {
    let s = Scratch::new();
    s.stdout(&init_line("per-client"));
    s.stdout(&format!(
        "tunnelbroker --dir {BROKER} client add alice --subnet"
    ));
    s.stdout(&format!(
        "tunnelbroker --dir {BROKER} client add bob --subnet"
    ));
    let alice = bundle(&s, "alice");
    let bob = bundle(&s, "bob");
    let block = |files: &[(String, String)], id: &str, tag: &str| -> String {
        let conf = &files
            .iter()
            .find(|(n, _)| n == &format!("{id}-{id}.conf"))
            .unwrap()
            .1;
        let open = format!("<{tag}>\n");
        let close = format!("</{tag}>");
        let a = conf.find(&open).unwrap();
        let b = conf.find(&close).unwrap();
        conf[a..b + close.len()].to_owned()
    };
    let conf = block(&alice, "alice", "key");
    let theirs = block(&bob, "bob", "key");
    let alice_conf = &alice
        .iter()
        .find(|(n, _)| n == "alice-alice.conf")
        .unwrap()
        .1;
    write(&s, "/root/alice.conf", &alice_conf.replace(&conf, &theirs));
    let mut n = Normal::new(&s);
    n.serials_of(BROKER);
    let out = s.transcript_failing("tunnelbroker doctor --config alice.conf --no-ping", 1);
    if let Some(line) = DOCTOR_MACHINE.iter().find(|l| !out.contains(*l)) {
        let why = format!("the doctor example needs a machine where doctor says {line:?}:\n{out}");
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{why}");
        }
        eprintln!("docs: not compared: {why}");
        return;
    }
    all.insert("doctor-wrong-key".into(), Example::console(n.apply(&out)));
}

// ----- the tests -----------------------------------------------------------------

/// Regenerates every region of README.md and docs/*.md and compares it
/// with the file; with `UPDATE_DOCS=1` rewrites the regions instead.
#[test]
fn docs_examples_are_real_output() {
    let update = std::env::var(UPDATE).is_ok_and(|v| v == "1");
    let named = generate();
    let mut used = BTreeSet::new();
    let mut drifted = Vec::new();
    let mut problems = Vec::new();
    for file in DOCS {
        let path = workspace().join(file);
        let old = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        let regions = regions(file, &old).unwrap_or_else(|e| panic!("{e}"));
        let lines: Vec<&str> = old.split_inclusive('\n').collect();
        let mut new = String::new();
        let mut at = 0;
        for r in &regions {
            new.extend(lines[at..r.start].iter().copied());
            let current: String = lines[r.start..r.end].concat();
            let wanted = if r.name == "console" {
                Some(console(&current))
            } else if let Some(e) = named.get(&r.name) {
                used.insert(r.name.clone());
                Some(e.fenced())
            } else if NEEDS_OPENVPN.contains(&r.name.as_str()) {
                // Not made on this machine (see `doctor`): kept as it is.
                None
            } else {
                problems.push(format!(
                    "{file}:{}: no example is named {:?}",
                    r.start, r.name
                ));
                None
            };
            match wanted {
                Some(w) if w != current => {
                    drifted.push(format!(
                        "{file}:{} ({})\n{}",
                        r.start,
                        r.name,
                        diff(&current, &w)
                    ));
                    new.push_str(&w);
                }
                _ => new.push_str(&current),
            }
            at = r.end;
        }
        new.extend(lines[at..].iter().copied());
        if update && new != old {
            fs::write(&path, new).unwrap();
        }
    }
    for name in named.keys().filter(|n| !used.contains(*n)) {
        problems.push(format!("example {name} is in no document"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    if !update {
        assert!(
            drifted.is_empty(),
            "these examples differ from what the code does now; after checking that the change \
             is the one you meant, refresh them with\n  {UPDATE}=1 cargo test -p tunnelbroker-cli \
             --test tests docs::\n\n{}",
            drifted.join("\n")
        );
    }
}

/// A `console` region again: its `$ tunnelbroker ...` lines run in a
/// scratch directory, each followed by its output.
fn console(current: &str) -> String {
    let s = Scratch::new();
    let n = Normal::new(&s);
    let mut body = String::new();
    let mut lang = "console";
    for (i, line) in current.lines().enumerate() {
        if i == 0 {
            lang = if line.ends_with("text") {
                "text"
            } else {
                "console"
            };
            continue;
        }
        if let Some(cmd) = line.strip_prefix("$ ") {
            body.push_str(&n.apply(&session(cmd, &s.run(cmd))));
        }
    }
    Example { lang, body }.fenced()
}

/// The lines of `old` and `new` that differ, `-`/`+`, first few only.
fn diff(old: &str, new: &str) -> String {
    let (o, n): (Vec<&str>, Vec<&str>) = (old.split('\n').collect(), new.split('\n').collect());
    let mut s = String::new();
    let mut shown = 0;
    for i in 0..o.len().max(n.len()) {
        let (a, b) = (o.get(i), n.get(i));
        if a != b {
            // Debug form: a stray \r or tab shows.
            if let Some(a) = a {
                writeln!(s, "  -{a:?}").unwrap();
            }
            if let Some(b) = b {
                writeln!(s, "  +{b:?}").unwrap();
            }
            shown += 1;
            if shown == 6 {
                writeln!(s, "  ...").unwrap();
                break;
            }
        }
    }
    s
}

/// Runs every documented `tunnelbroker` command line against a scratch
/// directory and fails on the ones the CLI does not accept.
#[test]
fn docs_commands_run_with_the_current_cli() {
    let mut refused = Vec::new();
    let mut count = 0;
    for file in DOCS {
        let text = fs::read_to_string(workspace().join(file)).unwrap();
        let s = Scratch::new();
        for (line_no, cmd) in command_lines(&text) {
            count += 1;
            let out = s.run(&cmd);
            let err = crate::text(&out.stderr);
            // clap's own errors start with "error:"; the broker's with
            // "tunnelbroker: error:" and are about what the command did.
            if err.starts_with("error:") || err.contains("panicked") {
                let first = err.lines().next().unwrap_or_default();
                refused.push(format!("{file}:{line_no}: {cmd}\n    {first}"));
            }
        }
    }
    assert!(count > 30, "only {count} command lines found");
    assert!(
        refused.is_empty(),
        "documented commands the CLI refuses:\n{}",
        refused.join("\n")
    );
}

/// The `tunnelbroker ...` lines of the fenced blocks of `text`, with their
/// line numbers: every such line of a `sh` block, and `$ tunnelbroker ...`
/// lines of any block.
fn command_lines(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut fence: Option<(String, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if let Some((ticks, _)) = &fence {
            if t.starts_with(ticks.as_str()) && t.trim_start_matches('`').trim().is_empty() {
                fence = None;
                continue;
            }
        } else if t.starts_with("```") {
            let ticks: String = t.chars().take_while(|&c| c == '`').collect();
            let lang = t[ticks.len()..].trim().to_owned();
            fence = Some((ticks, lang));
            continue;
        }
        let Some((_, lang)) = &fence else { continue };
        let cmd = match t.strip_prefix("$ ") {
            Some(c) => c,
            None if lang == "sh" => t,
            None => continue,
        };
        if cmd.starts_with("tunnelbroker ") {
            found.push((i + 1, cmd.to_owned()));
        }
    }
    found
}

/// The paths README.md's "Layout" lists exist in the workspace.
#[test]
fn readme_layout_names_existing_paths() {
    let readme = fs::read_to_string(workspace().join("README.md")).unwrap();
    let section = readme
        .split("## Layout")
        .nth(1)
        .expect("README.md has a Layout section");
    let block = section.split("```").nth(1).expect("a block");
    let mut parent = PathBuf::new();
    let mut missing = Vec::new();
    for line in block.lines().skip(1) {
        if line.starts_with(' ') && !line.starts_with("  ") || line.trim().is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let word = line.split_whitespace().next().unwrap();
        // Continuation lines of a description are indented far.
        if indent > 4 {
            continue;
        }
        let path = if indent == 0 {
            PathBuf::from(word)
        } else {
            parent.join(word)
        };
        if indent == 0 && word.ends_with('/') {
            parent = PathBuf::from(word);
        }
        if !workspace().join(&path).exists() {
            missing.push(path.display().to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "README.md's Layout names missing paths: {missing:?}"
    );
}

#[test]
fn shell_words_split_as_sh_does() {
    assert_eq!(
        shell_words(r#"tunnelbroker client add alice --name "Alice A." # comment"#).unwrap(),
        [
            "tunnelbroker",
            "client",
            "add",
            "alice",
            "--name",
            "Alice A."
        ]
    );
    assert_eq!(
        shell_words("tunnelbroker client import <(export-users) | head").unwrap(),
        ["tunnelbroker", "client", "import", "/dev/null"]
    );
    assert_eq!(
        shell_words("tunnelbroker audit --json > report.json").unwrap(),
        ["tunnelbroker", "audit", "--json"]
    );
}

#[test]
fn dates_shift_to_the_documented_day() {
    let today = time::macros::date!(2027 - 03 - 01);
    assert_eq!(
        shift_dates(
            "until 2027-03-13, at 2027-03-01T09:41:07.123Z; id 12027-03-01",
            today
        ),
        "until 2026-12-08, at 2026-11-26T12:00:00Z; id 12027-03-01"
    );
}

/// The names in backticks of the first column of the Markdown table in
/// `section` of `text` that has `header` as its first column.
fn table_names(text: &str, header: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with(&format!("| {header} |")) {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        if !line.starts_with('|') {
            if !names.is_empty() {
                break;
            }
            continue;
        }
        let cell = line.split('|').nth(1).unwrap_or_default();
        for (i, part) in cell.split('`').enumerate() {
            if i % 2 == 1 {
                names.insert(part.to_owned());
            }
        }
    }
    names
}

/// The tables of docs/troubleshooting.md explain every check audit and
/// doctor report.
#[test]
fn troubleshooting_explains_every_check() {
    let doc = fs::read_to_string(workspace().join("docs/troubleshooting.md")).unwrap();
    let doctor = table_names(&doc, "check");
    for name in tunnelbroker_core::doctor::CHECKS {
        assert!(
            doctor.contains(*name),
            "doctor's check {name} is not in troubleshooting.md"
        );
    }
    // The checks of real audits: a healthy broker and one with problems.
    let audit_doc = doc.split("## audit on the broker").nth(1).unwrap();
    let audit = table_names(audit_doc, "check");
    let s = Scratch::new();
    s.stdout(&init_line("per-client"));
    s.stdout(&format!(
        "tunnelbroker --dir {BROKER} client add alice --subnet"
    ));
    let mut seen = BTreeSet::new();
    for line in [
        format!("tunnelbroker --dir {BROKER} --json audit"),
        format!("tunnelbroker --dir {BROKER} --json audit --server-dir {SERVER}"),
    ] {
        let out = s.run(&line);
        let report: Value = serde_json::from_slice(&out.stdout).expect("audit --json");
        for c in report["checks"].as_array().unwrap() {
            seen.insert(c["name"].as_str().unwrap().to_owned());
        }
    }
    assert!(seen.len() > 8, "{seen:?}");
    let guide = fs::read_to_string(workspace().join("docs/operator-guide.md")).unwrap();
    let what = guide
        .split("### What audit checks")
        .nth(1)
        .and_then(|s| s.split("\n### ").next())
        .expect("the operator guide's \"What audit checks\"");
    let unlisted: Vec<_> = seen
        .iter()
        .filter(|c| !what.contains(&format!("`{c}`")))
        .collect();
    assert!(
        unlisted.is_empty(),
        "audit's checks {unlisted:?} are not in the operator guide's \"What audit checks\""
    );
    let missing: Vec<_> = seen.difference(&audit).collect();
    assert!(
        missing.is_empty(),
        "audit's checks {missing:?} are not in troubleshooting.md"
    );
}

/// The all-PASS doctor report of docs/troubleshooting.md (made with a real
/// tunnel, which this binary cannot bring up: tunnelbroker-core's
/// doctor_e2e tests that report) lists every check in order, and its
/// counts add up.
#[test]
fn the_passing_doctor_example_lists_every_check() {
    let doc = fs::read_to_string(workspace().join("docs/troubleshooting.md")).unwrap();
    let block = doc
        .split("<!-- generated: doctor-pass -->\n```console\n$ tunnelbroker doctor --config ")
        .nth(1)
        .expect("the passing doctor example")
        .split("```")
        .next()
        .unwrap();
    let lines: Vec<&str> = block.lines().collect();
    let checks: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("PASS  "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(checks, tunnelbroker_core::doctor::CHECKS, "{block}");
    let summary = format!("{} pass, 0 warn, 0 fail, 0 skipped", checks.len());
    assert_eq!(lines.last(), Some(&summary.as_str()), "{block}");
    let prose = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    let claim = format!("all {} checks pass", checks.len());
    assert!(
        prose.contains(&claim),
        "troubleshooting.md should say {claim:?}"
    );
}

/// The fenced blocks of `text` whose text contains `needle`.
fn blocks_with<'t>(text: &'t str, needle: &str) -> Vec<&'t str> {
    text.split("```")
        .skip(1)
        .step_by(2)
        .filter(|b| b.contains(needle))
        .map(|b| b.split_once('\n').map_or("", |(_, body)| body))
        .collect()
}

/// The database backups the operator guide shows (`sqlite3 .backup`, and
/// Python's backup API) run as written against a broker in use, and a
/// broker restored from them has every client and passes audit.
#[test]
fn the_documented_database_backups_restore_a_broker() {
    let guide = fs::read_to_string(workspace().join("docs/operator-guide.md")).unwrap();
    let recipes: Vec<(&str, &str)> = [("sqlite3", ".backup "), ("python3", "s.backup(d)")]
        .into_iter()
        .flat_map(|(tool, needle)| {
            blocks_with(&guide, needle)
                .into_iter()
                .map(move |b| (tool, b))
        })
        .collect();
    assert_eq!(recipes.len(), 2, "the guide shows two backups");
    let s = Scratch::new();
    s.stdout(&init_line("per-client"));
    for id in ["alice", "bob", "carol"] {
        s.stdout(&format!(
            "tunnelbroker --dir {BROKER} client add {id} --subnet"
        ));
    }
    s.stdout(&format!("tunnelbroker --dir {BROKER} client revoke bob"));
    let before = s.stdout(&format!("tunnelbroker --dir {BROKER} --json client list"));
    let db = s.path(BROKER).join("clients.db");
    for (tool, recipe) in recipes {
        if Command::new(tool).arg("--version").output().is_err() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{tool} is not installed");
            }
            eprintln!("docs: {tool} is not installed; its backup is not tried");
            continue;
        }
        let backups = s.path("/var/backups/tunnelbroker");
        fs::create_dir_all(&backups).unwrap();
        let script = recipe
            .replace(BROKER, &s.path(BROKER).to_string_lossy())
            .replace("/var/backups/tunnelbroker", &backups.to_string_lossy());
        let out = Command::new("sh")
            .args(["-e", "-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool}: {script}\n{}",
            text(&out.stderr)
        );
        let copy = backups.join("clients.db");
        assert!(copy.exists(), "{tool} made no backup");

        // Restore: the broker's other files, the backup as clients.db.
        let restored = s.path("/var/lib/restored");
        let _ = fs::remove_dir_all(&restored);
        fs::create_dir_all(restored.join("private")).unwrap();
        for f in [
            "tunnelbroker.toml",
            "ca.crt",
            "server.crt",
            "crl.pem",
            "private/ca.key",
            "private/server.key",
            "private/tls-crypt.key",
            "private/tls-crypt-v2-server.key",
        ] {
            fs::copy(s.path(BROKER).join(f), restored.join(f)).unwrap();
        }
        fs::rename(&copy, restored.join("clients.db")).unwrap();
        let after = s.stdout("tunnelbroker --dir /var/lib/restored --json client list");
        assert_eq!(after, before, "{tool}: the restored broker differs");
        let audit = s.run("tunnelbroker --dir /var/lib/restored audit");
        assert!(
            !text(&audit.stdout).contains("FAIL  database"),
            "{tool}: {}",
            text(&audit.stdout)
        );
    }
    assert!(db.exists());
}

/// The backticked words of `cell` outside parentheses (explanations in
/// parentheses name other things).
fn backticked_outside_parens(cell: &str) -> Vec<String> {
    let (mut words, mut cur) = (Vec::new(), String::new());
    let (mut tick, mut depth) = (false, 0u32);
    for c in cell.chars() {
        match c {
            '`' if depth == 0 => {
                if tick {
                    words.push(std::mem::take(&mut cur));
                }
                tick = !tick;
            }
            _ if tick => cur.push(c),
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    words
}

/// The members the stub declares in `class NAME` (properties, methods,
/// class variables).
fn stub_members(stub: &str, class: &str) -> Option<BTreeSet<String>> {
    let start = stub.lines().position(|l| {
        l.starts_with(&format!("class {class}(")) || l.starts_with(&format!("class {class}:"))
    })?;
    let mut members = BTreeSet::new();
    for line in stub.lines().skip(start + 1) {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            break;
        }
        let t = line.trim_start();
        let t = t.strip_prefix("def ").unwrap_or(t);
        let name: String = t
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            members.insert(name);
        }
    }
    Some(members)
}

/// The classes and members the tables of docs/python.md name exist in the
/// module's stubs (which `mypy --strict` holds to the module): a renamed
/// method fails here.
#[test]
fn python_api_tables_name_what_the_stubs_declare() {
    let doc = fs::read_to_string(workspace().join("docs/python.md")).unwrap();
    let stub = fs::read_to_string(
        workspace().join("tunnelbroker-py/python/tunnelbroker/_tunnelbroker.pyi"),
    )
    .unwrap();
    let ident = |w: &str| -> Option<String> {
        let name: String = w
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let rest = &w[name.len()..];
        (!name.is_empty() && (rest.is_empty() || rest.starts_with('('))).then_some(name)
    };
    // Python's own protocol, not members of the stub.
    let builtin = ["len", "str", "in", "with"];
    let mut missing = Vec::new();
    let mut checked = 0;
    let mut header = "";
    for line in doc.lines() {
        if !line.starts_with('|') {
            header = "";
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if header.is_empty() {
            header = cells.get(1).copied().unwrap_or_default();
            continue;
        }
        let (class, members): (String, Vec<String>) = match header {
            "class" => {
                let Some(class) = backticked_outside_parens(cells[1])
                    .first()
                    .and_then(|w| ident(w))
                else {
                    continue;
                };
                (class, backticked_outside_parens(cells[2]))
            }
            "member" => ("Broker".into(), backticked_outside_parens(cells[1])),
            "exception" => {
                for e in backticked_outside_parens(cells[1]) {
                    checked += 1;
                    if stub_members(&stub, &e).is_none() {
                        missing.push(format!("class {e}"));
                    }
                }
                continue;
            }
            _ => continue,
        };
        let Some(declared) = stub_members(&stub, &class) else {
            missing.push(format!("class {class}"));
            continue;
        };
        for m in members.iter().filter_map(|w| ident(w)) {
            if builtin.contains(&m.as_str()) {
                continue;
            }
            checked += 1;
            if !declared.contains(&m) {
                missing.push(format!("{class}.{m}"));
            }
        }
    }
    assert!(checked > 60, "only {checked} names checked");
    assert!(
        missing.is_empty(),
        "docs/python.md names what the stubs do not declare: {missing:?}"
    );
}
