//! Fuzzes the rows of a CSV import (`tunnelbroker client import`), checked
//! exactly as `Broker::import_csv` checks them before it subscribes anyone.
//! Every row error is one line, with a line number inside the text; every
//! accepted row names a valid client whose fields are non-empty and one line
//! (a name or e-mail with a newline would split a report).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tunnelbroker_core::ClientId;
use tunnelbroker_core::broker::parse_import_csv;
use tunnelbroker_fuzz::{assert_one_line, text};

fuzz_target!(|data: &[u8]| {
    let s = text(data);
    let (rows, errors) = parse_import_csv(&s);
    let lines = s.split('\n').count() as u64;
    for e in &errors {
        assert_one_line("csv row error", &e.error);
        assert!(e.line <= lines, "row error on line {} of {lines}", e.line);
    }
    let mut last = 0;
    for (line, req) in &rows {
        assert!((1..=lines).contains(line), "row on line {line} of {lines}");
        // Not strictly: a lone '\r' ends a record without starting a line.
        assert!(*line >= last, "rows out of order: {line} after {last}");
        last = *line;
        assert_eq!(ClientId::new(req.id.as_str()).ok().as_ref(), Some(&req.id));
        for field in [&req.email, &req.name].into_iter().flatten() {
            assert!(!field.is_empty());
            assert!(!field.contains('\n'), "a field holds a newline: {field:?}");
        }
        if let Some(prefix) = req.prefix {
            assert_eq!(prefix, prefix.trunc(), "host bits in {prefix}");
        }
    }
});
