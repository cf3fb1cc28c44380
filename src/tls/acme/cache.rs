//! The ACME cache folder: per ACME server (a folder named after its
//! directory URL) the account (`account.json`: its id and private key) and
//! per set of names a certificate chain (`NAMES/cert.pem`) and its key
//! (`NAMES/key.pem`). Files are written whole (temporary file, then
//! rename) and, on Unix, readable by the owner only (0600).
//!
//! Owns the layout and the file writes. Must not talk to the ACME server.

use std::io::Write;
use std::path::{Path, PathBuf};

use instant_acme::AccountCredentials;

use super::AcmeError;

#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// A URL or a list of names as one safe folder name.
fn slug(s: &str) -> String {
    let s = s.strip_prefix("https://").unwrap_or(s);
    s.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' => c,
            _ => '_',
        })
        .collect()
}

impl Cache {
    /// The cache of the ACME server at `directory` under `root`.
    pub fn new(root: &Path, directory: &str) -> Cache {
        Cache {
            dir: root.join(slug(directory)),
        }
    }

    pub fn account_file(&self) -> PathBuf {
        self.dir.join("account.json")
    }

    /// The certificate chain and key files for `names`.
    pub fn cert_files(&self, names: &[String]) -> (PathBuf, PathBuf) {
        let dir = self.dir.join(slug(&names.join("+")));
        (dir.join("cert.pem"), dir.join("key.pem"))
    }

    /// The saved account, None when there is none yet.
    pub fn load_account(&self) -> Result<Option<AccountCredentials>, AcmeError> {
        let path = self.account_file();
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(AcmeError::Read(path, e.to_string())),
        };
        serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| AcmeError::Read(path, e.to_string()))
    }

    pub fn save_account(&self, creds: &AccountCredentials) -> Result<(), AcmeError> {
        let path = self.account_file();
        let json = serde_json::to_vec_pretty(creds)
            .map_err(|e| AcmeError::Write(path.clone(), e.to_string()))?;
        write_private(&path, &json)
    }

    pub fn save_cert(&self, names: &[String], chain: &str, key: &str) -> Result<(), AcmeError> {
        let (cert_file, key_file) = self.cert_files(names);
        // The key first: a chain without its key is never left behind.
        write_private(&key_file, key.as_bytes())?;
        write_private(&cert_file, chain.as_bytes())
    }
}

/// Writes `data` to `path` through a temporary file, owner-only on Unix.
fn write_private(path: &Path, data: &[u8]) -> Result<(), AcmeError> {
    let fail = |e: std::io::Error| AcmeError::Write(path.to_path_buf(), e.to_string());
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(fail)?;
    file.write_all(data).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_per_server_and_names() {
        let c = Cache::new(
            Path::new("/c"),
            "https://acme-v02.api.letsencrypt.org/directory",
        );
        assert_eq!(
            c.account_file(),
            Path::new("/c/acme-v02.api.letsencrypt.org_directory/account.json")
        );
        let (cert, key) = c.cert_files(&["a.example".into(), "b.example".into()]);
        assert!(cert.ends_with("a.example_b.example/cert.pem"));
        assert!(key.ends_with("a.example_b.example/key.pem"));
    }

    #[cfg(unix)]
    #[test]
    fn files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("hpgate-acme-cache-{}", std::process::id()));
        let c = Cache::new(&dir, "https://x/dir");
        c.save_cert(&["a.example".into()], "chain", "key").unwrap();
        let (cert, key) = c.cert_files(&["a.example".into()]);
        for f in [cert, key] {
            let mode = std::fs::metadata(&f).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", f.display());
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
