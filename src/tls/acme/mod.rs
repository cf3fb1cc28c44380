//! Certificates from an ACME server (Let's Encrypt by default), obtained
//! and renewed in the background, as Caddy does. docs/tls.md ("ACME") is
//! the user's side.
//!
//! One task per hpgate: it serves the cached certificate if there is one,
//! orders a new one when none is cached or renewal is due (`schedule.rs`),
//! answers the challenges through [`Challenges`] (HTTP-01 on the plain
//! listeners via the service, TLS-ALPN-01 on the https listeners via the
//! resolver), saves the result (`cache.rs`) and hands it to the resolver.
//! A failure is logged with its reason and retried with a growing wait;
//! whatever certificate is served keeps being served meanwhile.
//!
//! Owns that loop and its errors. Must not bind or serve.

mod cache;
mod challenge;
mod order;
pub mod schedule;

use std::path::PathBuf;
use std::sync::Arc;

use instant_acme::{Account, AccountBuilder, ChallengeType, NewAccount};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

pub use cache::Cache;
pub use challenge::{alpn_cert, Challenges, ACME_TLS_ALPN};

use super::load::{load_pem, LoadedCert};
use super::resolver::Resolver;

/// The challenge types hpgate answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    Http01,
    TlsAlpn01,
}

impl ChallengeKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Http01 => "http-01",
            Self::TlsAlpn01 => "tls-alpn-01",
        }
    }

    pub fn parse(raw: &str) -> Option<ChallengeKind> {
        [Self::Http01, Self::TlsAlpn01]
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(raw.trim()))
    }

    fn acme_type(self) -> ChallengeType {
        match self {
            Self::Http01 => ChallengeType::Http01,
            Self::TlsAlpn01 => ChallengeType::TlsAlpn01,
        }
    }
}

/// What the ACME task needs from the configuration.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    pub names: Vec<String>,
    pub email: String,
    pub directory: String,
    pub directory_ca: Option<PathBuf>,
    pub cache: PathBuf,
    /// Tried in turn, the next one after each failure.
    pub kinds: Vec<ChallengeKind>,
}

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("cannot read {path}: {1}", path = .0.display())]
    Read(PathBuf, String),
    #[error("cannot write {path}: {1}", path = .0.display())]
    Write(PathBuf, String),
    #[error("ACME server {0}: {1}")]
    Server(String, String),
    #[error("the ACME server offers no {0} challenge for {1}")]
    NoChallenge(&'static str, String),
    #[error("{kind} challenge for {name} failed: {detail}")]
    Challenge {
        kind: &'static str,
        name: String,
        detail: String,
    },
    #[error("order failed: {0}")]
    Order(String),
    #[error("cannot make the tls-alpn-01 challenge certificate: {0}")]
    ChallengeCert(String),
    #[error("the certificate received is unusable: {0}")]
    BadCert(String),
}

/// Runs until `stop` is cancelled.
pub async fn run(
    cfg: AcmeConfig,
    resolver: Arc<Resolver>,
    challenges: Arc<Challenges>,
    stop: CancellationToken,
) {
    let cache = Cache::new(&cfg.cache, &cfg.directory);
    let names = cfg.names.join(", ");
    let mut current = cached(&cache, &cfg.names);
    if let Some(c) = &current {
        resolver.set_acme(vec![c.clone()]);
    }
    let mut failures: u32 = 0;
    loop {
        let wait = match &current {
            _ if failures > 0 => schedule::backoff(failures),
            Some(c) => schedule::until(renew_time(c), OffsetDateTime::now_utc()),
            None => std::time::Duration::ZERO,
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let kind = cfg.kinds[failures as usize % cfg.kinds.len()];
        tracing::info!("ACME: ordering a certificate for {names} ({})", kind.name());
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = obtain(&cfg, &cache, &challenges, kind) => r,
        };
        challenges.clear();
        match result {
            Ok(cert) => {
                tracing::info!(not_after = %cert.not_after, "ACME: certificate for {names} obtained, renewal at {}", renew_time(&cert));
                resolver.set_acme(vec![cert.clone()]);
                current = Some(cert);
                failures = 0;
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let again = schedule::backoff(failures);
                tracing::error!(
                    "ACME: no certificate for {names}: {e}; retrying in {}s",
                    again.as_secs()
                );
            }
        }
    }
}

/// When `cert` is due for renewal.
fn renew_time(cert: &LoadedCert) -> OffsetDateTime {
    let not_before = cert
        .key
        .cert
        .first()
        .and_then(|der| x509_parser::parse_x509_certificate(der).ok())
        .map(|(_, c)| c.validity().not_before.to_datetime())
        .unwrap_or(cert.not_after);
    schedule::renew_at(not_before, cert.not_after)
}

/// The cached certificate for `names`, if it is there, loads and covers
/// them all.
fn cached(cache: &Cache, names: &[String]) -> Option<LoadedCert> {
    let (cert_file, key_file) = cache.cert_files(names);
    if !cert_file.exists() {
        return None;
    }
    match load_pem(&cert_file, &key_file) {
        Ok(c) if names.iter().all(|n| c.names.contains(n)) => {
            tracing::info!(not_after = %c.not_after, "ACME: using the cached certificate {}, renewal at {}", cert_file.display(), renew_time(&c));
            Some(c)
        }
        Ok(_) => {
            tracing::warn!(
                "ACME: the cached certificate {} does not cover every name; ordering a new one",
                cert_file.display()
            );
            None
        }
        Err(e) => {
            tracing::warn!("ACME: the cached certificate is unusable ({e}); ordering a new one");
            None
        }
    }
}

async fn obtain(
    cfg: &AcmeConfig,
    cache: &Cache,
    challenges: &Challenges,
    kind: ChallengeKind,
) -> Result<LoadedCert, AcmeError> {
    let account = account(cfg, cache).await?;
    let (chain, key) = order::run(&account, &cfg.names, kind, challenges).await?;
    cache.save_cert(&cfg.names, &chain, &key)?;
    let (cert_file, key_file) = cache.cert_files(&cfg.names);
    load_pem(&cert_file, &key_file).map_err(|e| AcmeError::BadCert(e.to_string()))
}

fn builder(cfg: &AcmeConfig) -> Result<AccountBuilder, AcmeError> {
    let built = match &cfg.directory_ca {
        Some(ca) => Account::builder_with_root(ca),
        None => Account::builder(),
    };
    built.map_err(|e| AcmeError::Server(cfg.directory.clone(), e.to_string()))
}

/// The cached account, or a new one (then cached).
async fn account(cfg: &AcmeConfig, cache: &Cache) -> Result<Account, AcmeError> {
    let server = |e: instant_acme::Error| AcmeError::Server(cfg.directory.clone(), e.to_string());
    if let Some(creds) = cache.load_account()? {
        return builder(cfg)?.from_credentials(creds).await.map_err(server);
    }
    let mailto = format!("mailto:{}", cfg.email);
    let contact: Vec<&str> = if cfg.email.is_empty() {
        Vec::new()
    } else {
        vec![mailto.as_str()]
    };
    let new = NewAccount {
        contact: &contact,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, creds) = builder(cfg)?
        .create(&new, cfg.directory.clone(), None)
        .await
        .map_err(server)?;
    cache.save_account(&creds)?;
    tracing::info!(
        "ACME: account created at {}, saved in {}",
        cfg.directory,
        cache.account_file().display()
    );
    Ok(account)
}
