//! OpenVPN's per-client control channel keys, `tls-crypt-v2` (OpenVPN 2.5
//! and later; the format is OpenVPN's `doc/tls-crypt-v2.txt`).
//!
//! * The **server key** is 128 bytes, OpenVPN's `struct key`: 64 bytes of
//!   cipher key, of which the first 32 are `Ke` (AES-256-CTR), then 64 bytes
//!   of HMAC key, of which the first 32 are `Ka` (HMAC-SHA256). Its text is
//!   PEM, `-----BEGIN OpenVPN tls-crypt-v2 server key-----`.
//! * A **client key** is `Kc` (256 random bytes, a tls-crypt key pair)
//!   followed by its wrapped form `WKc`, PEM
//!   `-----BEGIN OpenVPN tls-crypt-v2 client key-----`, where
//!
//!   ```text
//!   len = big-endian u16, the length of WKc (32 + 256 + metadata + 2)
//!   T   = HMAC-SHA256(Ka, len || Kc || metadata)
//!   WKc = T || AES-256-CTR(Ke, IV = T[0..16], Kc || metadata) || len
//!   ```
//!
//!   The server unwraps `WKc` from the client's first packet, checks `T`
//!   and hands the metadata to its `tls-crypt-v2-verify` program. Metadata
//!   is one type byte (`0x00` user data, `0x01` a 64-bit Unix time) and at
//!   most 733 bytes more; `WKc` is at most 1024 bytes.
//!
//! The broker binds each client key to its client with user metadata
//! ([`ClientBinding`]): the ASCII text `tunnelbroker-1 SERIAL ID`, the
//! serial of the client's certificate in upper-case hex and its client ID,
//! one space between the three words. The server's verify program accepts
//! a key only when that exact line is in the list of current clients the
//! broker keeps next to the CRL.
//!
//! The cryptography is aws-lc-rs's (the backend `rcgen` already builds):
//! AES-256-CTR, HMAC-SHA256 and its constant-time tag check. No function
//! here panics on any input; every parser bounds its input.

use std::fmt;
use std::path::Path;

use aws_lc_rs::cipher::{AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;

use super::{Serial, pem_encode, random_bytes};
use crate::client_id::ClientId;
use crate::error::{Error, Result, shown};

/// The PEM label of a server key.
pub const SERVER_KEY_LABEL: &str = "OpenVPN tls-crypt-v2 server key";
/// The PEM label of a client key.
pub const CLIENT_KEY_LABEL: &str = "OpenVPN tls-crypt-v2 client key";

/// Bytes of a server key (OpenVPN's `struct key`: 64 cipher, 64 HMAC).
const SERVER_KEY_BYTES: usize = 128;
/// Bytes of `Kc` (OpenVPN's `struct key2` keys: two `struct key`).
const CLIENT_KEY_BYTES: usize = 256;
/// Bytes of the tag `T`.
const TAG_BYTES: usize = 32;
/// The largest `WKc` OpenVPN accepts.
const MAX_WKC: usize = 1024;
/// The smallest `WKc`: tag, `Kc`, length, no metadata.
const MIN_WKC: usize = TAG_BYTES + CLIENT_KEY_BYTES + 2;
/// The most metadata bytes (type byte included) a `WKc` can carry.
pub const MAX_METADATA: usize = MAX_WKC - MIN_WKC;
/// Largest text the PEM parsers look at.
const MAX_TEXT: usize = 4096;

/// Metadata type: user data.
pub const METADATA_USER: u8 = 0x00;
/// Metadata type: a 64-bit Unix time, big-endian.
pub const METADATA_TIMESTAMP: u8 = 0x01;

/// A `tls-crypt-v2` server key. `Debug` redacts it.
///
/// ```
/// use tunnelbroker_core::pki::TlsCryptV2ServerKey;
/// let key = TlsCryptV2ServerKey::generate()?;
/// assert!(key.to_pem().starts_with("-----BEGIN OpenVPN tls-crypt-v2 server key-----\n"));
/// assert_eq!(TlsCryptV2ServerKey::parse(&key.to_pem())?, key);
/// assert_eq!(format!("{key:?}"), "TlsCryptV2ServerKey([redacted])");
/// assert!(TlsCryptV2ServerKey::parse("-----BEGIN OpenVPN Static key V1-----").is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct TlsCryptV2ServerKey {
    bytes: [u8; SERVER_KEY_BYTES],
}

