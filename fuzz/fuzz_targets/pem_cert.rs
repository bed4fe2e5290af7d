//! Fuzzes certificates: in PEM (one, or a chain) and in DER. A certificate
//! that is read is read again from its own PEM and DER as the same value;
//! its facts (subject, dates, serial) print as one line; checking it against
//! itself as issuer and for validity does not panic; every error is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tunnelbroker_core::pki::Certificate;
use tunnelbroker_fuzz::{assert_one_line, checked, text};

fuzz_target!(|data: &[u8]| {
    let s = text(data);
    if let Some(cert) = checked("certificate", Certificate::from_pem(&s)) {
        check(&cert);
    }
    if let Some(chain) = checked("certificates", Certificate::all_from_pem(&s)) {
        assert!(!chain.is_empty());
        for cert in &chain {
            check(cert);
        }
        for pair in chain.windows(2) {
            checked("issued by", pair[0].check_issued_by(&pair[1]));
        }
    }
    if let Some(cert) = checked("certificate der", Certificate::from_der(data)) {
        check(&cert);
    }
});

fn check(cert: &Certificate) {
    assert_eq!(Certificate::from_pem(cert.pem()).ok().as_ref(), Some(cert));
    assert_eq!(Certificate::from_der(cert.der()).ok().as_ref(), Some(cert));
    let serial = cert.serial().to_string();
    assert_one_line("serial", &serial);
    assert_eq!(serial.parse().ok().as_ref(), Some(cert.serial()));
    let info = cert.info();
    assert_one_line("info", format!("{info:?}"));
    checked("self-issued", cert.check_issued_by(cert));
    let _ = info.valid_at(time::OffsetDateTime::UNIX_EPOCH);
}
