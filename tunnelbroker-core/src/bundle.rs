//! Client bundles (issue 5): the archive a subscribed client installs.
//!
//! A Linux client gets `<id>.tar.gz`, a Windows client `<id>.zip`, each with
//! one folder `<id>/` holding its configuration (CA certificate, its own
//! certificate and key and the tls-crypt key inline), for Linux subnet
//! clients the executable `up`/`down` scripts, and a `README.txt` with the
//! three steps. A bundle never holds the CA key, the server key or any other
//! client's material: it is built only from the client's own record.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::broker::{
    Broker, ClientCredentials, ClientOs, ClientState, ServerMode, TlsCryptVersion,
};
use crate::client_id::ClientId;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::openvpn::{
    ClientConfig, ClientMaterial, CommonName, InterfaceName, RenderedFile, server_address,
};
use crate::pki::ClientBinding;

/// Mode of the configuration inside an archive: it holds the private key.
const CONFIG_MODE: u32 = 0o600;

fn archive_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::io(
        path,
        std::io::Error::other(format!("cannot build the bundle: {e}")),
    )
}

impl Broker {
    /// The OpenVPN configuration of an active client, as its bundle holds
    /// it.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::pki::RevocationReason;
    /// use tunnelbroker_core::{ClientKind, ErrorKind, NewClient};
    /// let alice = broker.add_client(&NewClient::new("alice".parse()?, ClientKind::Subnet))?;
    /// let config = broker.client_config(&alice.id)?;
    /// assert_eq!(config.assignment, alice.assignment);
    ///
    /// // A revoked client gets no configuration.
    /// broker.revoke(&alice.id, RevocationReason::Unspecified)?;
    /// assert_eq!(broker.client_config(&alice.id).unwrap_err().kind(), ErrorKind::InvalidInput);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn client_config(&self, id: &ClientId) -> Result<ClientConfig> {
        let client = self.client(id)?;
        if client.state != ClientState::Active {
            return Err(Error::ClientState {
                id: id.to_string(),
                state: client.state,
                action: "bundle",
            });
        }
        let creds = self.client_credentials(id)?;
        // The client's own server: its endpoint, mode, port, pool and name.
        let server = self.for_server(&client.server)?;
        let settings = server.settings();
        let port = match settings.mode {
            ServerMode::PerClient => client.port.ok_or_else(|| Error::InvalidSettings {
                reason: format!("client {id} has no UDP port in per-client mode"),
            })?,
            ServerMode::Shared => settings.port,
        };
        Ok(ClientConfig {
            client: client.id.clone(),
            assignment: client.assignment,
            server_address: server_address(settings.mode, &settings.pool, &client.assignment),
            os: client.os,
            mode: settings.mode,
            remote: settings.endpoint.clone(),
            port,
            server_name: CommonName::new(&crate::broker::server_common_name(&client.server))?,
            lan_interface: InterfaceName::new(&settings.lan_interface)?,
            material: self.client_material(&client.id, &creds)?,
        })
    }

    /// The material of a client's configuration: CA, certificate, key, and
    /// the shared `tls-crypt` key (v1) or a new `tls-crypt-v2` key of its
    /// own, bound to its current certificate (v2).
    fn client_material(&self, id: &ClientId, creds: &ClientCredentials) -> Result<ClientMaterial> {
        let ca = self.ca().chain_pem();
        let cert = creds.certificate.pem();
        let key = creds.key.as_ref().map(|k| k.to_pem());
        match self.settings().tls_crypt {
            TlsCryptVersion::V1 => {
                ClientMaterial::new(&ca, cert, key, self.tls_crypt_key()?.to_text())
            }
            TlsCryptVersion::V2 => {
                let binding = ClientBinding::new(id.clone(), creds.certificate.serial().clone());
                let client_key = self
                    .tls_crypt_v2_server_key()?
                    .client_key(&binding.metadata())?;
                ClientMaterial::with_tls_crypt_v2(&ca, cert, key, &client_key.to_pem())
            }
        }
    }

    /// Writes the bundle of an active client (mode 0600: it holds the
    /// client's key) and returns the path written: `out`, or, when `out` is
    /// an existing directory, the default name (`<id>.tar.gz` for Linux,
    /// `<id>.zip` for Windows) inside it; without `out`, the default name in
    /// the current directory.
    ///
    /// A name that promises the other format is refused as bad input
    /// before anything is written: a Linux client's bundle is a `.tar.gz`,
    /// so `alice.zip` is refused for it, and a Windows client's is a
    /// `.zip`, so `.tar.gz`, `.tgz` and `.tar` are refused for it.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use std::os::unix::fs::PermissionsExt;
    /// use tunnelbroker_core::{ClientKind, ErrorKind, NewClient};
    /// let alice = broker.add_client(&NewClient::new("alice".parse()?, ClientKind::Subnet))?;
    /// let out = tmp.path().join("alice.tar.gz");
    /// assert_eq!(broker.bundle(&alice.id, Some(&out))?, out);
    /// let mode = std::fs::metadata(&out).unwrap().permissions().mode();
    /// assert_eq!(mode & 0o777, 0o600);
    ///
    /// // A directory gets the default name inside it.
    /// let dir = tmp.path().join("bundles");
    /// std::fs::create_dir(&dir).unwrap();
    /// assert_eq!(broker.bundle(&alice.id, Some(&dir))?, dir.join("alice.tar.gz"));
    ///
    /// // The other format's name is refused, and nothing is written.
    /// let zip = tmp.path().join("alice.zip");
    /// assert_eq!(broker.bundle(&alice.id, Some(&zip)).unwrap_err().kind(), ErrorKind::InvalidInput);
    /// assert!(!zip.exists());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn bundle(&self, id: &ClientId, out: Option<&Path>) -> Result<PathBuf> {
        let cfg = self.client_config(id)?;
        let out = match out {
            Some(dir) if dir.is_dir() => dir.join(default_name(id, cfg.os)),
            Some(file) => file.to_owned(),
            None => PathBuf::from(default_name(id, cfg.os)),
        };
        check_bundle_name(id, cfg.os, &out)?;
        let files = cfg.emit()?;
        let data = match cfg.os {
            ClientOs::Linux => tar_gz(id, &cfg, &files, &out)?,
            ClientOs::Windows => zip_archive(id, &cfg, &files, &out)?,
        };
        fsutil::write_secret(&out, &data)?;
        Ok(out)
    }
}