impl fmt::Debug for TlsCryptV2ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsCryptV2ServerKey([redacted])")
    }
}

/// The error of a `tls-crypt-v2` key that is not right.
fn bad(reason: impl Into<String>) -> Error {
    Error::InvalidTlsCryptV2Key {
        reason: reason.into(),
    }
}

/// The one PEM block of `label` in `text`, decoded.
fn one_block(text: &str, label: &str) -> Result<Vec<u8>> {
    let blocks = super::pem_blocks_max(text, label, MAX_TEXT).map_err(bad)?;
    match blocks.as_slice() {
        [b] if b.tag() == label => Ok(b.contents().to_vec()),
        [b] => Err(bad(format!(
            "a PEM block of {}, expected {label}",
            shown(b.tag())
        ))),
        more => Err(bad(format!(
            "{} PEM blocks, expected one {label}",
            more.len()
        ))),
    }
}

impl TlsCryptV2ServerKey {
    /// 1024 bits from the OS RNG (as `openvpn --genkey tls-crypt-v2-server`).
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; SERVER_KEY_BYTES];
        random_bytes(&mut bytes)?;
        Ok(TlsCryptV2ServerKey { bytes })
    }

    /// Parses the PEM form: exactly one `OpenVPN tls-crypt-v2 server key`
    /// block of 128 bytes.
    pub fn parse(text: &str) -> Result<Self> {
        let der = one_block(text, SERVER_KEY_LABEL)?;
        let bytes: [u8; SERVER_KEY_BYTES] = der.as_slice().try_into().map_err(|_| {
            bad(format!(
                "the server key holds {} bytes, expected {SERVER_KEY_BYTES}",
                der.len()
            ))
        })?;
        Ok(TlsCryptV2ServerKey { bytes })
    }

    /// The PEM text (secret).
    pub fn to_pem(&self) -> String {
        pem_encode(SERVER_KEY_LABEL, &self.bytes)
    }

    /// Writes the key atomically with mode 0600.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::fsutil::write_secret(path, self.to_pem().as_bytes())
    }

    fn cipher_key(&self) -> &[u8] {
        &self.bytes[..32]
    }

    fn hmac_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.bytes[64..96])
    }

    /// AES-256-CTR with `Ke` and the IV `T[0..16]`, in place (encrypts and
    /// decrypts alike).
    fn ctr(&self, tag: &[u8; TAG_BYTES], data: &mut [u8]) -> Result<()> {
        let err = |_| super::pki_err("AES-256-CTR", "the cipher failed");
        let key = UnboundCipherKey::new(&AES_256, self.cipher_key()).map_err(err)?;
        let key = EncryptingKey::ctr(key).map_err(err)?;
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&tag[..16]);
        key.less_safe_encrypt(data, EncryptionContext::Iv128(FixedLength::from(iv)))
            .map_err(err)?;
        Ok(())
    }

    /// A new client key carrying `metadata` (its type byte first), wrapped
    /// with this server key, as `openvpn --genkey tls-crypt-v2-client`
    /// makes it.
    ///
    /// ```
    /// use tunnelbroker_core::pki::{TlsCryptV2ServerKey, METADATA_USER};
    /// let server = TlsCryptV2ServerKey::generate()?;
    /// let client = server.client_key(&[METADATA_USER, b'h', b'i'])?;
    /// assert_eq!(client.unwrap_with(&server)?, vec![METADATA_USER, b'h', b'i']);
    /// assert!(server.client_key(&[]).is_err());
    /// assert!(server.client_key(&[0; 735]).is_err());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn client_key(&self, metadata: &[u8]) -> Result<TlsCryptV2ClientKey> {
        if metadata.is_empty() {
            return Err(bad(
                "the metadata is empty (it needs at least its type byte)",
            ));
        }
        if metadata.len() > MAX_METADATA {
            return Err(bad(format!(
                "the metadata has {} bytes, at most {MAX_METADATA} fit",
                metadata.len()
            )));
        }
        let mut kc = [0u8; CLIENT_KEY_BYTES];
        random_bytes(&mut kc)?;
        let wkc = self.wrap(&kc, metadata)?;
        Ok(TlsCryptV2ClientKey { kc, wkc })
    }

    /// `WKc` of `kc` and `metadata` (lengths checked by the caller).
    fn wrap(&self, kc: &[u8; CLIENT_KEY_BYTES], metadata: &[u8]) -> Result<Vec<u8>> {
        let total = MIN_WKC + metadata.len();
        let len = u16::try_from(total)
            .map_err(|_| bad("the wrapped key is too long"))?
            .to_be_bytes();
        let mut ctx = hmac::Context::with_key(&self.hmac_key());
        ctx.update(&len);
        ctx.update(kc);
        ctx.update(metadata);
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(ctx.sign().as_ref());
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&tag);
        out.extend_from_slice(kc);
        out.extend_from_slice(metadata);
        self.ctr(&tag, &mut out[TAG_BYTES..])?;
        out.extend_from_slice(&len);
        Ok(out)
    }

    /// Unwraps `wkc` as the OpenVPN server does: `Kc` and the metadata, or
    /// an error when the length, the tag or the key's size is wrong.
    fn unwrap(&self, wkc: &[u8]) -> Result<([u8; CLIENT_KEY_BYTES], Vec<u8>)> {
        if wkc.len() > MAX_WKC {
            return Err(bad(format!(
                "the wrapped key has {} bytes, at most {MAX_WKC}",
                wkc.len()
            )));
        }
        if wkc.len() < MIN_WKC {
            return Err(bad(format!(
                "the wrapped key has {} bytes, at least {MIN_WKC}",
                wkc.len()
            )));
        }
        let (body, len) = wkc.split_at(wkc.len() - 2);
        let claimed = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if claimed != wkc.len() {
            return Err(bad(format!(
                "the wrapped key says it has {claimed} bytes but has {}",
                wkc.len()
            )));
        }
        let (tag, ct) = body.split_at(TAG_BYTES);
        let tag: [u8; TAG_BYTES] = tag.try_into().map_err(|_| bad("no tag"))?;
        let mut plain = ct.to_vec();
        self.ctr(&tag, &mut plain)?;
        let mut check = Vec::with_capacity(2 + plain.len());
        check.extend_from_slice(len);
        check.extend_from_slice(&plain);
        hmac::verify(&self.hmac_key(), &check, &tag).map_err(|_| {
            bad("the wrapped key's tag does not match: it was made with another server key, or damaged")
        })?;
        let (kc, metadata) = plain.split_at(CLIENT_KEY_BYTES);
        let kc: [u8; CLIENT_KEY_BYTES] = kc.try_into().map_err(|_| bad("no client key"))?;
        Ok((kc, metadata.to_vec()))
    }
}

