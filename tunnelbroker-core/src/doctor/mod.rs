//! Diagnostics: `doctor` on a client, `audit` on the broker (issue 7).
//!
//! Both produce a [`Report`]: a list of [`Check`]s, each PASS, WARN, FAIL or
//! SKIP with a one-line message and, unless it passed, a one-line hint on
//! how to fix it.
//!
//! * [`run`] (client side, `tunnelbroker doctor --config FILE`) reads a
//!   client's OpenVPN configuration ([`ClientConfigFile`]) and the machine's
//!   state through a [`System`] (the real one is [`LiveSystem`]; tests feed a
//!   fake one). It changes nothing and sends nothing but one `ping -6` to the
//!   server's routing end, and only while the tunnel is up.
//! * [`audit`] (server side, `tunnelbroker audit`) checks that the client
//!   database, the CA, the CRL and the rendered files agree, and with
//!   [`AuditOptions::fix`] makes the safe repairs only.
//!
//! What a client should have is read from a machine-readable comment in its
//! configuration, written by the renderer from [`BundleFacts`]:
//!
//! ```text
//! # tunnelbroker-doctor: id=alice kind=subnet prefix=2001:db8:0:f1ab::/64 tunnel=2001:db8:0:f100::f1ab:2 server=2001:db8:0:f100::f1ab:1 lan=eth0
//! ```
//!
//! No function here panics on any input: configurations, certificates and
//! the output of `ip` are all treated as hostile.
//!
//! ```
//! use tunnelbroker_core::doctor::{Report, Status};
//! let mut r = Report::new("example");
//! r.pass("openvpn", "OpenVPN 2.6.14 is installed");
//! r.fail("forwarding", "IPv6 forwarding is off", "sysctl -w net.ipv6.conf.all.forwarding=1");
//! assert!(r.failed());
//! assert_eq!(r.status_of("forwarding"), Some(Status::Fail));
//! assert!(r.to_string().contains("FAIL  forwarding"));
//! ```

mod audit;
mod client;
mod system;

pub use crate::openvpn::facts::{BundleFacts, FACTS_TAG};
pub use crate::openvpn::parse::{ClientConfigFile, Directive, Material};
pub use audit::{AUDIT_CHECKS, AuditOptions, audit, audit_dir};
pub use client::{CHECKS, DoctorOptions, run};
pub use system::{CommandOutput, LiveSystem, System};

use std::fmt;

use serde::Serialize;

use crate::error::flatten;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// All is well.
    Pass,
    /// Not checked, because something it depends on is missing (the tunnel
    /// is down, the configuration did not parse).
    Skip,
    /// Works, but needs attention soon (a certificate that expires shortly).
    Warn,
    /// Broken: the hint says how to fix it.
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Pass => "PASS",
            Status::Skip => "SKIP",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        })
    }
}

/// One checked item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The check's stable name (`openvpn`, `forwarding`, `certificate`, ...).
    pub name: String,
    /// The outcome.
    pub status: Status,
    /// What was found, one line.
    pub message: String,
    /// How to fix it, one line (absent on PASS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The result of `doctor` or `audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// What was checked.
    pub title: String,
    /// Every check, in the order they ran.
    pub checks: Vec<Check>,
    /// What `audit --fix` changed, one line each.
    pub actions: Vec<String>,
}

impl Report {
    /// An empty report.
    pub fn new(title: impl Into<String>) -> Self {
        Report {
            title: flatten(&title.into()),
            checks: Vec::new(),
            actions: Vec::new(),
        }
    }

    /// Adds a check.
    pub fn push(
        &mut self,
        name: &str,
        status: Status,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.checks.push(Check {
            name: name.to_owned(),
            status,
            message: flatten(&message.into()),
            hint: hint.map(|h| flatten(&h)),
        });
    }

    /// Adds a passed check.
    pub fn pass(&mut self, name: &str, message: impl Into<String>) {
        self.push(name, Status::Pass, message, None);
    }

    /// Adds a warning with its hint.
    pub fn warn(&mut self, name: &str, message: impl Into<String>, hint: impl Into<String>) {
        self.push(name, Status::Warn, message, Some(hint.into()));
    }

    /// Adds a failure with its hint.
    pub fn fail(&mut self, name: &str, message: impl Into<String>, hint: impl Into<String>) {
        self.push(name, Status::Fail, message, Some(hint.into()));
    }

    /// Adds a skipped check, saying why.
    pub fn skip(&mut self, name: &str, why: impl Into<String>) {
        self.push(name, Status::Skip, why, None);
    }

    /// Whether any check failed (the commands then exit non-zero).
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }

    /// The worst status of the checks called `name`, if any ran.
    pub fn status_of(&self, name: &str) -> Option<Status> {
        self.checks
            .iter()
            .filter(|c| c.name == name)
            .map(|c| c.status)
            .max()
    }

    /// The checks with this status.
    pub fn with_status(&self, status: Status) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(move |c| c.status == status)
    }

    /// How many checks have this status.
    pub fn count(&self, status: Status) -> usize {
        self.with_status(status).count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.title)?;
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &self.checks {
            writeln!(f, "{}  {:width$}  {}", c.status, c.name, c.message)?;
            if let Some(h) = &c.hint {
                writeln!(f, "      {:width$}  hint: {h}", "")?;
            }
        }
        for a in &self.actions {
            writeln!(f, "fixed: {a}")?;
        }
        write!(
            f,
            "{} pass, {} warn, {} fail, {} skipped",
            self.count(Status::Pass),
            self.count(Status::Warn),
            self.count(Status::Fail),
            self.count(Status::Skip)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_text_has_one_line_per_check_and_hint() {
        let mut r = Report::new("t");
        r.pass("a", "fine");
        r.warn("bb", "soon\nbroken", "do x");
        let titled = Report::new("tunnelbroker doctor: /tmp/x\ny.conf");
        assert_eq!(titled.title, "tunnelbroker doctor: /tmp/x\\ny.conf");
        r.skip("c", "tunnel down");
        let text = r.to_string();
        assert!(!r.failed());
        assert_eq!(text.lines().count(), 1 + 3 + 1 + 1, "{text}");
        assert!(text.contains("WARN  bb  soon\\nbroken"), "{text}");
        assert!(text.contains("hint: do x"));
        assert!(text.ends_with("1 pass, 1 warn, 0 fail, 1 skipped"));
        r.fail("a", "now broken", "fix");
        assert!(r.failed());
        assert_eq!(r.status_of("a"), Some(Status::Fail));
        assert_eq!(r.status_of("zz"), None);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["checks"][1]["status"], "warn");
        assert!(json["checks"][0].get("hint").is_none());
    }
}

#[cfg(test)]
mod tests_client;
