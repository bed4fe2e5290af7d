//! Fuzzes the PostgreSQL database URL (`init --database`, `[database] url`).
//! A URL that is accepted prints as it was recorded, reads back (text and
//! serde) as the same value, holds no password, and its warning is one
//! line; every error is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tunnelbroker_core::store::DatabaseUrl;
use tunnelbroker_fuzz::{assert_one_line, checked, text};

fuzz_target!(|data: &[u8]| {
    let s = text(data);
    if let Some(url) = checked("database url", s.parse::<DatabaseUrl>()) {
        let printed = url.to_string();
        assert_eq!(printed, url.as_str());
        assert_one_line("database url", &printed);
        assert_eq!(printed.parse::<DatabaseUrl>().ok().as_ref(), Some(&url));
        let json = serde_json::to_string(&url).unwrap();
        assert_eq!(
            serde_json::from_str::<DatabaseUrl>(&json).ok().as_ref(),
            Some(&url)
        );
        let _ = (url.database(), url.port());
        if let Some(w) = url.warning() {
            assert_one_line("database url warning", w);
        }
    } else {
        let json = serde_json::to_string(s.as_ref()).unwrap();
        if let Err(e) = serde_json::from_str::<DatabaseUrl>(&json) {
            assert_one_line("database url (serde)", e);
        }
    }
});
