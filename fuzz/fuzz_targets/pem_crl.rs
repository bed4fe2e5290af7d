//! Fuzzes certificate revocation lists, in PEM and in DER (the CRL a broker
//! reads back, an imported CA's CRL). A CRL that is read is read again from
//! its own PEM and DER as the same value; what it says (number, dates,
//! revoked serials, issuer) is consistent; every error is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tunnelbroker_core::pki::Crl;
use tunnelbroker_fuzz::{checked, text};

fuzz_target!(|data: &[u8]| {
    let s = text(data);
    if let Some(crl) = checked("crl", Crl::from_pem(&s)) {
        check(&crl);
    }
    if let Some(crl) = checked("crl der", Crl::from_der(data)) {
        check(&crl);
    }
});

fn check(crl: &Crl) {
    assert_eq!(Crl::from_pem(crl.pem()).ok().as_ref(), Some(crl));
    assert_eq!(Crl::from_der(crl.der()).ok().as_ref(), Some(crl));
    let serials = crl.revoked_serials();
    assert_eq!(serials.len(), crl.revoked_count());
    for serial in &serials {
        assert!(crl.is_revoked(serial));
        assert_eq!(serial.to_string().parse().ok().as_ref(), Some(serial));
    }
    // The issuer is the CRL's own text (a front-end flattens it to print it).
    let _ = (
        crl.issuer(),
        crl.number(),
        crl.this_update(),
        crl.next_update(),
    );
    let _ = crl.authority_key_id();
}
