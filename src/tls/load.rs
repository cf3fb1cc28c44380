//! Loads one certificate with its key from PEM/DER files or a PFX file into
//! a [`LoadedCert`]: the rustls `CertifiedKey` plus what the resolver and
//! the metrics need (DNS names, notAfter).
//!
//! Owns file parsing and the checks that give each bad input its own error.
//! It must not watch files or choose between certificates.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use p12_keystore::{KeyStore, Pkcs12ImportPolicy};
use rustls::crypto::ring::sign::any_supported_type;
use rustls::sign::CertifiedKey;
use rustls::InconsistentKeys;
use rustls_pki_types::pem::{self, PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;

use super::error::{CertWarning, TlsError, EXPIRY_WARNING_DAYS};

/// One certificate ready to serve.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// DNS names (subjectAltName; the subject CN when there is none),
    /// lower case, wildcards kept as `*.example.com`.
    pub names: Vec<String>,
    /// The leaf certificate's notAfter.
    pub not_after: OffsetDateTime,
    /// The certificate file (or the PFX file) it came from.
    pub file: PathBuf,
}

impl LoadedCert {
    /// A warning when the certificate is expired at `now` or expires within
    /// [`EXPIRY_WARNING_DAYS`].
    pub fn expiry_warning(&self, now: OffsetDateTime) -> Option<CertWarning> {
        let left = self.not_after - now;
        if left.is_negative() {
            return Some(CertWarning::Expired {
                file: self.file.clone(),
                not_after: self.not_after,
            });
        }
        (left.whole_days() < EXPIRY_WARNING_DAYS).then(|| CertWarning::ExpiresSoon {
            file: self.file.clone(),
            not_after: self.not_after,
            days: left.whole_days(),
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn is_pem(data: &[u8]) -> bool {
    contains(data, b"-----BEGIN ")
}

fn contains(data: &[u8], needle: &[u8]) -> bool {
    data.windows(needle.len()).any(|w| w == needle)
}

/// Every recognised PEM section of `data`, in order.
fn pem_sections(path: &Path, data: &[u8]) -> Result<Vec<(SectionKind, Vec<u8>)>, TlsError> {
    let mut rd = data;
    let mut out = Vec::new();
    loop {
        match pem::from_buf(&mut rd) {
            Ok(Some(section)) => out.push(section),
            Ok(None) => return Ok(out),
            Err(e) => {
                return Err(TlsError::NotPemOrDer {
                    path: path.to_path_buf(),
                    detail: pem_error(&e),
                })
            }
        }
    }
}

fn pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "the `{}` block has no END line (file cut short?)",
            String::from_utf8_lossy(end_marker)
        ),
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed".into(),
        pem::Error::Base64Decode(_) => "a block's base64 content is damaged".into(),
        other => other.to_string(),
    }
}

fn has_key(sections: &[(SectionKind, Vec<u8>)]) -> bool {
    sections.iter().any(|(k, _)| {
        matches!(
            k,
            SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
        )
    })
}

/// The certificate chain of a PEM or DER file, leaf first.
pub(crate) fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = read(path)?;
    if !is_pem(&data) {
        return match x509_parser::parse_x509_certificate(&data) {
            Ok(_) => Ok(vec![CertificateDer::from(data)]),
            Err(e) => Err(TlsError::NotPemOrDer {
                path: path.to_path_buf(),
                detail: format!("no BEGIN line, and not a DER certificate ({e})"),
            }),
        };
    }
    let sections = pem_sections(path, &data)?;
    let chain: Vec<_> = sections
        .iter()
        .filter(|(k, _)| *k == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der.clone()))
        .collect();
    if chain.is_empty() {
        let hint = if has_key(&sections) {
            " (it holds a private key: are the certificate and key swapped?)"
        } else {
            ""
        };
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
            hint,
        });
    }
    Ok(chain)
}