/// A `tls-crypt-v2` client key: `Kc` and its wrapped form `WKc`. `Debug`
/// redacts it.
///
/// ```
/// use tunnelbroker_core::pki::{TlsCryptV2ClientKey, TlsCryptV2ServerKey};
/// let server = TlsCryptV2ServerKey::generate()?;
/// let client = server.client_key(&[0, b'x'])?;
/// let text = client.to_pem();
/// assert!(text.starts_with("-----BEGIN OpenVPN tls-crypt-v2 client key-----\n"));
/// assert_eq!(TlsCryptV2ClientKey::parse(&text)?, client);
/// assert_eq!(format!("{client:?}"), "TlsCryptV2ClientKey([redacted])");
///
/// // Another server key cannot unwrap it.
/// let other = TlsCryptV2ServerKey::generate()?;
/// assert!(client.unwrap_with(&other).is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct TlsCryptV2ClientKey {
    kc: [u8; CLIENT_KEY_BYTES],
    wkc: Vec<u8>,
}

impl fmt::Debug for TlsCryptV2ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsCryptV2ClientKey([redacted])")
    }
}

impl TlsCryptV2ClientKey {
    /// Parses the PEM form: exactly one `OpenVPN tls-crypt-v2 client key`
    /// block holding `Kc` (256 bytes) and a `WKc` whose trailing length is
    /// its own (290 to 1024 bytes). Without the server key the tag cannot
    /// be checked: [`unwrap_with`](Self::unwrap_with) does that.
    pub fn parse(text: &str) -> Result<Self> {
        let der = one_block(text, CLIENT_KEY_LABEL)?;
        if der.len() < CLIENT_KEY_BYTES + MIN_WKC {
            return Err(bad(format!(
                "the client key holds {} bytes, at least {} are needed",
                der.len(),
                CLIENT_KEY_BYTES + MIN_WKC
            )));
        }
        let (kc, wkc) = der.split_at(CLIENT_KEY_BYTES);
        if wkc.len() > MAX_WKC {
            return Err(bad(format!(
                "the wrapped key has {} bytes, at most {MAX_WKC}",
                wkc.len()
            )));
        }
        let claimed = usize::from(u16::from_be_bytes([wkc[wkc.len() - 2], wkc[wkc.len() - 1]]));
        if claimed != wkc.len() {
            return Err(bad(format!(
                "the wrapped key says it has {claimed} bytes but has {}",
                wkc.len()
            )));
        }
        let kc: [u8; CLIENT_KEY_BYTES] = kc.try_into().map_err(|_| bad("no client key"))?;
        Ok(TlsCryptV2ClientKey {
            kc,
            wkc: wkc.to_vec(),
        })
    }

