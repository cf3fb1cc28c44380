//! Every way a certificate source can fail to load, each message naming the
//! file and the fix (docs/tls.md lists them), plus the expiry warning.

use std::path::PathBuf;

use time::OffsetDateTime;

/// A certificate source that could not be loaded. The message names the
/// file and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}; check the path and that hpgate's account may read it", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is neither PEM (`-----BEGIN ...-----` blocks) nor DER: {detail}; export it again as PEM (a .pfx/.p12 file goes in the pfx form)", path.display())]
    NotPemOrDer { path: PathBuf, detail: String },
    #[error("{} holds no certificate (no `-----BEGIN CERTIFICATE-----` block){hint}; point the certificate at the chain file (certbot: fullchain.pem)", path.display())]
    NoCertificate { path: PathBuf, hint: &'static str },
    #[error("{} holds a certificate hpgate cannot parse: {detail}; export it again", path.display())]
    BadCertificate { path: PathBuf, detail: String },
    #[error("{} holds no private key (no `-----BEGIN PRIVATE KEY-----`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block){hint}; point the key at the private key file (certbot: privkey.pem)", path.display())]
    NoKey { path: PathBuf, hint: &'static str },
    #[error("{} holds an encrypted private key; hpgate needs an unencrypted key; convert with `openssl pkey -in {} -out key.pem` (it asks for the password) and protect key.pem with file permissions", path.display(), path.display())]
    EncryptedKey { path: PathBuf },
    #[error("{} holds an unsupported private key ({detail}); use RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519", path.display())]
    UnsupportedKey { path: PathBuf, detail: String },
    #[error("the private key in {} does not match the certificate in {}; pair each certificate with the key it was issued for (certbot: fullchain.pem with privkey.pem of the same folder)", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("wrong password for {}{hint}; set the password the PFX was exported with", path.display())]
    PfxPassword { path: PathBuf, hint: &'static str },
    #[error("{} is not a PFX/PKCS#12 file hpgate can read ({detail}); export it again (certlm.msc > Export, or Export-PfxCertificate)", path.display())]
    Pfx { path: PathBuf, detail: String },
    #[error("{} holds no private key with its certificate; export it again choosing \"Yes, export the private key\"", path.display())]
    PfxNoKey { path: PathBuf },
    #[error("{} holds no certificate: expected `NAME.crt`/`NAME.pem` with `NAME.key`, `fullchain.pem` with `privkey.pem` in a subfolder, or `*.pfx`/`*.p12` files", path.display())]
    EmptyFolder { path: PathBuf },
}

impl TlsError {
    /// The file the error is about (the key file for a mismatch).
    pub fn path(&self) -> &std::path::Path {
        match self {
            Self::Read { path, .. }
            | Self::NotPemOrDer { path, .. }
            | Self::NoCertificate { path, .. }
            | Self::BadCertificate { path, .. }
            | Self::NoKey { path, .. }
            | Self::EncryptedKey { path }
            | Self::UnsupportedKey { path, .. }
            | Self::PfxPassword { path, .. }
            | Self::Pfx { path, .. }
            | Self::PfxNoKey { path }
            | Self::EmptyFolder { path } => path,
            Self::KeyMismatch { key, .. } => key,
        }
    }
}

/// Certificates expiring within this many days get a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// A certificate that loads but is expired or about to be: served anyway,
/// reported so that someone renews it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertWarning {
    #[error("the certificate in {} expired on {not_after}; clients reject it: renew it", file.display())]
    Expired {
        file: PathBuf,
        not_after: OffsetDateTime,
    },
    #[error("the certificate in {} expires on {not_after} (in {days} days); renew it", file.display())]
    ExpiresSoon {
        file: PathBuf,
        not_after: OffsetDateTime,
        days: i64,
    },
}
