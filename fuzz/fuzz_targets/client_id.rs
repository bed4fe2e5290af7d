//! Fuzzes the short words an operator types: client IDs, and beside them the
//! other one-word values of the CLI and the settings (client kind, OS and
//! state, server mode, key type, revocation reason, certificate serial) and
//! the OpenVPN values (endpoint, common name, interface name, config path,
//! inline material). Whatever parses prints back to text that parses to the
//! same value; every error is one line; nothing panics.
#![no_main]

use std::fmt::Display;
use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use tunnelbroker_core::broker::{ClientOs, ClientState, ServerMode};
use tunnelbroker_core::openvpn::{CommonName, ConfigPath, Endpoint, InlineText, InterfaceName};
use tunnelbroker_core::pki::{KeyType, RevocationReason, Serial};
use tunnelbroker_core::{ClientId, ClientKind, Error};
use tunnelbroker_fuzz::{assert_one_line, checked, text};

fuzz_target!(|data: &[u8]| {
    let s = text(data);
    let s = s.as_ref();

    if let Some(id) = checked("client id", ClientId::new(s)) {
        assert_eq!(id.as_str(), s);
        assert_eq!(id.to_string(), s);
        assert!(id.as_str().len() <= ClientId::MAX_LEN);
        assert_eq!(s.parse::<ClientId>().ok().as_ref(), Some(&id));
        if let Some(why) = id.windows_problem() {
            assert_one_line("windows problem", why);
        }
        // serde reads it as the same string rule.
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<ClientId>(&json).ok(), Some(id));
    } else {
        assert!(serde_json::from_str::<ClientId>(&serde_json::to_string(s).unwrap()).is_err());
    }

    round_trip::<ClientKind>("client kind", s);
    round_trip::<ClientOs>("client os", s);
    round_trip::<ClientState>("client state", s);
    round_trip::<ServerMode>("server mode", s);
    round_trip::<KeyType>("key type", s);
    round_trip::<RevocationReason>("revocation reason", s);
    round_trip::<Serial>("serial", s);
    round_trip::<Endpoint>("endpoint", s);

    if let Some(cn) = checked("common name", CommonName::new(s)) {
        assert_eq!(CommonName::new(cn.as_str()).ok(), Some(cn));
    }
    if let Some(name) = checked("interface name", InterfaceName::new(s)) {
        assert_eq!(InterfaceName::new(name.as_str()).ok(), Some(name));
    }
    if let Some(path) = checked("config path", ConfigPath::new(s)) {
        assert_eq!(ConfigPath::new(path.as_str()).ok(), Some(path));
    }
    if let Some(inline) = checked("inline text", InlineText::new("certificate", s)) {
        assert!(inline.as_str().ends_with('\n'));
        assert_eq!(
            InlineText::new("certificate", inline.as_str()).ok(),
            Some(inline)
        );
    }
});

/// Parse, print, parse again: the same value; an error is one line.
fn round_trip<T>(what: &str, s: &str)
where
    T: FromStr<Err = Error> + Display + PartialEq + std::fmt::Debug,
{
    if let Some(v) = checked(what, s.parse::<T>()) {
        let printed = v.to_string();
        assert_one_line(what, &printed);
        let again = printed.parse::<T>();
        assert!(
            matches!(&again, Ok(a) if *a == v),
            "{what}: {s:?} parsed to {v:?}, printed {printed:?}, read back {again:?}"
        );
    }
}
