//! Fuzzes OpenVPN client configurations as `tunnelbroker doctor` reads them:
//! the directives, the inline blocks, the facts line
//! (`# tunnelbroker-doctor: ...`) and the facts derived without it. Facts
//! that are read print to a line that is read as the same facts; every
//! error is one line; nothing panics. The file lies in a directory that does
//! not exist, so no material is read from disk.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tunnelbroker_core::doctor::{BundleFacts, ClientConfigFile, Material};
use tunnelbroker_fuzz::{assert_one_line, checked, text};

fuzz_target!(|data: &[u8]| {
    let s = text(data);
    let path = Path::new("/nonexistent/tunnelbroker-fuzz/client.conf");
    if let Some(cfg) = checked("client config", ClientConfigFile::parse(path, &s)) {
        for d in cfg.directives() {
            assert!(d.line >= 1);
            assert!(cfg.directive(&d.name).is_some());
        }
        let _ = cfg.device();
        let _ = cfg.setenv("UV_LAN");
        for m in [
            Material::Ca,
            Material::Cert,
            Material::Key,
            Material::TlsCrypt,
        ] {
            if let Some((_, Err(why))) = cfg.material(m) {
                assert_one_line("material", why);
            }
        }
        if let Some((line, facts)) = cfg.facts() {
            assert!(line >= 1);
            if let Some(facts) = checked("facts line", facts) {
                round_trip(&facts);
            }
        }
        if let Some(facts) = cfg.derived_facts() {
            round_trip(&facts);
        }
    }
    // The facts line on its own, as any comment's text.
    if let Some(facts) = checked("facts", s.parse::<BundleFacts>()) {
        round_trip(&facts);
    }
});

fn round_trip(facts: &BundleFacts) {
    let line = facts.to_string();
    assert_one_line("facts line", &line);
    assert_eq!(
        line.parse::<BundleFacts>().ok().as_ref(),
        Some(facts),
        "{line}"
    );
}
