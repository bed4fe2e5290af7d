//! Rendering at scale (issue 19, item 1): a re-render writes only the files
//! that changed, a render killed at any moment leaves the old CCD tree or
//! the new one and never a mix, and the CCD files of clients that are gone
//! are removed. The speed itself is measured by `scripts/bench-render`, not
//! here.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tunnelbroker_core::broker::{RenderOptions, ServerMode};
use tunnelbroker_core::pki::RevocationReason;
use tunnelbroker_core::{Broker, ClientKind, InitOptions, NewClient, Settings};

use crate::operator_tempdir;
use crate::stores::{TestStore, by_store, sql};

/// A shared-mode broker in `dir/broker` with `n` clients `c0 ..` (half
/// subnets, half hermits) on a /48.
fn broker_with(dir: &Path, n: usize) -> Broker {
    let mut s = Settings::new(
        "2001:db8:abcd::/48".parse().unwrap(),
        "vpn.example.net".parse().unwrap(),
    );
    s.mode = ServerMode::Shared;
    let b = Broker::init(&dir.join("broker"), &InitOptions::new(s)).unwrap();
    import(&b, "c", 0..n);
    b
}

/// Subscribes `<prefix><i>` for every `i` in `range`.
fn import(b: &Broker, prefix: &str, range: std::ops::Range<usize>) {
    let mut csv = String::from("id,kind,os,email,name\n");
    for i in range {
        let kind = if i % 2 == 0 { "subnet" } else { "hermit" };
        csv.push_str(&format!("{prefix}{i},{kind},linux,,\n"));
    }
    let report = b.import_csv(&csv, &mut |_, _| {}).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

/// Options to render into `out`, with the run directory beside it.
fn options(out: &Path) -> RenderOptions {
    let mut o = RenderOptions::new();
    o.dir = Some(out.to_owned());
    o.run_dir = Some(out.parent().unwrap().join("run"));
    o
}

fn render(b: &Broker, out: &Path) -> tunnelbroker_core::broker::RenderReport {
    b.render_server_with(&options(out)).unwrap()
}

/// A rendering into `out` that fails, and its error.
fn render_fails(b: &Broker, out: &Path) -> tunnelbroker_core::Error {
    b.render_server_with(&options(out)).unwrap_err()
}

/// Every entry of a directory: name -> (inode, mtime in ns, contents).
fn tree(dir: &Path) -> BTreeMap<String, (u64, i128, Vec<u8>)> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            let mtime = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
            let data = fs::read(e.path()).unwrap_or_default();
            (
                e.file_name().to_string_lossy().into_owned(),
                (m.ino(), mtime, data),
            )
        })
        .collect()
}

fn names(paths: &[PathBuf], dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = paths
        .iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    v.sort();
    v
}

/// The temporary trees of the CCD switch left in `out`.
fn leftovers(out: &Path) -> Vec<String> {
    fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".ccd."))
        .collect()
}

