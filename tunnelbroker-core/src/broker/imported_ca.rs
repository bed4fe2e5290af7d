//! The rule for a CA to import: its certificate and its key come together.

use std::path::Path;

use super::ImportedCa;
use crate::error::{Error, Result};

const CERT: &str = "CA certificate";
const KEY: &str = "CA key";

impl ImportedCa {
    /// The longest CA certificate (chain) or key file [`read`](Self::read)
    /// takes, in bytes.
    pub const MAX_PEM: u64 = 1 << 20;

    /// A CA to import from its certificate (chain) and key PEM, which come
    /// together: both give a CA, neither gives `None` (make one), one
    /// without the other is an [`Error::CaImportIncomplete`]. The PEM is
    /// checked by [`Broker::init`](crate::Broker::init).
    ///
    /// ```
    /// use tunnelbroker_core::broker::ImportedCa;
    /// use tunnelbroker_core::ErrorKind;
    /// assert!(ImportedCa::from_pem(None, None)?.is_none());
    /// let ca = ImportedCa::from_pem(Some("CERT".into()), Some("KEY".into()))?.unwrap();
    /// assert_eq!(ca.cert_pem, "CERT");
    /// let e = ImportedCa::from_pem(Some("CERT".into()), None).unwrap_err();
    /// assert_eq!(e.kind(), ErrorKind::InvalidInput);
    /// assert!(e.to_string().contains("go together"), "{e}");
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn from_pem(cert_pem: Option<String>, key_pem: Option<String>) -> Result<Option<Self>> {
        match (cert_pem, key_pem) {
            (Some(cert_pem), Some(key_pem)) => Ok(Some(ImportedCa { cert_pem, key_pem })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(incomplete(CERT, KEY)),
            (None, Some(_)) => Err(incomplete(KEY, CERT)),
        }
    }

    /// Reads a CA to import from its certificate (chain) and key files
    /// (each a regular file or pipe of at most [`MAX_PEM`](Self::MAX_PEM)
    /// bytes of text), with the rule of [`from_pem`](Self::from_pem); one
    /// path without the other is refused before anything is read.
    ///
    /// ```
    /// use std::path::Path;
    /// use tunnelbroker_core::broker::ImportedCa;
    /// assert!(ImportedCa::read(None, None)?.is_none());
    /// assert!(ImportedCa::read(None, Some(Path::new("/nonexistent"))).is_err());
    /// assert!(ImportedCa::read(Some(Path::new("/dev/zero")), Some(Path::new("/dev/zero"))).is_err());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn read(cert: Option<&Path>, key: Option<&Path>) -> Result<Option<Self>> {
        let read = |p: &Path| crate::fsutil::read_text(p, Self::MAX_PEM);
        match (cert, key) {
            (Some(cert), Some(key)) => Self::from_pem(Some(read(cert)?), Some(read(key)?)),
            (None, None) => Ok(None),
            (Some(_), None) => Err(incomplete(CERT, KEY)),
            (None, Some(_)) => Err(incomplete(KEY, CERT)),
        }
    }
}

fn incomplete(given: &'static str, missing: &'static str) -> Error {
    Error::CaImportIncomplete { given, missing }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn one_without_the_other_is_refused_in_one_line_naming_what_is_missing() {
        let e = ImportedCa::from_pem(None, Some("KEY".into())).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the CA certificate and key go together: the CA key was given without the CA certificate; give both to import a CA, or neither to make one"
        );
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("ca.crt");
        std::fs::write(&cert, "CERT").unwrap();
        let e = ImportedCa::read(Some(&cert), None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(
            e.to_string()
                .contains("the CA certificate was given without the CA key"),
            "{e}"
        );
        let key = dir.path().join("ca.key");
        std::fs::write(&key, "KEY").unwrap();
        let ca = ImportedCa::read(Some(&cert), Some(&key)).unwrap().unwrap();
        assert_eq!((ca.cert_pem.as_str(), ca.key_pem.as_str()), ("CERT", "KEY"));
        let e = ImportedCa::read(Some(&cert), Some(&dir.path().join("missing"))).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
