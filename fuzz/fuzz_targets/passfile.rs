//! Fuzzes the libpq password file (`~/.pgpass`, `PGPASSFILE`) lookup: the
//! target (host, port, database, user) comes from the first bytes, the file
//! from the rest.
//!
//! Properties: the first matching line wins, so appending a line never
//! changes a found password; a line appended with the target's fields
//! escaped (`\:`, `\\`, `\#`) is found when nothing earlier matched, with its
//! password unescaped; a line of `*` fields matches any target.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tunnelbroker_core::store::passfile_lookup;

/// Reads four short fields, each led by its length byte.
fn target(data: &[u8]) -> Option<([String; 3], u16, bool, &[u8])> {
    let mut rest = data;
    let mut fields: Vec<String> = Vec::new();
    for _ in 0..3 {
        let (&n, r) = rest.split_first()?;
        let n = usize::from(n % 32).min(r.len());
        fields.push(String::from_utf8_lossy(&r[..n]).into_owned());
        rest = &r[n..];
    }
    let (&[a, b, flags], rest) = rest.split_first_chunk::<3>()?;
    Some((
        fields.try_into().ok()?,
        u16::from_be_bytes([a, b]),
        flags & 1 == 1,
        rest,
    ))
}

fn escape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in s.as_bytes() {
        if matches!(b, b':' | b'\\' | b'#') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some(([host, database, user], port, socket, file)) = target(data) else {
        return;
    };
    // A file line never holds a newline; a field with one cannot be written.
    let clean = |s: &str| !s.contains(['\n', '\r']);
    let look = |text: &[u8]| passfile_lookup(text, &host, socket, port, &database, &user);
    let found = look(file);

    let mut longer = file.to_vec();
    if !longer.is_empty() && !longer.ends_with(b"\n") {
        longer.push(b'\n');
    }
    if clean(&host) && clean(&database) && clean(&user) {
        let mut line = Vec::new();
        for field in [host.as_str(), &port.to_string(), &database, &user] {
            line.extend(escape(field));
            line.push(b':');
        }
        line.extend_from_slice(b"pa\\:ss\\\\word");
        let mut with_line = longer.clone();
        with_line.extend_from_slice(&line);
        let expected = found.clone().unwrap_or_else(|| b"pa:ss\\word".to_vec());
        assert_eq!(look(&with_line), Some(expected), "an appended exact line");
    }
    let mut with_any = longer;
    with_any.extend_from_slice(b"*:*:*:*:any");
    let expected = found.unwrap_or_else(|| b"any".to_vec());
    assert_eq!(look(&with_any), Some(expected), "an appended line of *");
});
