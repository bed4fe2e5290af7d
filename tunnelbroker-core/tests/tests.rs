//! The integration tests of `tunnelbroker-core`: one binary, one module per topic.

mod audit;
mod broker;
mod doctor_e2e;
mod lab;
mod openvpn_e2e;
mod parsers;
mod pki;
mod plan;
mod plan_state;
mod render;

/// A temporary directory with mode 0755, as an operator's directory would
/// be (`tempfile` makes them 0700, out of OpenVPN's reach once it runs as
/// `nobody`: rendering into one is refused).
pub(crate) fn operator_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    tmp
}
