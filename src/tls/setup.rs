//! From the configuration to a TLS acceptor: the `tlsCert`/`tlsKey`/
//! `tlsPfx` settings become certificate sources, loaded once at start
//! (errors stop the start with exit 2) and then watched for changes; the
//! `acme...` settings become the ACME task's [`AcmeConfig`].
//!
//! Owns that mapping and the start-up report (expiry warnings). Must not
//! bind or serve anything.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use super::acme::{AcmeConfig, ChallengeKind, Challenges};
use super::{install_provider, server_config, CertSource, Resolver};
use crate::config::Config;

/// Restricts ACME to one challenge type (`http-01` or `tls-alpn-01`):
/// for tests and for a site where only one port is reachable.
pub const ACME_CHALLENGE_ENV: &str = "HPGATE_ACME_CHALLENGE";

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

/// The ACME task's configuration, None when no `acmeDomains` are set.
/// Err when ACME is set up but cannot work.
pub fn acme(
    cfg: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<AcmeConfig>, String> {
    if cfg.acme_domains.0.is_empty() {
        return Ok(None);
    }
    let https = cfg.listen.iter().any(|l| l.tls);
    let plain = cfg.listen.iter().any(|l| !l.tls);
    if !https {
        return Err("acmeDomains needs an https:// listener to serve the certificate on (--listen https://...)".into());
    }
    let mut kinds = vec![ChallengeKind::TlsAlpn01];
    if plain {
        kinds.push(ChallengeKind::Http01);
    }
    if let Some(raw) = env(ACME_CHALLENGE_ENV).filter(|v| !v.is_empty()) {
        let Some(only) = ChallengeKind::parse(&raw) else {
            return Err(format!(
                "{ACME_CHALLENGE_ENV}={raw}: give http-01 or tls-alpn-01"
            ));
        };
        if only == ChallengeKind::Http01 && !plain {
            return Err(format!("{ACME_CHALLENGE_ENV}=http-01 needs a plain http:// listener (port 80 for a public CA)"));
        }
        kinds = vec![only];
    }
    Ok(Some(AcmeConfig {
        names: cfg.acme_domains.0.clone(),
        email: cfg.acme_email.clone(),
        directory: cfg.acme_directory.clone(),
        directory_ca: cfg.acme_directory_ca.0.first().cloned(),
        cache: cfg.acme_cache.clone(),
        kinds,
    }))
}

/// Loads the certificates and builds the acceptor for the https listeners;
/// with `challenges` (ACME on) no certificate file is needed.
pub fn acceptor(
    sources: Vec<CertSource>,
    challenges: Option<Arc<Challenges>>,
) -> Result<(TlsAcceptor, Arc<Resolver>), String> {
    install_provider();
    if sources.is_empty() && challenges.is_none() {
        return Err("an https:// listener needs a certificate: --tls-cert and --tls-key (PEM), --tls-pfx (PFX), a folder with --tls-cert, or --acme-domain (docs/tls.md)".into());
    }
    let mut resolver = Resolver::new(sources).map_err(|e| e.to_string())?;
    if let Some(challenges) = challenges {
        resolver = resolver.with_challenges(challenges);
    }
    let resolver = Arc::new(resolver);
    for w in resolver.warnings(time::OffsetDateTime::now_utc()) {
        tracing::warn!("{w}");
    }
    let config = Arc::new(server_config(resolver.clone()));
    Ok((TlsAcceptor::from(config), resolver))
}