#[test]
fn a_re_render_writes_only_the_files_that_changed() {
    let tmp = operator_tempdir();
    let b = broker_with(tmp.path(), 40);
    let out = tmp.path().join("out");
    let first = render(&b, &out);
    let out = first.dir.clone();
    let ccd = out.join("ccd");
    assert_eq!(fs::read_dir(&ccd).unwrap().count(), 40);
    assert!(leftovers(&out).is_empty());
    let conf = out.join("tb-shared.conf");
    let conf_ino = fs::metadata(&conf).unwrap().ino();

    // Unchanged files are not touched: same inode, same mtime. The clock
    // moves on first, so that a rewrite would show in the mtime too.
    let unchanged_since = |before: &BTreeMap<String, (u64, i128, Vec<u8>)>, skip: &[&str]| {
        let now = tree(&ccd);
        for (name, old) in before {
            if skip.contains(&name.as_str()) {
                continue;
            }
            assert_eq!(now.get(name), Some(old), "ccd/{name} was rewritten");
        }
    };
    let before = tree(&ccd);
    std::thread::sleep(Duration::from_millis(20));

    // One client more: its CCD file is written, and the list of clients
    // whose tls-crypt-v2 keys the server accepts; nothing else.
    b.add_client(&NewClient::new("zed".parse().unwrap(), ClientKind::Hermit))
        .unwrap();
    let r = render(&b, &out);
    assert_eq!(names(&r.written, &out), ["ccd/zed", "tls-crypt-v2-clients"]);
    assert!(r.removed.is_empty(), "{:?}", r.removed);
    unchanged_since(&before, &[]);
    assert_eq!(fs::metadata(&conf).unwrap().ino(), conf_ino);

    // One client revoked: its CCD file alone is removed.
    let before = tree(&ccd);
    b.revoke(&"c3".parse().unwrap(), RevocationReason::Unspecified)
        .unwrap();
    let r = render(&b, &out);
    assert!(r.written.is_empty(), "{:?}", r.written);
    assert_eq!(names(&r.removed, &out), ["ccd/c3"]);
    unchanged_since(&before, &["c3"]);

    // Several changes at once (three added, one revoked, one revoked and
    // purged since the last rendering), beside a file of the operator's:
    // one switch of the whole tree; the other files keep their inodes,
    // the operator's file stays, and no temporary tree is left.
    fs::write(ccd.join("operator-notes"), "not the broker's").unwrap();
    let before = tree(&ccd);
    let ccd_ino = fs::metadata(&ccd).unwrap().ino();
    import(&b, "n", 0..3);
    b.revoke(&"c5".parse().unwrap(), RevocationReason::Unspecified)
        .unwrap();
    b.revoke(&"c7".parse().unwrap(), RevocationReason::Unspecified)
        .unwrap();
    b.purge(&"c7".parse().unwrap()).unwrap();
    let r = render(&b, &out);
    assert_eq!(names(&r.written, &out), ["ccd/n0", "ccd/n1", "ccd/n2"]);
    assert_eq!(names(&r.removed, &out), ["ccd/c5", "ccd/c7"]);
    assert_ne!(fs::metadata(&ccd).unwrap().ino(), ccd_ino, "not switched");
    unchanged_since(&before, &["c5", "c7"]);
    assert!(!ccd.join("c5").exists() && !ccd.join("c7").exists());
    assert_eq!(
        fs::read_to_string(ccd.join("operator-notes")).unwrap(),
        "not the broker's"
    );
    assert!(
        r.warnings.iter().any(|w| w.contains("operator-notes")),
        "{:?}",
        r.warnings
    );
    assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
    assert_eq!(fs::metadata(&ccd).unwrap().mode() & 0o7777, 0o755);

    // And again: nothing to do, nothing touched.
    let before = tree(&ccd);
    let r = render(&b, &out);
    assert!(r.written.is_empty() && r.removed.is_empty(), "{r:?}");
    assert_eq!(tree(&ccd), before);
}

/// A re-render compares what is on disk, whatever its size and times say
/// (issue 19: the CCD files are read through their directory's descriptor):
/// a CCD file edited by hand (even with the same size and mtime), truncated,
/// given another mode or removed is put back, and nothing else is written; a
/// symbolic link in its place is refused and left alone.
#[test]
fn a_re_render_repairs_ccd_files_changed_by_hand() {
    let tmp = operator_tempdir();
    let b = broker_with(tmp.path(), 8);
    let out = render(&b, &tmp.path().join("out")).dir;
    let ccd = out.join("ccd");
    let rendered = contents(&ccd);
    let before = tree(&ccd);
    // Same size, same mtime: only the contents tell.
    let c0 = ccd.join("c0");
    let mtime = fs::metadata(&c0).unwrap().modified().unwrap();
    let mut edited = rendered["c0"].clone();
    let at = edited.len() - 2;
    edited[at] = if edited[at] == b'0' { b'1' } else { b'0' };
    fs::write(&c0, &edited).unwrap();
    fs::File::options()
        .write(true)
        .open(&c0)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(
        fs::metadata(&c0).unwrap().len(),
        rendered["c0"].len() as u64
    );
    assert_eq!(fs::metadata(&c0).unwrap().modified().unwrap(), mtime);
    fs::write(ccd.join("c1"), &rendered["c1"][..10]).unwrap();
    fs::write(ccd.join("c2"), "").unwrap();
    fs::set_permissions(ccd.join("c3"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(ccd.join("c4")).unwrap();
    let r = render(&b, &out);
    assert_eq!(
        names(&r.written, &out),
        ["ccd/c0", "ccd/c1", "ccd/c2", "ccd/c3", "ccd/c4"]
    );
    assert!(r.removed.is_empty(), "{:?}", r.removed);
    assert_eq!(contents(&ccd), rendered);
    assert_eq!(fs::metadata(ccd.join("c3")).unwrap().mode() & 0o7777, 0o644);
    let now = tree(&ccd);
    for name in ["c5", "c6", "c7"] {
        assert_eq!(now[name], before[name], "ccd/{name} was rewritten");
    }
    assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));

    // A link in place of a CCD file is never followed nor replaced.
    let elsewhere = tmp.path().join("elsewhere");
    fs::write(&elsewhere, "mine").unwrap();
    fs::remove_file(ccd.join("c5")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, ccd.join("c5")).unwrap();
    let mut o = RenderOptions::new();
    o.dir = Some(out.clone());
    let err = b.render_server_with(&o).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(err.to_string().contains("c5"), "{err}");
    assert_eq!(fs::read_to_string(&elsewhere).unwrap(), "mine");
    fs::remove_file(ccd.join("c5")).unwrap();
    let r = render(&b, &out);
    assert_eq!(names(&r.written, &out), ["ccd/c5"]);
    assert_eq!(contents(&ccd), rendered);
}

