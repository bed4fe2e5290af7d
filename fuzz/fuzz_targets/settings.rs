//! Fuzzes the settings file, tunnelbroker.toml. Whatever is accepted prints
//! (`to_toml`) to text that is accepted again as the same settings, and that
//! printing is stable; every error is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tunnelbroker_core::Settings;
use tunnelbroker_fuzz::{checked, text};

fuzz_target!(|data: &[u8]| {
    let s = text(data);
    if let Some(settings) = checked("settings", Settings::from_toml(&s)) {
        let printed = settings.to_toml();
        let again = Settings::from_toml(&printed)
            .unwrap_or_else(|e| panic!("printed settings do not parse: {e}\n{printed}"));
        assert_eq!(again, settings, "printed:\n{printed}");
        assert_eq!(again.to_toml(), printed);
    }
});
