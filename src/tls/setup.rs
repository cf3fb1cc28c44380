//! From the configuration to a TLS acceptor: the `tlsCert`/`tlsKey`/
//! `tlsPfx` settings become certificate sources, loaded once at start
//! (errors stop the start with exit 2) and then watched for changes.
//!
//! Owns that mapping and the start-up report (expiry warnings). Must not
//! bind or serve anything.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use super::{install_provider, server_config, CertSource, Resolver};
use crate::config::Config;

/// The PFX password when web.config does not set `hpgate:tlsPfxPassword`.
pub const PFX_PASSWORD_ENV: &str = "HPGATE_TLS_PFX_PASSWORD";

/// The certificate sources the configuration names, paths resolved
/// against the site root. Err names what is missing.
pub fn sources(
    cfg: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<CertSource>, String> {
    let at = |p: &PathBuf| -> PathBuf {
        if p.is_absolute() {
            p.clone()
        } else {
            cfg.site_root.join(p)
        }
    };
    let (certs, keys) = (&cfg.tls_cert.0, &cfg.tls_key.0);
    let mut out = Vec::new();
    let mut keys_iter = keys.iter();
    for cert in certs {
        let cert = at(cert);
        if cert.is_dir() {
            out.push(CertSource::Folder(cert));
            continue;
        }
        let Some(key) = keys_iter.next() else {
            return Err(format!(
                "tlsCert {} has no key: give --tls-key (hpgate:tlsKey) for each certificate file, in the same order",
                cert.display()
            ));
        };
        out.push(CertSource::Pem { cert, key: at(key) });
    }
    if keys_iter.next().is_some() {
        return Err(
            "more tlsKey files than tlsCert files: give them in pairs, in the same order".into(),
        );
    }
    let password = cfg
        .tls_pfx_password
        .0
        .clone()
        .or_else(|| env(PFX_PASSWORD_ENV));
    for pfx in &cfg.tls_pfx.0 {
        out.push(CertSource::Pfx {
            path: at(pfx),
            password: password.clone(),
        });
    }
    Ok(out)
}

/// Loads the certificates and builds the acceptor for the https listeners.
pub fn acceptor(sources: Vec<CertSource>) -> Result<(TlsAcceptor, Arc<Resolver>), String> {
    install_provider();
    if sources.is_empty() {
        return Err("an https:// listener needs a certificate: --tls-cert and --tls-key (PEM), --tls-pfx (PFX), or a folder with --tls-cert (docs/tls.md)".into());
    }
    let resolver = Arc::new(Resolver::new(sources).map_err(|e| e.to_string())?);
    for w in resolver.warnings(time::OffsetDateTime::now_utc()) {
        tracing::warn!("{w}");
    }
    let config = Arc::new(server_config(resolver.clone()));
    Ok((TlsAcceptor::from(config), resolver))
}