/// The environment variable that makes [`render_child`] render the broker
/// it names (a child process of
/// [`a_render_killed_at_any_moment_leaves_the_old_ccd_tree_or_the_new`]).
const CHILD: &str = "TUNNELBROKER_TEST_RENDER_CHILD";

/// Not a test of its own: without [`CHILD`] it does nothing. With it, it
/// renders the broker there into its recorded directory, as a process of
/// its own that the parent test kills.
#[test]
fn render_child() {
    if let Ok(dir) = std::env::var(CHILD) {
        Broker::open(Path::new(&dir))
            .unwrap()
            .render_server(None)
            .unwrap();
    }
}

/// Name -> contents of the regular files of a directory.
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    tree(dir).into_iter().map(|(n, (_, _, d))| (n, d)).collect()
}

#[test]
fn a_render_killed_at_any_moment_leaves_the_old_ccd_tree_or_the_new() {
    let tmp = operator_tempdir();
    let b = broker_with(tmp.path(), 1500);
    let out = render(&b, &tmp.path().join("out")).dir;
    let ccd = out.join("ccd");
    let old = contents(&ccd);
    import(&b, "more", 0..1500);
    b.revoke(&"c10".parse().unwrap(), RevocationReason::Unspecified)
        .unwrap();
    let child = |b: &Broker| {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["render_scale::render_child", "--exact", "--test-threads=1"])
            .env(CHILD, b.dir())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let restore = |tree: &BTreeMap<String, Vec<u8>>| {
        fs::remove_dir_all(&ccd).unwrap();
        fs::create_dir(&ccd).unwrap();
        for (n, d) in tree {
            fs::write(ccd.join(n), d).unwrap();
        }
    };
    // One whole rendering in a child: the new tree, and how long it takes.
    let start = Instant::now();
    assert!(child(&b).wait().unwrap().success());
    let whole = start.elapsed();
    let new = contents(&ccd);
    assert_eq!(new.len(), 2999);
    // Kill renderings at moments spread over that time.
    let (mut saw_old, mut saw_new) = (0, 0);
    for k in 1..=9 {
        restore(&old);
        let mut c = child(&b);
        std::thread::sleep(whole * k / 10);
        let _ = c.kill();
        c.wait().unwrap();
        let mut now = contents(&ccd);
        // The restored ccd/c10 stops being the broker's once a rendering
        // has completed (its manifest no longer lists it): then it stays,
        // as anyone else's file would, beside the new tree.
        if now != old && now.get("c10") == old.get("c10") {
            now.remove("c10");
        }
        if now == old {
            saw_old += 1;
        } else if now == new {
            saw_new += 1;
        } else {
            let only_new = now.keys().filter(|k| !old.contains_key(*k)).count();
            panic!(
                "killed after {:?} of {whole:?}: a mix of {} entries ({only_new} of the new ones)",
                whole * k / 10,
                now.len()
            );
        }
    }
    eprintln!("killed renderings: {saw_old} left the old tree, {saw_new} the new one");
    // The next rendering completes the change and sweeps what the killed
    // ones left behind. (The restored ccd/c10 is no longer the broker's: a
    // completed rendering removed it and its manifest no longer lists it,
    // so it stays, as any file of someone else's would.)
    restore(&old);
    let r = render(&b, &out);
    let now = contents(&ccd);
    assert!(now == new || (now.len() == new.len() + 1 && now.get("c10") == old.get("c10")));
    assert!(now.iter().all(|(k, v)| new.get(k).is_none_or(|n| n == v)));
    assert_eq!(r.written.len(), 1500, "{:?}", r.written.len());
    assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
}

/// The record of what render found, in `out` (`.tunnelbroker-seen.<id>`).
fn seen_record(out: &Path) -> Option<String> {
    starting(out, ".tunnelbroker-seen.").map(|p| fs::read_to_string(p).unwrap())
}

