//! What every host of a broker must agree on, kept in the client database as
//! shared values (see [`Transaction::shared`]): the shared settings and the
//! CA certificate chain.
//!
//! `init` writes them; [`Broker::open`](super::Broker::open) reads them, and
//! they win over `tunnelbroker.toml` and `ca.crt`, which are caches of them
//! on each host. Values are text: plain for words, numbers and the pool,
//! TOML inline tables for the subject and the validity periods, PEM for the
//! CA chain.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Settings;
use crate::error::{Error, Result};
use crate::store::Transaction;

/// The shared value that holds the CA certificate chain (PEM).
pub(crate) const CA_CHAIN: &str = "ca.chain";
/// The shared value that holds the current CRL (PEM), so that a server
/// host's agent, which cannot sign one, gets each new CRL from the database.
pub(crate) const CRL: &str = "crl";

const POOL: &str = "settings.pool";
const ENDPOINT: &str = "settings.endpoint";
const MODE: &str = "settings.mode";
const PORT: &str = "settings.port";
const KEY_TYPE: &str = "settings.key_type";
const LAN_INTERFACE: &str = "settings.lan_interface";
const SUBJECT: &str = "settings.subject";
const VALIDITY: &str = "settings.validity";
/// Absent in databases of brokers made before tls-crypt-v2: `v1` then.
const TLS_CRYPT: &str = "settings.tls_crypt";
const SESSIONS: &str = "settings.sessions";

/// The shared values of a broker, read from its client database.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedValues(BTreeMap<String, String>);

impl SharedValues {
    /// Everything shared in the database `tx` reads.
    pub(crate) fn read(tx: &mut dyn Transaction) -> Result<Self> {
        Ok(SharedValues(tx.shared_values()?.into_iter().collect()))
    }

    /// Whether the database holds shared settings at all (a broker made
    /// before they were kept there holds none).
    pub(crate) fn has_settings(&self) -> bool {
        self.0.contains_key(POOL)
    }

    /// The CA certificate chain, PEM.
    pub(crate) fn ca_chain(&self) -> Result<&str> {
        self.get(CA_CHAIN)
    }

    fn get(&self, key: &str) -> Result<&str> {
        self.0.get(key).map(String::as_str).ok_or_else(|| Error::Database {
            reason: format!(
                "the shared value {key} is missing (the database holds other shared settings): restore the database"
            ),
        })
    }

    /// `local` (this host's settings file, for its own sections `[server]`
    /// and `[database]`) with every shared setting taken from the database.
    pub(crate) fn settings(&self, local: &Settings) -> Result<Settings> {
        let corrupt = |key: &str, e: Error| Error::Database {
            reason: format!("the shared value {key}: {e}"),
        };
        let word = |key: &'static str| -> Result<&str> { self.get(key) };
        let mut s = local.clone();
        s.pool = word(POOL)?.parse().map_err(|e| corrupt(POOL, e))?;
        s.endpoint = word(ENDPOINT)?.parse().map_err(|e| corrupt(ENDPOINT, e))?;
        s.mode = word(MODE)?.parse().map_err(|e| corrupt(MODE, e))?;
        s.port = word(PORT)?.parse().map_err(|_| Error::Database {
            reason: format!("the shared value {PORT} is not a port number"),
        })?;
        s.key_type = word(KEY_TYPE)?.parse().map_err(|e| corrupt(KEY_TYPE, e))?;
        s.lan_interface = word(LAN_INTERFACE)?.to_owned();
        s.subject = from_inline(SUBJECT, word(SUBJECT)?)?;
        s.validity = from_inline(VALIDITY, word(VALIDITY)?)?;
        s.tls_crypt = match self.0.get(TLS_CRYPT) {
            Some(v) => v.parse().map_err(|e| corrupt(TLS_CRYPT, e))?,
            None => super::TlsCryptVersion::V1,
        };
        // A database of a broker from before sessions holds none: the
        // file's value (its default when the file has none either).
        if let Some(text) = self.0.get(SESSIONS) {
            s.sessions = from_inline(SESSIONS, text)?;
        }
        s.validate().map_err(|e| corrupt("settings", e))?;
        Ok(s)
    }
}