/// The default file name of a client's bundle.
fn default_name(id: &ClientId, os: ClientOs) -> String {
    match os {
        ClientOs::Linux => format!("{id}.tar.gz"),
        ClientOs::Windows => format!("{id}.zip"),
    }
}

/// Refuses a bundle file name whose extension names the other format.
fn check_bundle_name(id: &ClientId, os: ClientOs, out: &Path) -> Result<()> {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let is = |ext: &str| name.ends_with(ext);
    let wrong = match os {
        ClientOs::Linux if is(".zip") => Some(format!(
            "a Linux client's bundle is a .tar.gz archive: name it {id}.tar.gz"
        )),
        ClientOs::Windows if is(".tar.gz") || is(".tgz") || is(".tar") => Some(format!(
            "a Windows client's bundle is a .zip archive: name it {id}.zip"
        )),
        _ => None,
    };
    match wrong {
        Some(reason) => Err(Error::InvalidField {
            field: "bundle file name",
            input: crate::error::shown(&out.display().to_string()),
            reason,
        }),
        None => Ok(()),
    }
}

fn mode_of(cfg: &ClientConfig, f: &RenderedFile) -> u32 {
    if f.executable {
        fsutil::EXECUTABLE
    } else if f.name == cfg.file_name() {
        CONFIG_MODE
    } else {
        fsutil::PUBLIC
    }
}

fn tar_gz(
    id: &ClientId,
    cfg: &ClientConfig,
    files: &[RenderedFile],
    out: &Path,
) -> Result<Vec<u8>> {
    let err = |e: std::io::Error| archive_err(out, e);
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mtime = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_mtime(mtime);
    tar.append_data(&mut dir, format!("{id}/"), std::io::empty())
        .map_err(err)?;
    for f in files {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode_of(cfg, f));
        h.set_size(f.text.len() as u64);
        h.set_mtime(mtime);
        tar.append_data(&mut h, format!("{id}/{}", f.name), f.text.as_bytes())
            .map_err(err)?;
    }
    tar.into_inner().map_err(err)?.finish().map_err(err)
}

fn zip_archive(
    id: &ClientId,
    cfg: &ClientConfig,
    files: &[RenderedFile],
    out: &Path,
) -> Result<Vec<u8>> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.add_directory(format!("{id}/"), SimpleFileOptions::default())
        .map_err(|e| archive_err(out, e))?;
    for f in files {
        let opts = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(mode_of(cfg, f));
        w.start_file(format!("{id}/{}", f.name), opts)
            .map_err(|e| archive_err(out, e))?;
        // Windows users open README.txt with Notepad: CRLF line ends there.
        let text = if f.name.ends_with(".txt") {
            f.text.replace('\n', "\r\n")
        } else {
            f.text.clone()
        };
        w.write_all(text.as_bytes())
            .map_err(|e| archive_err(out, e))?;
    }
    Ok(w.finish().map_err(|e| archive_err(out, e))?.into_inner())
}
