//! Fuzzes OpenVPN static keys (tls-crypt / ta.key). A key that is read
//! prints (`to_text`) to text that is read as the same key; every error is
//! one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tunnelbroker_core::pki::TlsCryptKey;
use tunnelbroker_fuzz::{checked, text};

fuzz_target!(|data: &[u8]| {
    let s = text(data);
    if let Some(key) = checked("tls-crypt key", TlsCryptKey::parse(&s)) {
        let again = TlsCryptKey::parse(key.to_text()).expect("a printed key is read again");
        assert!(again == key, "the printed key differs");
        assert_eq!(again.to_text(), key.to_text());
    }
});