/// The file in `dir` whose name starts with `prefix`, if any.
fn starting(dir: &Path, prefix: &str) -> Option<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
}

/// Renders until the files have settled: render records a file it found as
/// planned only once its last change is 20 ms older than the rendering.
fn render_settled(b: &Broker, out: &Path) {
    std::thread::sleep(Duration::from_millis(60));
    render(b, out);
    std::thread::sleep(Duration::from_millis(60));
    let r = render(b, out);
    assert!(r.written.is_empty(), "{:?}", r.written);
}

/// Edits `path` keeping its size and modification time: only the contents
/// (and the change time, which nobody can set) tell.
fn edit_same_size(path: &Path) {
    let mtime = fs::metadata(path).unwrap().modified().unwrap();
    let mut data = fs::read(path).unwrap();
    let at = data.len() - 2;
    data[at] = if data[at] == b'0' { b'1' } else { b'0' };
    fs::write(path, &data).unwrap();
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(fs::metadata(path).unwrap().modified().unwrap(), mtime);
}

#[test]
fn hand_edits_are_found_when_render_looks_instead_of_reading() {
    let tmp = operator_tempdir();
    let b = broker_with(tmp.path(), 10);
    let out = render(&b, &tmp.path().join("out")).dir;
    let ccd = out.join("ccd");
    let rendered = contents(&ccd);
    render_settled(&b, &out);
    let record = seen_record(&out).expect("no record of found files");
    for i in 0..10 {
        assert!(record.contains(&format!(" ccd/c{i}\n")), "{record}");
    }

    // Every kind of edit, on files render would only look at.
    edit_same_size(&ccd.join("c0"));
    fs::set_permissions(ccd.join("c1"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(ccd.join("c1"), fs::Permissions::from_mode(0o644)).unwrap();
    let mut other = rendered["c2"].clone();
    let at = other.len() - 2;
    other[at] = if other[at] == b'0' { b'1' } else { b'0' };
    fs::write(out.join("c2.new"), &other).unwrap();
    fs::rename(out.join("c2.new"), ccd.join("c2")).unwrap();
    fs::set_permissions(ccd.join("c3"), fs::Permissions::from_mode(0o600)).unwrap();
    let r = render(&b, &out);
    assert_eq!(names(&r.written, &out), ["ccd/c0", "ccd/c2", "ccd/c3"]);
    assert_eq!(contents(&ccd), rendered);
    assert_eq!(fs::metadata(ccd.join("c3")).unwrap().mode() & 0o7777, 0o644);

    // A damaged record, or one of another version: every file is read.
    render_settled(&b, &out);
    let seen = starting(&out, ".tunnelbroker-seen.").unwrap();
    for damaged in [
        String::from("garbage"),
        seen_record(&out).unwrap().replace("cache v1", "cache v0"),
        seen_record(&out)
            .unwrap()
            .replace(" ccd/c9\n", " ccd/c9 x\n0 0\n"),
    ] {
        fs::write(&seen, damaged).unwrap();
        edit_same_size(&ccd.join("c4"));
        let r = render(&b, &out);
        assert_eq!(names(&r.written, &out), ["ccd/c4"]);
        assert_eq!(contents(&ccd), rendered);
        render_settled(&b, &out);
    }

    // A manifest of an older version (no record): every file is read.
    fs::remove_file(&seen).unwrap();
    edit_same_size(&ccd.join("c5"));
    let r = render(&b, &out);
    assert_eq!(names(&r.written, &out), ["ccd/c5"]);
    assert_eq!(contents(&ccd), rendered);

    // The manifest removed: the record is not trusted, every file is read
    // (and the files with the broker's header adopted, as before manifests).
    render_settled(&b, &out);
    let manifest = starting(&out, ".tunnelbroker-manifest.").unwrap();
    fs::remove_file(&manifest).unwrap();
    edit_same_size(&ccd.join("c6"));
    let r = render(&b, &out);
    assert_eq!(names(&r.written, &out), ["ccd/c6"]);
    assert_eq!(contents(&ccd), rendered);
    let manifest_text = fs::read_to_string(&manifest).unwrap();
    let o = options(&out);
    // A garbled manifest is refused, as before.
    fs::write(&manifest, "garbage\n").unwrap();
    let err = b.render_server_with(&o).unwrap_err();
    assert!(err.to_string().contains("manifest"), "{err}");
    fs::write(&manifest, manifest_text).unwrap();
    render_settled(&b, &out);
    edit_same_size(&ccd.join("c7"));
    let r = render(&b, &out);
    assert_eq!(names(&r.written, &out), ["ccd/c7"]);
    assert_eq!(contents(&ccd), rendered);
    assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
}

/// A directory of more than 2,000 planned files is looked at in several
/// threads, each over a run of the files in order (issue 19). Hand edits
/// anywhere in it are found (the first file, the last, and every part
/// between), and of two links in place of planned files, in different
/// runs, the refusal names the first in order, as a look in one thread
/// would.
#[test]
fn a_large_directory_looked_at_in_threads_finds_every_edit_in_order() {
    let tmp = operator_tempdir();
    let n = 2_400;
    let b = broker_with(tmp.path(), n);
    let out = render(&b, &tmp.path().join("out")).dir;
    let ccd = out.join("ccd");
    let rendered = contents(&ccd);
    render_settled(&b, &out);
    // The planned order is the clients' ID order.
    let mut ids: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    ids.sort();
    let picks: Vec<&str> = [0, n / 4, n / 2 - 1, n / 2, n / 2 + 1, 3 * n / 4, n - 1]
        .iter()
        .map(|&i| ids[i].as_str())
        .collect();
    for id in &picks {
        edit_same_size(&ccd.join(id));
    }
    let r = render(&b, &out);
    let mut want: Vec<String> = picks.iter().map(|id| format!("ccd/{id}")).collect();
    want.sort();
    let mut got = names(&r.written, &out);
    got.sort();
    assert_eq!(got, want);
    assert_eq!(contents(&ccd), rendered);

    // Links where two files were, one in each half: the refusal names the
    // first in order, and nothing is written.
    render_settled(&b, &out);
    let (early, late) = (ids[n / 8].as_str(), ids[7 * n / 8].as_str());
    for id in [late, early] {
        fs::remove_file(ccd.join(id)).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", ccd.join(id)).unwrap();
    }
    edit_same_size(&ccd.join(&ids[n / 2]));
    let before = contents(&ccd);
    let err = render_fails(&b, &out);
    let text = err.to_string();
    assert!(text.contains(&format!("ccd/{early}")), "{text}");
    assert!(text.contains("symbolic link"), "{text}");
    assert_eq!(contents(&ccd), before, "nothing written");
    for id in [early, late] {
        fs::remove_file(ccd.join(id)).unwrap();
    }
    let r = render(&b, &out);
    let mut got = names(&r.written, &out);
    got.sort();
    let mut want = vec![
        format!("ccd/{early}"),
        format!("ccd/{late}"),
        format!("ccd/{}", ids[n / 2]),
    ];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(contents(&ccd), rendered);
}

/// A client row changed behind the broker's back so that it no longer
/// parses (a prefix that is no prefix; a port out of range in per-client
/// mode): the rendering reads only four columns of each active client
/// (issue 19) and still refuses such a row in one line that says what is
/// wrong, before anything is written, on either store.
fn a_corrupt_client_row_fails_the_rendering_in_one_line_and_writes_nothing(store: &TestStore) {
    for (mode, statement, says) in [
        (
            ServerMode::Shared,
            "UPDATE clients SET prefix = 'garbage' WHERE id = 'c1'",
            "a client row does not parse",
        ),
        (
            ServerMode::PerClient,
            // PostgreSQL's schema checks the range; an operator can drop
            // the check. SQLite's has none.
            if store.engine() == "postgresql" {
                "ALTER TABLE clients DROP CONSTRAINT clients_port_check;
                 UPDATE clients SET port = 70000 WHERE id = 'c1'"
            } else {
                "UPDATE clients SET port = 70000 WHERE id = 'c1'"
            },
            "port 70000 of client c1 is out of range",
        ),
    ] {
        let tmp = operator_tempdir();
        let mut s = Settings::new(
            "2001:db8:abcd::/48".parse().unwrap(),
            "vpn.example.net".parse().unwrap(),
        );
        s.mode = mode;
        let b = Broker::init(&tmp.path().join("broker"), &store.options(s)).unwrap();
        import(&b, "c", 0..4);
        let out = render(&b, &tmp.path().join("out")).dir;
        let before = contents(&out);
        sql(&b, statement);
        let err = render_fails(&b, &out);
        let text = err.to_string();
        assert!(text.contains(says), "{mode:?}: {text}");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert_eq!(contents(&out), before, "{mode:?}: nothing written");
    }
}
by_store!(a_corrupt_client_row_fails_the_rendering_in_one_line_and_writes_nothing);
