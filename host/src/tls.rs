//! TLS to the servers behind the pools: rustls with the ring provider, trusting either the
//! public (webpki) roots or the CA file a pool names.
//!
//! PostgreSQL's `sslmode` decides how much is checked, as libpq does: `verify-full` checks the
//! certificate chain and the host name, `verify-ca` the chain only, `require` and `prefer`
//! encrypt without checking — unless the pool names a CA file, which makes them `verify-ca`.

use anyhow::{Context, Result, bail};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Encrypt, accept any certificate (libpq's `require`/`prefer` without a CA file).
    Nothing,
    /// The chain up to a trusted root, not the host name (`verify-ca`).
    Chain,
    /// The chain and that the certificate names the host (`verify-full`, `rediss://`).
    ChainAndName,
}

/// A CA certificate file a pool names (`ca_file`), read and checked at startup.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CaFile {
    pub path: PathBuf,
    pub pem: Vec<u8>,
}

impl CaFile {
    /// Reads a PEM file that must hold at least one certificate.
    pub fn read(path: &Path) -> Result<CaFile> {
        let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        use rustls::pki_types::pem::PemObject;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate file: {e}", path.display()))?;
        if certificates.is_empty() {
            bail!(
                "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
                path.display()
            );
        }
        Ok(CaFile {
            path: path.to_path_buf(),
            pem,
        })
    }
}

/// Makes ring the process's crypto provider (the Redis client builds its TLS configs with the
/// process default). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The roots a pool trusts: its CA file, else the public roots.
pub fn roots(ca: Option<&CaFile>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(ca) => {
            use rustls::pki_types::pem::PemObject;
            for cert in CertificateDer::pem_slice_iter(&ca.pem) {
                let cert = cert.with_context(|| format!("{}: not PEM", ca.path.display()))?;
                roots.add(cert).with_context(|| {
                    format!("{}: not a usable CA certificate", ca.path.display())
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    if roots.is_empty() {
        bail!("no trusted root certificate");
    }
    Ok(roots)
}

/// A client config that checks what `verify` says against `ca` (or the public roots).
pub fn client_config(verify: Verify, ca: Option<&CaFile>) -> Result<ClientConfig> {
    install_crypto_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let config = match verify {
        Verify::ChainAndName => builder.with_root_certificates(roots(ca)?),
        Verify::Chain | Verify::Nothing => {
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca)?), provider.clone())
                    .build()
                    .context("TLS certificate verifier")?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient {
                    webpki,
                    check_chain: verify == Verify::Chain,
                }))
        }
    };
    Ok(config.with_no_client_auth())
}

/// The weaker checks libpq offers: the chain without the name, or nothing — handshake
/// signatures are always checked, so the session is still bound to the certificate's key.
#[derive(Debug)]
struct Lenient {
    webpki: Arc<WebPkiServerVerifier>,
    check_chain: bool,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.check_chain {
            return Ok(ServerCertVerified::assertion());
        }
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// A TLS failure in words an operator can act on, found anywhere in an error's sources (or,
/// where a client keeps only the text of rustls' error, in that text).
pub fn explain(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source = Some(error);
    while let Some(e) = source {
        let found = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = found {
            let cause = match tls {
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
                    Some(Cause::UnknownIssuer)
                }
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. },
                ) => Some(Cause::WrongName),
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::Expired
                    | rustls::CertificateError::ExpiredContext { .. },
                ) => Some(Cause::Expired),
                _ => None,
            };
            return Some(hint(cause, &tls.to_string()));
        }
        let text = e.to_string();
        if text.contains("invalid peer certificate") {
            let cause = if text.contains("UnknownIssuer") {
                Some(Cause::UnknownIssuer)
            } else if text.contains("not valid for name") || text.contains("NotValidForName") {
                Some(Cause::WrongName)
            } else if text.contains("xpired") {
                Some(Cause::Expired)
            } else {
                None
            };
            return Some(hint(cause, &text));
        }
        source = e.source();
    }
    None
}

enum Cause {
    UnknownIssuer,
    WrongName,
    Expired,
}

/// rustls' message with what to do about it.
fn hint(cause: Option<Cause>, message: &str) -> String {
    let what = match cause {
        Some(Cause::UnknownIssuer) => {
            "the server's certificate is not signed by a trusted CA: set the pool's `ca_file` \
             to the CA that signed it"
        }
        Some(Cause::WrongName) => {
            "the server's certificate does not name the host in the URL: connect by a name the \
             certificate holds, or use sslmode=verify-ca"
        }
        Some(Cause::Expired) => "the server's certificate has expired",
        None => "TLS handshake failed",
    };
    format!("{what} ({message})")
}