/// The private key of a PEM or DER file (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub(crate) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = read(path)?;
    if contains(&data, b"ENCRYPTED PRIVATE KEY") || contains(&data, b"Proc-Type: 4,ENCRYPTED") {
        return Err(TlsError::EncryptedKey {
            path: path.to_path_buf(),
        });
    }
    if !is_pem(&data) {
        return PrivateKeyDer::try_from(data).map_err(|e| TlsError::NotPemOrDer {
            path: path.to_path_buf(),
            detail: format!("no BEGIN line, and not a DER private key ({e})"),
        });
    }
    let sections = pem_sections(path, &data)?;
    let key = sections
        .into_iter()
        .find_map(|(kind, der)| PrivateKeyDer::from_pem(kind, der));
    key.ok_or_else(|| TlsError::NoKey {
        path: path.to_path_buf(),
        hint: if contains(&data, b"-----BEGIN CERTIFICATE-----") {
            " (it holds a certificate: are the certificate and key swapped?)"
        } else {
            ""
        },
    })
}

/// Loads a PEM (or DER) certificate chain and its private key.
pub fn load_pem(cert: &Path, key: &Path) -> Result<LoadedCert, TlsError> {
    let chain = read_chain(cert)?;
    let key_der = read_key(key)?;
    certify(chain, key_der, cert, key)
}

/// Loads a PFX/PKCS#12 file (as IIS exports them). No password means the
/// empty one.
pub fn load_pfx(path: &Path, password: Option<&str>) -> Result<LoadedCert, TlsError> {
    let data = read(path)?;
    let store = KeyStore::from_pkcs12(&data, password.unwrap_or(""), Pkcs12ImportPolicy::Strict)
        .map_err(|e| pfx_error(path, password, e))?;
    let Some((_, chain)) = store.private_key_chain() else {
        return Err(TlsError::PfxNoKey {
            path: path.to_path_buf(),
        });
    };
    let certs = chain
        .certs()
        .iter()
        .map(|c| CertificateDer::from(c.as_der().to_vec()))
        .collect();
    let key = PrivatePkcs8KeyDer::from(chain.key().as_der().to_vec()).into();
    certify(certs, key, path, path)
}

fn pfx_error(path: &Path, password: Option<&str>, e: p12_keystore::error::Error) -> TlsError {
    match e {
        p12_keystore::error::Error::MacError(_) => TlsError::PfxPassword {
            path: path.to_path_buf(),
            hint: if password.is_none() {
                " (no password was given, the file needs one)"
            } else {
                ""
            },
        },
        other => TlsError::Pfx {
            path: path.to_path_buf(),
            detail: other.to_string(),
        },
    }
}

/// Pairs chain and key, checks they belong together, reads names and expiry.
fn certify(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_file: &Path,
    key_file: &Path,
) -> Result<LoadedCert, TlsError> {
    let (names, not_after) = leaf_facts(cert_file, &chain[0])?;
    let signer = any_supported_type(&key).map_err(|e| TlsError::UnsupportedKey {
        path: key_file.to_path_buf(),
        detail: e.to_string(),
    })?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(TlsError::KeyMismatch {
                cert: cert_file.to_path_buf(),
                key: key_file.to_path_buf(),
            })
        }
    }
    Ok(LoadedCert {
        key: Arc::new(certified),
        names,
        not_after,
        file: cert_file.to_path_buf(),
    })
}

/// The DNS names and notAfter of the leaf certificate.
fn leaf_facts(
    path: &Path,
    leaf: &CertificateDer<'_>,
) -> Result<(Vec<String>, OffsetDateTime), TlsError> {
    let bad = |detail: String| TlsError::BadCertificate {
        path: path.to_path_buf(),
        detail,
    };
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| bad(e.to_string()))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        let cn = cert.subject().iter_common_name().next();
        if let Some(cn) = cn.and_then(|a| a.as_str().ok()) {
            names.push(cn.to_ascii_lowercase());
        }
    }
    Ok((names, cert.validity().not_after.to_datetime()))
}
