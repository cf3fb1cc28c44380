//! The answers to the ACME server's challenges while an order is open:
//! HTTP-01 key authorizations by token (the plain listener's service asks)
//! and TLS-ALPN-01 certificates by name (the resolver asks when a
//! ClientHello offers `acme-tls/1`).
//!
//! Owns the in-memory maps and the RFC 8737 challenge certificate. Must not
//! talk to the ACME server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::crypto::ring::sign::any_supported_type;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Challenge answers, shared by the ACME task, the resolver and the service.
#[derive(Debug, Default)]
pub struct Challenges {
    http: Mutex<HashMap<String, String>>,
    tls: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

// A poisoned map only means a panic elsewhere mid-insert; the map is whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Challenges {
    /// The key authorization for an HTTP-01 `token`.
    pub fn http_answer(&self, token: &str) -> Option<String> {
        lock(&self.http).get(token).cloned()
    }

    /// The TLS-ALPN-01 certificate for `name`.
    pub fn tls_cert(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        lock(&self.tls).get(&name).cloned()
    }

    pub(crate) fn set_http(&self, token: String, key_authorization: String) {
        lock(&self.http).insert(token, key_authorization);
    }

    pub(crate) fn set_tls(&self, name: String, cert: Arc<CertifiedKey>) {
        lock(&self.tls).insert(name, cert);
    }

    pub(crate) fn clear(&self) {
        lock(&self.http).clear();
        lock(&self.tls).clear();
    }
}

/// The self-signed certificate for `name` carrying the acmeIdentifier
/// extension with `digest` (SHA-256 of the key authorization).
pub fn alpn_cert(name: &str, digest: &[u8]) -> Result<CertifiedKey, String> {
    let mut params = CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
    params
        .custom_extensions
        .push(CustomExtension::new_acme_identifier(digest));
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer = any_supported_type(&der).map_err(|e| e.to_string())?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signer))
}
