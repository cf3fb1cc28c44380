//! Chooses the certificate for each handshake by SNI, from a set that the
//! watcher swaps atomically (`arc-swap`: handshakes never wait on a lock and
//! connections already up keep the key they started with).
//!
//! Owns the choice: exact DNS name first, then a wildcard (`*.example.com`
//! covers exactly one more label), preferring a certificate whose key can
//! sign with a scheme the client offers; no SNI or no match gets the first
//! certificate (the default). ACME certificates come after the files'.
//! A ClientHello offering `acme-tls/1` is a TLS-ALPN-01 validation and gets
//! the challenge certificate or nothing. It must not read files itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use time::OffsetDateTime;

use super::acme::{Challenges, ACME_TLS_ALPN};
use super::error::{CertWarning, TlsError};
use super::load::LoadedCert;
use super::watch::{stamp, Stamp};
use super::CertSource;

/// The certificates of every source, in source order, then ACME's.
#[derive(Debug, Default)]
struct CertSet {
    groups: Vec<Arc<Vec<LoadedCert>>>,
    acme: Arc<Vec<LoadedCert>>,
}

impl CertSet {
    fn iter(&self) -> impl Iterator<Item = &LoadedCert> {
        self.groups
            .iter()
            .flat_map(|g| g.iter())
            .chain(self.acme.iter())
    }
}

/// The server's certificate resolver: give it to [`super::server_config`]
/// and to [`super::watch`].
#[derive(Debug)]
pub struct Resolver {
    sources: Vec<CertSource>,
    stamps: Vec<Stamp>,
    set: ArcSwap<CertSet>,
    reloaded: AtomicU64,
    failed: AtomicU64,
    /// Set when ACME answers TLS-ALPN-01 challenges here.
    challenges: Option<Arc<Challenges>>,
}

/// How many reloads the watcher made and how many failed (kept the old
/// certificates), since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReloadCounts {
    pub reloaded: u64,
    pub failed: u64,
}

impl Resolver {
    /// Loads every source; the first one that fails fails the whole (at
    /// start a broken certificate must stop hpgate, not serve a wrong one).
    pub fn new(sources: Vec<CertSource>) -> Result<Resolver, TlsError> {
        let stamps = sources.iter().map(stamp).collect();
        let groups = sources
            .iter()
            .map(|s| s.load().map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Resolver {
            sources,
            stamps,
            set: ArcSwap::from_pointee(CertSet {
                groups,
                acme: Arc::default(),
            }),
            reloaded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            challenges: None,
        })
    }

    /// Answers TLS-ALPN-01 validations with `challenges`' certificates.
    pub fn with_challenges(mut self, challenges: Arc<Challenges>) -> Resolver {
        self.challenges = Some(challenges);
        self
    }

    /// Whether TLS-ALPN-01 validations are answered (then the server's
    /// ALPN list offers `acme-tls/1`).
    pub fn answers_challenges(&self) -> bool {
        self.challenges.is_some()
    }

    /// Swaps in the ACME certificates.
    pub(crate) fn set_acme(&self, certs: Vec<LoadedCert>) {
        let certs = Arc::new(certs);
        self.set.rcu(|old| CertSet {
            groups: old.groups.clone(),
            acme: certs.clone(),
        });
    }

    pub fn sources(&self) -> &[CertSource] {
        &self.sources
    }

    /// The sources' file stamps as they were just before loading.
    pub(crate) fn initial_stamps(&self) -> &[Stamp] {
        &self.stamps
    }

    /// Every certificate now served, the default first (for metrics: names,
    /// notAfter, file).
    pub fn certificates(&self) -> Vec<LoadedCert> {
        self.set.load().iter().cloned().collect()
    }

    /// Every certificate served, by a bounded name, with its notAfter in
    /// Unix seconds (for metrics; read live, so reloads and ACME renewals
    /// show at once). The name is the first DNS name, else `source<N>` (the
    /// entry's index) or `acme`.
    pub fn expiries(&self) -> Vec<(String, i64)> {
        let set = self.set.load();
        let named = |c: &LoadedCert, fallback: &dyn Fn() -> String| {
            let name = c.names.first().cloned().unwrap_or_else(fallback);
            (name, c.not_after.unix_timestamp())
        };
        let files = set
            .groups
            .iter()
            .enumerate()
            .flat_map(|(i, g)| g.iter().map(move |c| named(c, &|| format!("source{i}"))));
        let acme = set.acme.iter().map(|c| named(c, &|| "acme".into()));
        files.chain(acme).collect()
    }

    /// Expired and soon-expiring certificates at `now`.
    pub fn warnings(&self, now: OffsetDateTime) -> Vec<CertWarning> {
        let set = self.set.load();
        set.iter().filter_map(|c| c.expiry_warning(now)).collect()
    }

    pub fn reload_counts(&self) -> ReloadCounts {
        ReloadCounts {
            reloaded: self.reloaded.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn count_failure(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Swaps in new certificates for source `index`; handshakes in flight
    /// finish with the set they started with.
    pub(crate) fn replace(&self, index: usize, certs: Vec<LoadedCert>) {
        self.set.rcu(|old| {
            let mut groups = old.groups.clone();
            if let Some(slot) = groups.get_mut(index) {
                *slot = Arc::new(certs.clone());
            }
            CertSet {
                groups,
                acme: old.acme.clone(),
            }
        });
        self.reloaded.fetch_add(1, Ordering::Relaxed);
    }

    /// The certificate for `sni` given the client's signature schemes.
    pub fn choose(
        &self,
        sni: Option<&str>,
        schemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let set = self.set.load();
        let usable =
            |c: &&&LoadedCert| schemes.is_empty() || c.key.key.choose_scheme(schemes).is_some();
        let pick = |matches: &dyn Fn(&LoadedCert) -> bool| {
            let found: Vec<&LoadedCert> = set.iter().filter(|c| matches(c)).collect();
            let best = found.iter().find(usable).or(found.first());
            best.map(|c| c.key.clone())
        };
        if let Some(sni) = sni.map(|s| s.trim_end_matches('.').to_ascii_lowercase()) {
            let exact = pick(&|c| c.names.contains(&sni));
            let hit = exact.or_else(|| pick(&|c| c.names.iter().any(|n| wildcard_covers(n, &sni))));
            if hit.is_some() {
                return hit;
            }
        }
        pick(&|_| true)
    }
}

/// `*.example.com` covers `a.example.com`, not `example.com` nor
/// `a.b.example.com`.
fn wildcard_covers(pattern: &str, host: &str) -> bool {
    let Some(base) = pattern.strip_prefix("*.") else {
        return false;
    };
    host.split_once('.')
        .is_some_and(|(label, rest)| !label.is_empty() && rest == base)
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(challenges) = &self.challenges {
            let validation = hello
                .alpn()
                .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
            if validation {
                return hello.server_name().and_then(|n| challenges.tls_cert(n));
            }
        }
        self.choose(hello.server_name(), hello.signature_schemes())
    }
}

#[cfg(test)]
mod tests {
    use super::wildcard_covers;

    #[test]
    fn wildcard_covers_one_label() {
        assert!(wildcard_covers("*.example.com", "a.example.com"));
        assert!(!wildcard_covers("*.example.com", "example.com"));
        assert!(!wildcard_covers("*.example.com", "a.b.example.com"));
        assert!(!wildcard_covers("*.example.com", ".example.com"));
        assert!(!wildcard_covers("a.example.com", "a.example.com"));
    }
}
