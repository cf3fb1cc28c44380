//! The certificate folder: which files in it make which certificate.
//!
//! The rule, looked at in the folder itself and in each of its direct
//! subfolders (certbot's `live/` has one per domain), in name order:
//! - a folder holding `fullchain.pem` and `privkey.pem` is one certificate
//!   (certbot's layout; its `cert.pem` and `chain.pem` are then ignored);
//! - otherwise every `NAME.crt` or `NAME.pem` with a `NAME.key` beside it
//!   is one certificate; a `.crt`/`.pem` without its `.key` is ignored
//!   (chain and CA files);
//! - every `NAME.pfx` / `NAME.p12` is one certificate, opened with the
//!   password in `NAME.password` when that file exists, else with none.
//!
//! Names starting with `.` are skipped. Owns the naming rule only; loading
//! is `load.rs`'s.

use std::path::{Path, PathBuf};

use super::error::TlsError;
use super::CertSource;

/// One certificate found in a folder, with every file it depends on
/// (watched for changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FolderEntry {
    pub source: CertSource,
    pub files: Vec<PathBuf>,
}

fn list(dir: &Path) -> Result<Vec<PathBuf>, TlsError> {
    let rd = std::fs::read_dir(dir).map_err(|source| TlsError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| !name(p).starts_with('.'))
        .collect();
    out.sort();
    Ok(out)
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn ext(p: &Path) -> String {
    p.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Every certificate of `dir` by the rule above.
pub(crate) fn scan(dir: &Path) -> Result<Vec<FolderEntry>, TlsError> {
    let top = list(dir)?;
    let mut out = scan_one(dir, &top);
    for sub in top.iter().filter(|p| p.is_dir()) {
        // An unreadable subfolder is skipped, not fatal: the others serve.
        if let Ok(files) = list(sub) {
            out.extend(scan_one(sub, &files));
        }
    }
    if out.is_empty() {
        return Err(TlsError::EmptyFolder {
            path: dir.to_path_buf(),
        });
    }
    Ok(out)
}

fn scan_one(dir: &Path, files: &[PathBuf]) -> Vec<FolderEntry> {
    let mut out = Vec::new();
    let (full, priv_) = (dir.join("fullchain.pem"), dir.join("privkey.pem"));
    let certbot = full.is_file() && priv_.is_file();
    if certbot {
        out.push(pem_entry(full, priv_));
    }
    for f in files.iter().filter(|f| f.is_file()) {
        match ext(f).as_str() {
            "crt" | "pem" if !certbot => {
                let key = f.with_extension("key");
                if key.is_file() {
                    out.push(pem_entry(f.clone(), key));
                }
            }
            "pfx" | "p12" => out.push(pfx_entry(f)),
            _ => {}
        }
    }
    out
}

fn pem_entry(cert: PathBuf, key: PathBuf) -> FolderEntry {
    FolderEntry {
        files: vec![cert.clone(), key.clone()],
        source: CertSource::Pem { cert, key },
    }
}

fn pfx_entry(path: &Path) -> FolderEntry {
    let pw_file = path.with_extension("password");
    let password = std::fs::read_to_string(&pw_file)
        .ok()
        .map(|s| s.trim_end_matches(['\r', '\n']).to_string());
    let mut files = vec![path.to_path_buf()];
    if password.is_some() {
        files.push(pw_file);
    }
    FolderEntry {
        source: CertSource::Pfx {
            path: path.to_path_buf(),
            password,
        },
        files,
    }
}
