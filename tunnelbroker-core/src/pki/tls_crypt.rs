//! OpenVPN static keys for `tls-crypt`.
//!
//! The text form, as `openvpn --genkey secret` writes it: optional `#`
//! comment lines, `-----BEGIN OpenVPN Static key V1-----`, 16 lines of 32
//! hex digits (256 bytes, 2048 bits), `-----END OpenVPN Static key V1-----`.

use std::fmt;
use std::path::Path;

use super::random_bytes;
use crate::error::{Error, Result, shown};

const BEGIN: &str = "-----BEGIN OpenVPN Static key V1-----";
const END: &str = "-----END OpenVPN Static key V1-----";
/// Bytes in a key.
const KEY_BYTES: usize = 256;
/// Bytes per line of hex.
const LINE_BYTES: usize = 16;
/// Largest text `parse` looks at.
const MAX_TEXT: usize = 16 * 1024;

/// An OpenVPN static key for `tls-crypt` (2048 random bits). `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsCryptKey {
    text: String,
}

impl fmt::Debug for TlsCryptKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsCryptKey([redacted])")
    }
}

impl TlsCryptKey {
    /// 2048 bits from the OS RNG.
    ///
    /// ```
    /// use tunnelbroker_core::pki::TlsCryptKey;
    /// let key = TlsCryptKey::generate()?;
    /// assert!(key.to_text().contains("-----BEGIN OpenVPN Static key V1-----"));
    /// assert_eq!(TlsCryptKey::parse(key.to_text())?, key);
    /// assert_eq!(format!("{key:?}"), "TlsCryptKey([redacted])");
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; KEY_BYTES];
        random_bytes(&mut bytes)?;
        Ok(Self::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8; KEY_BYTES]) -> Self {
        let mut text = String::with_capacity(700);
        text.push_str("#\n# 2048 bit OpenVPN static key\n#\n");
        text.push_str(BEGIN);
        text.push('\n');
        for line in bytes.chunks(LINE_BYTES) {
            for b in line {
                text.push_str(&format!("{b:02x}"));
            }
            text.push('\n');
        }
        text.push_str(END);
        text.push('\n');
        TlsCryptKey { text }
    }

    /// Parses the `-----BEGIN OpenVPN Static key V1-----` form.
    ///
    /// Strict: only `#` comments and blank lines may come before the BEGIN
    /// line and blank lines after the END line; between them exactly 16
    /// lines of 32 hex digits. The key is kept in a normalised form.
    ///
    /// ```
    /// use tunnelbroker_core::pki::TlsCryptKey;
    /// assert!(TlsCryptKey::parse("hello").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidTlsCryptKey { reason };
        if text.len() > MAX_TEXT {
            return Err(bad(format!("the text is longer than {MAX_TEXT} bytes")));
        }
        let mut lines = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .enumerate();
        // Preamble: comments and blank lines, then BEGIN.
        loop {
            match lines.next() {
                None => return Err(bad(format!("no {BEGIN} line"))),
                Some((_, l)) if l.trim() == BEGIN => break,
                Some((_, l)) if l.trim().is_empty() || l.starts_with('#') => {}
                Some((n, l)) => {
                    return Err(bad(format!(
                        "line {}: unexpected text {} before the {BEGIN} line",
                        n + 1,
                        shown(l)
                    )));
                }
            }
        }
        let mut bytes = [0u8; KEY_BYTES];
        for row in 0..KEY_BYTES / LINE_BYTES {
            let (n, l) = match lines.next() {
                Some((n, l)) if l.trim() != END => (n, l.trim()),
                _ => {
                    return Err(bad(format!(
                        "the key has {row} lines of hex, expected {}",
                        KEY_BYTES / LINE_BYTES
                    )));
                }
            };
            if l.len() != 2 * LINE_BYTES || !l.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!(
                    "line {}: expected 32 hex digits, found {}",
                    n + 1,
                    shown(l)
                )));
            }
            for (i, pair) in l.as_bytes().chunks(2).enumerate() {
                let hex = std::str::from_utf8(pair).map_err(|_| bad("not ASCII".into()))?;
                bytes[row * LINE_BYTES + i] =
                    u8::from_str_radix(hex, 16).map_err(|_| bad("not hex".into()))?;
            }
        }
        match lines.next() {
            Some((_, l)) if l.trim() == END => {}
            Some((n, l)) => {
                return Err(bad(format!(
                    "line {}: expected {END} after 16 lines of hex, found {}",
                    n + 1,
                    shown(l)
                )));
            }
            None => return Err(bad(format!("no {END} line"))),
        }
        for (n, l) in lines {
            if !l.trim().is_empty() {
                return Err(bad(format!(
                    "line {}: unexpected text {} after the {END} line",
                    n + 1,
                    shown(l)
                )));
            }
        }
        Ok(Self::from_bytes(&bytes))
    }

    /// The text form (secret).
    pub fn to_text(&self) -> &str {
        &self.text
    }

    /// Writes the key atomically with mode 0600.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::fsutil::write_secret(path, self.text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(key: &TlsCryptKey) -> Vec<&str> {
        key.to_text()
            .lines()
            .skip_while(|l| *l != BEGIN)
            .skip(1)
            .take(16)
            .collect()
    }

    #[test]
    fn generated_keys_have_the_openvpn_shape_and_differ() {
        let a = TlsCryptKey::generate().unwrap();
        let b = TlsCryptKey::generate().unwrap();
        assert_ne!(a, b);
        let lines = body(&a);
        assert_eq!(lines.len(), 16);
        assert!(lines.iter().all(|l| l.len() == 32));
        assert!(a.to_text().ends_with(&format!("{END}\n")));
    }

    #[test]
    fn parse_accepts_openvpn_output_with_crlf_and_upper_case() {
        let a = TlsCryptKey::generate().unwrap();
        let crlf = a
            .to_text()
            .to_uppercase()
            .replace("OPENVPN STATIC KEY V1", "OpenVPN Static key V1")
            .replace('\n', "\r\n");
        let upper_hex = crlf.replace(
            "# 2048 BIT OPENVPN STATIC KEY",
            "# 2048 bit OpenVPN static key",
        );
        assert_eq!(TlsCryptKey::parse(&upper_hex).unwrap(), a);
    }

    #[test]
    fn parse_refuses_hostile_input() {
        let good = TlsCryptKey::generate().unwrap();
        let text = good.to_text();
        let lines: Vec<&str> = text.lines().collect();
        let without = |i: usize| {
            let mut l = lines.clone();
            l.remove(i);
            l.join("\n")
        };
        let replaced = |i: usize, with: &str| {
            let mut l = lines.clone();
            l[i] = with;
            l.join("\n")
        };
        let huge = "#".repeat(MAX_TEXT + 1);
        let cases = vec![
            String::new(),
            "garbage".into(),
            huge,
            without(3),                                       // no BEGIN
            without(lines.len() - 1),                         // no END
            without(5),                                       // 15 lines
            replaced(5, "zz00000000000000000000000000000"),   // not hex
            replaced(5, "0000000000000000000000000000000"),   // 31 digits
            replaced(5, "000000000000000000000000000000000"), // 33 digits
            replaced(5, "$(rm -rf /);00000000000000000000"),
            replaced(5, "ééééééééééééééééééééééééééééééé"),
            replaced(0, "../../etc/passwd"),
            format!("{text}trailing garbage\n"),
            text.replace(BEGIN, "-----BEGIN OpenVPN Static key V2-----"),
            format!("{text}{text}"),
        ];
        for input in cases {
            let err = TlsCryptKey::parse(&input).unwrap_err();
            assert!(matches!(err, Error::InvalidTlsCryptKey { .. }), "{err}");
            assert!(!err.to_string().contains('\n'), "{err}");
        }
    }
}
