//! Fuzzes OpenVPN static keys (tls-crypt / ta.key) and tls-crypt-v2 keys.
//! A key that is read prints (`to_text`, `to_pem`) to text that is read as
//! the same key; a v2 client key read with a fixed server key unwraps only
//! if its tag holds, and then to metadata that a new key wraps and unwraps
//! again; a binding read from metadata prints back to it; every error is
//! one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tunnelbroker_core::pki::{
    ClientBinding, TlsCryptKey, TlsCryptV2ClientKey, TlsCryptV2ServerKey,
};
use tunnelbroker_fuzz::{checked, text};

/// A fixed server key, so that the fuzzer can find keys wrapped with it
/// (the seed corpus holds some).
const SERVER: &str = "-----BEGIN OpenVPN tls-crypt-v2 server key-----
AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v
MDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5f
YGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn8=
-----END OpenVPN tls-crypt-v2 server key-----
";

fuzz_target!(|data: &[u8]| {
    let s = text(data);
    if let Some(key) = checked("tls-crypt key", TlsCryptKey::parse(&s)) {
        let again = TlsCryptKey::parse(key.to_text()).expect("a printed key is read again");
        assert!(again == key, "the printed key differs");
        assert_eq!(again.to_text(), key.to_text());
    }
    if let Some(key) = checked("tls-crypt-v2 server key", TlsCryptV2ServerKey::parse(&s)) {
        let again = TlsCryptV2ServerKey::parse(&key.to_pem()).expect("a printed key is read");
        assert!(again == key, "the printed server key differs");
    }
    if let Some(key) = checked("tls-crypt-v2 client key", TlsCryptV2ClientKey::parse(&s)) {
        let again = TlsCryptV2ClientKey::parse(&key.to_pem()).expect("a printed key is read");
        assert!(again == key, "the printed client key differs");
        let server = TlsCryptV2ServerKey::parse(SERVER).expect("the fixed server key");
        // (a wrapped key may carry no metadata at all; a new key needs its
        // type byte)
        let unwrapped = checked("unwrap", key.unwrap_with(&server));
        if let Some(meta) = unwrapped.filter(|m| !m.is_empty()) {
            let fresh = server
                .client_key(&meta)
                .expect("unwrapped metadata fits a new key");
            assert_eq!(fresh.unwrap_with(&server).expect("a new key unwraps"), meta);
        }
    }
    if let Some(b) = checked("binding", ClientBinding::from_metadata(data)) {
        assert_eq!(b.metadata(), data, "a binding prints back to its metadata");
    }
});
