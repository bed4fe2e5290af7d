//! The subject (distinguished-name fields) of the CA, checked before use.

use rcgen::{DistinguishedName, DnType, DnValue};
use serde::{Deserialize, Serialize};

use super::pki_err;
use crate::error::{Error, Result, shown};

/// Distinguished-name fields of the CA (and defaults for other certificates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// Two-letter country code, if any.
    pub country: Option<String>,
    /// Organisation.
    pub organization: Option<String>,
    /// Organisational unit.
    pub organizational_unit: Option<String>,
    /// Common name.
    pub common_name: String,
}

impl Default for Subject {
    fn default() -> Self {
        Subject {
            country: None,
            organization: Some("tunnelbroker".into()),
            organizational_unit: None,
            common_name: "tunnelbroker CA".into(),
        }
    }
}

/// Longest value of a name field (RFC 5280 upper bounds: ub-common-name and
/// friends are 64).
const MAX_NAME: usize = 64;

pub(super) fn check_name_field(field: &'static str, value: &str) -> Result<()> {
    let bad = |reason| Error::InvalidSubject {
        field,
        input: shown(value),
        reason,
    };
    if value.trim().is_empty() {
        return Err(bad("it is empty"));
    }
    if value.trim() != value {
        return Err(bad("it starts or ends with white space"));
    }
    if value.chars().count() > MAX_NAME {
        return Err(bad("it is longer than 64 characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(bad("it contains control characters"));
    }
    Ok(())
}

impl Subject {
    /// Checks every field: none empty or longer than 64 characters, no
    /// control characters, the country two upper-case letters (ISO 3166).
    ///
    /// ```
    /// use tunnelbroker_core::pki::Subject;
    /// let mut s = Subject::default();
    /// s.validate()?;
    /// s.country = Some("Germany".into());
    /// assert!(s.validate().is_err());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn validate(&self) -> Result<()> {
        if let Some(c) = &self.country
            && (c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(Error::InvalidSubject {
                field: "country",
                input: shown(c),
                reason: "expected two upper-case letters (ISO 3166), such as DE",
            });
        }
        if let Some(o) = &self.organization {
            check_name_field("organization", o)?;
        }
        if let Some(ou) = &self.organizational_unit {
            check_name_field("organizational unit", ou)?;
        }
        check_name_field("common name", &self.common_name)
    }

    pub(super) fn distinguished_name(&self) -> Result<DistinguishedName> {
        self.validate()?;
        let mut dn = DistinguishedName::new();
        if let Some(c) = &self.country {
            let printable = rcgen::string::PrintableString::try_from(c.as_str())
                .map_err(|e| pki_err("encoding the country", e))?;
            dn.push(DnType::CountryName, DnValue::PrintableString(printable));
        }
        if let Some(o) = &self.organization {
            dn.push(DnType::OrganizationName, o.as_str());
        }
        if let Some(ou) = &self.organizational_unit {
            dn.push(DnType::OrganizationalUnitName, ou.as_str());
        }
        dn.push(DnType::CommonName, self.common_name.as_str());
        Ok(dn)
    }
}
