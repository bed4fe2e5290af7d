//! Fuzzes what a CA is asked to take in: certificate signing requests
//! (`client sign-csr`) signed by a CA made once, and an imported CA's
//! certificate and key (`init --ca-cert --ca-key`).
//!
//! The first byte chooses: even, the rest is a CSR; odd, the rest is a
//! certificate PEM and a key PEM separated by the byte 0xff. A signed
//! certificate verifies under the CA and names the client; an imported CA
//! prints its chain back to certificates; every error is one line.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tunnelbroker_core::ClientId;
use tunnelbroker_core::pki::{Ca, CaParams, Certificate};
use tunnelbroker_fuzz::{checked, split_ff, text};

fn ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| Ca::generate(&CaParams::default()).expect("a CA"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let id = ClientId::new("fuzz").unwrap();
        if let Some(cert) = checked("csr", ca().sign_client_csr(&id, &text(rest), 30)) {
            ca().verify(&cert)
                .expect("a signed CSR verifies under its CA");
            assert_eq!(Certificate::from_pem(cert.pem()).ok(), Some(cert));
        }
    } else {
        let (cert, key) = split_ff(rest);
        if let Some(imported) = checked("ca import", Ca::from_pem(&text(cert), &text(key))) {
            let chain = Certificate::all_from_pem(&imported.chain_pem()).expect("chain reads");
            assert_eq!(chain.first(), Some(imported.certificate()));
            let key = imported.key().expect("an imported CA holds its key");
            assert!(imported.certificate().matches_key(key));
            checked("subject", imported.subject().validate());
        }
    }
});