    /// The PEM text (secret): `Kc || WKc`.
    pub fn to_pem(&self) -> String {
        let mut der = Vec::with_capacity(CLIENT_KEY_BYTES + self.wkc.len());
        der.extend_from_slice(&self.kc);
        der.extend_from_slice(&self.wkc);
        pem_encode(CLIENT_KEY_LABEL, &der)
    }

    /// The wrapped key `WKc`, as the client sends it to the server.
    pub fn wrapped(&self) -> &[u8] {
        &self.wkc
    }

    /// Unwraps `WKc` with `server` as the OpenVPN server does and returns
    /// the metadata (type byte first); refused when the tag does not match
    /// or the unwrapped `Kc` is not this key's.
    pub fn unwrap_with(&self, server: &TlsCryptV2ServerKey) -> Result<Vec<u8>> {
        let (kc, metadata) = server.unwrap(&self.wkc)?;
        if kc != self.kc {
            return Err(bad(
                "the wrapped key holds another client key than the one beside it",
            ));
        }
        Ok(metadata)
    }
}

/// What binds a client key to its client: the client ID and the serial of
/// its certificate, carried as user metadata `tunnelbroker-1 SERIAL ID`.
///
/// ```
/// use tunnelbroker_core::pki::{ClientBinding, Serial};
/// let b = ClientBinding::new("alice".parse()?, "0A1B".parse::<Serial>()?);
/// assert_eq!(b.to_string(), "tunnelbroker-1 0A1B alice");
/// let meta = b.metadata();
/// assert_eq!(meta[0], 0x00);
/// assert_eq!(ClientBinding::from_metadata(&meta)?, b);
/// assert!(ClientBinding::from_metadata(b"\x00tunnelbroker-1 0A1B ../etc").is_err());
/// assert!(ClientBinding::from_metadata(b"\x01\0\0\0\0\0\0\0\0").is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientBinding {
    /// The client.
    pub client: ClientId,
    /// The serial of its certificate.
    pub serial: Serial,
}

