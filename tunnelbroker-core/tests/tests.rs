//! The integration tests of `tunnelbroker-core`: one binary, one module per topic.

mod agent;
mod agent_e2e;
mod audit;
mod broker;
mod chain_e2e;
mod doctor_e2e;
mod lab;
mod layers;
mod lifecycle;
mod one_host_e2e;
mod openvpn_e2e;
mod parsers;
mod pg;
mod pki;
mod plan;
mod plan_state;
mod postgres;
mod render;
mod render_scale;
mod servers;
mod servers_e2e;
mod sessions;
mod store;
mod stores;
mod tls_crypt_v2;
mod tls_crypt_v2_e2e;

/// A temporary directory with mode 0755, as an operator's directory would
/// be (`tempfile` makes them 0700, out of OpenVPN's reach once it runs as
/// `nobody`: rendering into one is refused).
pub(crate) fn operator_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    // Where an operator's directories are: searchable by others (OpenVPN
    // re-reads the CRL and CCD entries as nobody) and outside the
    // directories Debian's unit hides (/tmp, /home, /root), wherever the
    // checkout is. Falls back to the target directory without root.
    let base = std::path::Path::new("/var/lib/tunnelbroker-tests");
    let tmp = std::fs::create_dir_all(base)
        .and_then(|()| std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)))
        .and_then(|()| tempfile::tempdir_in(base))
        .unwrap_or_else(|_| tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap());
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    tmp
}
