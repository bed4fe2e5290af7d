//! `tunnelbroker doctor` (client side) and `tunnelbroker audit` (broker side).

use std::path::Path;

use tunnelbroker_core::doctor::{self, AuditOptions, DoctorOptions, LiveSystem, Report, Status};

use crate::args::{AuditArgs, DoctorArgs};
use crate::output::{Failure, Output};

/// Runs the client checks and prints them; exits 1 when any failed.
pub fn doctor(out: &Output, a: &DoctorArgs) -> Result<(), Failure> {
    let mut options = DoctorOptions::default();
    options.lan_interface = a.lan.as_deref().map(str::parse).transpose()?;
    options.ping = !a.no_ping;
    let report = doctor::run(&a.config, &options, &LiveSystem);
    finish(out, &report)
}

/// Audits the broker in `dir` (and repairs with --fix); exits 1 when any
/// check failed. A broker that cannot be opened (its database, CA or
/// settings unreadable) is reported too; only a directory without a broker
/// is an error.
pub fn audit(out: &Output, dir: &Path, a: &AuditArgs) -> Result<(), Failure> {
    let mut options = AuditOptions::default();
    options.days = a.days;
    options.fix = a.fix;
    options.server_dir = a.server_dir.clone();
    let report = doctor::audit_dir(dir, &options)?;
    finish(out, &report)
}

fn finish(out: &Output, report: &Report) -> Result<(), Failure> {
    out.show(report)?;
    match report.count(Status::Fail) {
        0 => Ok(()),
        1 => Err(Failure::other("1 check failed")),
        n => Err(Failure::other(format!("{n} checks failed"))),
    }
}