/// The first word of a binding.
const BINDING_MAGIC: &str = "tunnelbroker-1";

impl ClientBinding {
    /// The binding of `client` with the certificate `serial`.
    pub fn new(client: ClientId, serial: Serial) -> Self {
        ClientBinding { client, serial }
    }

    /// The metadata: type byte 0x00 (user data), then the line.
    pub fn metadata(&self) -> Vec<u8> {
        let mut m = vec![METADATA_USER];
        m.extend_from_slice(self.to_string().as_bytes());
        m
    }

    /// Parses metadata (type byte first) made by [`metadata`](Self::metadata).
    pub fn from_metadata(metadata: &[u8]) -> Result<Self> {
        match metadata.split_first() {
            Some((&METADATA_USER, rest)) => Self::from_line(rest),
            Some((t, _)) => Err(bad(format!(
                "metadata of type {t}, expected user data (0) naming a client"
            ))),
            None => Err(bad("no metadata")),
        }
    }

    /// Parses the line without its type byte (as the verify program reads
    /// it from OpenVPN's metadata file).
    pub fn from_line(line: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(line)
            .map_err(|_| bad("the metadata is not text: not a tunnelbroker key"))?;
        let mut words = text.split(' ');
        let (Some(BINDING_MAGIC), Some(serial), Some(id), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(bad(format!(
                "the metadata {} is not \"{BINDING_MAGIC} SERIAL ID\"",
                shown(text)
            )));
        };
        let serial: Serial = serial.parse().map_err(|e: Error| bad(e.to_string()))?;
        if serial.to_string() != serial_text(text) {
            return Err(bad(
                "the serial is not in upper-case hex without separators",
            ));
        }
        let client = ClientId::new(id).map_err(|e| bad(e.to_string()))?;
        Ok(ClientBinding { client, serial })
    }
}

/// The serial word of a binding line (its second word).
fn serial_text(line: &str) -> &str {
    line.split(' ').nth(1).unwrap_or("")
}

