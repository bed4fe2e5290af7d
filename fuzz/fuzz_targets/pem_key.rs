//! Fuzzes private keys in PEM (the CA key of `init --ca-key`, a client's key
//! given back). A key that is read prints (`to_pem`) to text that is read as
//! the same key; its public half can be printed; every error is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tunnelbroker_core::pki::PrivateKey;
use tunnelbroker_fuzz::{checked, text};

fuzz_target!(|data: &[u8]| {
    let s = text(data);
    if let Some(key) = checked("private key", PrivateKey::from_pem(&s)) {
        let again = PrivateKey::from_pem(key.to_pem()).expect("a printed key is read again");
        assert_eq!(again.key_type(), key.key_type());
        assert_eq!(again.to_pem(), key.to_pem());
        let public = key.public_key_pem().expect("the public half of a read key");
        assert_eq!(again.public_key_pem().ok(), Some(public));
    }
});
