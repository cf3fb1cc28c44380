//! TLS termination: certificates from PEM files (certbot), PFX files (IIS
//! exports) or a folder of them, chosen per handshake by SNI, reloaded when
//! the files change. docs/tls.md is the user's side of this module.
//!
//! Owns certificate loading and its error messages (`load.rs`, `error.rs`),
//! the folder naming rule (`folder.rs`), the SNI choice (`resolver.rs`),
//! reload (`watch.rs`) and the rustls server configuration. It must not
//! listen, accept or speak HTTP (the listeners wrap their streams with
//! [`server_config`]'s acceptor) nor read web.config (the caller turns the
//! configuration into [`CertSource`]s).
//!
//! Crypto is rustls with the `ring` provider: aws-lc-rs needs cmake and
//! NASM and breaks the x86_64-pc-windows-gnu cross build.

pub mod acme;
mod error;
mod folder;
mod load;
mod resolver;
pub mod setup;
mod watch;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

pub use error::{CertWarning, TlsError, EXPIRY_WARNING_DAYS};
pub use load::{load_pem, load_pfx, LoadedCert};
pub use resolver::{ReloadCounts, Resolver};
pub use watch::{watch, watch_every, POLL};

/// Where a certificate comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum CertSource {
    /// A PEM (or DER) certificate chain, leaf first, and its private key
    /// (PKCS#8, PKCS#1 RSA or SEC1 EC; unencrypted).
    Pem { cert: PathBuf, key: PathBuf },
    /// A PFX/PKCS#12 file; `None` is the empty password.
    Pfx {
        path: PathBuf,
        password: Option<String>,
    },
    /// Every certificate of a folder by the rule in `folder.rs` (docs/tls.md).
    Folder(PathBuf),
}

// By hand so that a PFX password never reaches a log.
impl std::fmt::Debug for CertSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pem { cert, key } => f
                .debug_struct("Pem")
                .field("cert", cert)
                .field("key", key)
                .finish(),
            Self::Pfx { path, password } => f
                .debug_struct("Pfx")
                .field("path", path)
                .field("password", &password.as_ref().map(|_| "***"))
                .finish(),
            Self::Folder(dir) => f.debug_tuple("Folder").field(dir).finish(),
        }
    }
}

impl CertSource {
    /// Loads every certificate of this source.
    pub fn load(&self) -> Result<Vec<LoadedCert>, TlsError> {
        match self {
            Self::Pem { cert, key } => Ok(vec![load_pem(cert, key)?]),
            Self::Pfx { path, password } => Ok(vec![load_pfx(path, password.as_deref())?]),
            Self::Folder(dir) => {
                let each = folder::scan(dir)?.into_iter().map(|e| e.source.load());
                Ok(each.collect::<Result<Vec<_>, _>>()?.concat())
            }
        }
    }

    /// The files this source reads (for a folder: as found now, plus the
    /// folder itself so an empty or missing folder is still watched).
    pub fn files(&self) -> Vec<PathBuf> {
        match self {
            Self::Pem { cert, key } => vec![cert.clone(), key.clone()],
            Self::Pfx { path, .. } => vec![path.clone()],
            Self::Folder(dir) => {
                let found = folder::scan(dir).unwrap_or_default();
                std::iter::once(dir.clone())
                    .chain(found.into_iter().flat_map(|e| e.files))
                    .collect()
            }
        }
    }
}

/// Makes `ring` the process's rustls crypto provider. Call it once at start;
/// calling it again (or after another provider was installed) does nothing.
pub fn install_provider() {
    // Err only means a provider is already installed: nothing to do.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The rustls server configuration: TLS 1.3 and 1.2, ALPN `h2` then
/// `http/1.1` (and `acme-tls/1` last when the resolver answers ACME
/// validations), no client certificates, certificates from `resolver`.
pub fn server_config(resolver: Arc<Resolver>) -> rustls::ServerConfig {
    let acme = resolver.answers_challenges();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the ring provider supports TLS 1.3 and 1.2")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if acme {
        cfg.alpn_protocols.push(acme::ACME_TLS_ALPN.to_vec());
    }
    cfg
}