impl fmt::Display for ClientBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{BINDING_MAGIC} {} {}", self.serial, self.client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> TlsCryptV2ServerKey {
        TlsCryptV2ServerKey::generate().unwrap()
    }

    #[test]
    fn wrapped_key_has_openvpns_layout() {
        let s = server();
        let c = s.client_key(&[METADATA_USER, 1, 2, 3]).unwrap();
        let w = c.wrapped();
        assert_eq!(w.len(), 32 + 256 + 4 + 2);
        assert_eq!(
            u16::from_be_bytes([w[w.len() - 2], w[w.len() - 1]]),
            w.len() as u16
        );
        // The plaintext key is not in the wrapped form.
        assert!(!w.windows(16).any(|x| x == &c.kc[..16]));
        // The largest metadata fits exactly into 1024 bytes.
        let big = s.client_key(&[0; MAX_METADATA]).unwrap();
        assert_eq!(big.wrapped().len(), 1024);
        assert_eq!(big.unwrap_with(&s).unwrap().len(), MAX_METADATA);
    }

    #[test]
    fn unwrap_refuses_damaged_keys() {
        let s = server();
        let c = s
            .client_key(&ClientBinding::new("a".parse().unwrap(), "01".parse().unwrap()).metadata())
            .unwrap();
        for i in [0, 20, 40, 300, c.wkc.len() - 3] {
            let mut d = c.clone();
            d.wkc[i] ^= 1;
            assert!(d.unwrap_with(&s).is_err(), "byte {i}");
        }
        // The length word.
        let mut d = c.clone();
        let n = d.wkc.len();
        d.wkc[n - 1] ^= 1;
        assert!(s.unwrap(&d.wkc).is_err());
        // Kc beside the wrapped key differs.
        let mut d = c.clone();
        d.kc[0] ^= 1;
        assert!(d.unwrap_with(&s).is_err());
        // Truncated and overlong wrapped keys.
        assert!(s.unwrap(&c.wkc[..MIN_WKC - 1]).is_err());
        assert!(s.unwrap(&[0; MAX_WKC + 1]).is_err());
        assert!(s.unwrap(&[]).is_err());
    }

    #[test]
    fn parsers_refuse_hostile_pem() {
        let s = server();
        let c = s.client_key(&[0, b'x']).unwrap();
        let client = c.to_pem();
        let srv = s.to_pem();
        let body = |t: &str| {
            t.lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>()
        };
        let half = &client[..client.len() / 2];
        let wrong_len = pem_encode(SERVER_KEY_LABEL, &[0; 127]);
        let client_short = pem_encode(CLIENT_KEY_LABEL, &[0; 256 + 289]);
        let client_long = pem_encode(CLIENT_KEY_LABEL, &[0; 256 + 1025]);
        let mut bad_len = [0u8; 256 + 300];
        bad_len[256 + 298] = 0x01;
        bad_len[256 + 299] = 0x2b; // says 299
        let client_bad_len = pem_encode(CLIENT_KEY_LABEL, &bad_len);
        let huge = format!("{srv}{}", "\n".repeat(MAX_TEXT));
        let v1 = crate::pki::TlsCryptKey::generate()
            .unwrap()
            .to_text()
            .to_owned();
        let server_cases = vec![
            String::new(),
            "garbage".into(),
            half.to_owned(),
            client.clone(),
            wrong_len,
            huge.clone(),
            v1.clone(),
            format!("{srv}{srv}"),
            srv.replace(&body(&srv)[..8], "$(rm -rf"),
            srv.replace("server key", "sërver key"),
        ];
        for t in &server_cases {
            let e = TlsCryptV2ServerKey::parse(t).unwrap_err();
            assert!(matches!(e, Error::InvalidTlsCryptV2Key { .. }), "{e}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
        let client_cases = vec![
            String::new(),
            "garbage".into(),
            half.to_owned(),
            srv.clone(),
            client_short,
            client_long,
            client_bad_len,
            huge,
            v1,
            format!("{client}{client}"),
        ];
        for t in &client_cases {
            let e = TlsCryptV2ClientKey::parse(t).unwrap_err();
            assert!(matches!(e, Error::InvalidTlsCryptV2Key { .. }), "{e}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
        // CRLF and surrounding blank lines are fine.
        assert_eq!(
            TlsCryptV2ClientKey::parse(&format!("\n{}\n", client.replace('\n', "\r\n"))).unwrap(),
            c
        );
    }

    #[test]
    fn bindings_refuse_what_they_did_not_make() {
        let cases: Vec<&[u8]> = vec![
            b"",
            b"\x00",
            b"\x00tunnelbroker-1",
            b"\x00tunnelbroker-1 0A alice extra",
            b"\x00tunnelbroker-1 0a alice",
            b"\x00tunnelbroker-1 0A:1B alice",
            b"\x00tunnelbroker-1  alice",
            b"\x00tunnelbroker-1 0A a;b",
            b"\x00tunnelbroker-1 0A \xc3\xa9",
            b"\x00tunnelbroker-2 0A alice",
            b"\x00tunnelbroker-1 0A alice\n",
            b"\x01\x00\x00\x00\x00\x00\x00\x00\x01",
            b"\x02tunnelbroker-1 0A alice",
        ];
        for m in cases {
            assert!(ClientBinding::from_metadata(m).is_err(), "{m:?}");
        }
        let long = format!("\x00tunnelbroker-1 0A {}", "a".repeat(65));
        assert!(ClientBinding::from_metadata(long.as_bytes()).is_err());
    }
}