/// The shared settings of `s`, by key.
pub(crate) fn settings_values(s: &Settings) -> Vec<(&'static str, String)> {
    vec![
        (POOL, s.pool.to_string()),
        (ENDPOINT, s.endpoint.to_string()),
        (MODE, s.mode.to_string()),
        (PORT, s.port.to_string()),
        (KEY_TYPE, s.key_type.to_string()),
        (LAN_INTERFACE, s.lan_interface.clone()),
        (SUBJECT, to_inline(&s.subject)),
        (VALIDITY, to_inline(&s.validity)),
        (TLS_CRYPT, s.tls_crypt.to_string()),
        (SESSIONS, to_inline(&s.sessions)),
    ]
}

/// Sets the shared setting `tls_crypt`.
pub(crate) fn set_tls_crypt(
    tx: &mut dyn Transaction,
    version: super::TlsCryptVersion,
) -> Result<()> {
    tx.set_shared(TLS_CRYPT, &version.to_string())
}

/// Writes the shared settings of `settings` and the CA chain.
pub(crate) fn write(tx: &mut dyn Transaction, settings: &Settings, ca_chain: &str) -> Result<()> {
    for (key, value) in settings_values(settings) {
        tx.set_shared(key, &value)?;
    }
    tx.set_shared(CA_CHAIN, ca_chain)
}

/// The names of the shared settings in which `a` and `b` differ.
pub(crate) fn differences(a: &Settings, b: &Settings) -> Vec<&'static str> {
    settings_values(a)
        .into_iter()
        .zip(settings_values(b))
        .filter(|((_, x), (_, y))| x != y)
        .map(|((key, _), _)| key.trim_start_matches("settings."))
        .collect()
}

#[derive(Serialize, Deserialize)]
struct Inline<T> {
    v: T,
}

/// `value` as a TOML inline table.
fn to_inline<T: Serialize>(value: &T) -> String {
    // A table of strings and integers always serialises.
    toml::Value::try_from(value)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

fn from_inline<T: for<'de> Deserialize<'de>>(key: &str, text: &str) -> Result<T> {
    toml::from_str::<Inline<T>>(&format!("v = {text}"))
        .map(|i| i.v)
        .map_err(|e| Error::Database {
            reason: format!(
                "the shared value {key}: {}",
                crate::error::one_line(e.message())
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        let mut s = Settings::new(
            "2001:db8:0:f100::/56".parse().unwrap(),
            "vpn.example.net".parse().unwrap(),
        );
        s.subject.country = Some("NL".into());
        s.subject.common_name = "a \"quoted\" = CA".into();
        s.validity.client_days = 12;
        s
    }

    #[test]
    fn the_shared_settings_round_trip_and_local_sections_stay() {
        let s = settings();
        let values = SharedValues(
            settings_values(&s)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        );
        assert!(values.has_settings());
        let mut local = Settings::new(
            "2001:db8:1::/48".parse().unwrap(),
            "old.example.net".parse().unwrap(),
        );
        local.server.dir = Some("/etc/openvpn/server".into());
        let merged = values.settings(&local).unwrap();
        assert_eq!(merged.server, local.server);
        assert_eq!(merged.pool, s.pool);
        assert_eq!(merged.subject, s.subject);
        assert_eq!(merged.validity, s.validity);
        assert_eq!(differences(&merged, &s), Vec::<&str>::new());
        assert_eq!(
            differences(&local, &s),
            ["pool", "endpoint", "subject", "validity"]
        );
    }

    #[test]
    fn a_missing_or_corrupt_value_is_a_one_line_database_error() {
        let s = settings();
        let all: BTreeMap<String, String> = settings_values(&s)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        for (key, bad) in [
            (PORT, Some("0")),
            (PORT, Some("x")),
            (POOL, Some("2001:db8::1/56")),
            (SUBJECT, Some("{ common_name = 1 }")),
            (VALIDITY, Some("= =\n[x]")),
            (MODE, None),
        ] {
            let mut v = all.clone();
            match bad {
                Some(b) => v.insert(key.into(), b.into()),
                None => v.remove(key),
            };
            let e = SharedValues(v).settings(&s).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Database, "{key}: {e}");
            assert_eq!(e.to_string().lines().count(), 1, "{e}");
            assert!(e.to_string().contains(key) || key == PORT, "{e}");
        }
    }
}
