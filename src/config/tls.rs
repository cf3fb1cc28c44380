//! Value types of the TLS settings: lists of certificate paths and the PFX
//! password, which never prints.
//!
//! Owns their syntax and display only; loading the files is `tls/`'s job.

use std::path::PathBuf;

use serde::{Serialize, Serializer};

use super::spec::SettingValue;

/// Paths given as a comma-separated list (a repeated flag is joined the
/// same way); relative ones resolve against the site root when used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathList(pub Vec<PathBuf>);

impl PathList {
    pub fn parse(raw: &str) -> PathList {
        PathList(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect(),
        )
    }
}

impl SettingValue for PathList {
    fn serialize_value<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
    fn show(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|p| p.display().to_string()).collect();
        parts.join(", ")
    }
}

/// DNS names given as a comma-separated list (a repeated flag is joined the
/// same way), lower case, without a trailing dot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameList(pub Vec<String>);

impl NameList {
    pub fn parse(raw: &str) -> Result<NameList, String> {
        let mut out: Vec<String> = Vec::new();
        for name in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name.starts_with("*.") {
                return Err(format!(
                    "{name}: wildcard names need the DNS-01 challenge, which hpgate does not do"
                ));
            }
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            };
            if name.len() > 253 || !name.split('.').all(label_ok) {
                return Err(format!("{name} is not a DNS name"));
            }
            if !out.contains(&name) {
                out.push(name);
            }
        }
        Ok(NameList(out))
    }
}

impl SettingValue for NameList {
    fn serialize_value<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
    fn show(&self) -> String {
        self.0.join(", ")
    }
}

/// A secret setting: `hpgate config` and logs show only whether it is set.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub Option<String>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.show())
    }
}

impl SettingValue for Secret {
    fn serialize_value<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.show().serialize(s)
    }
    fn show(&self) -> String {
        match self.0 {
            Some(_) => "(set)".into(),
            None => "(not set)".into(),
        }
    }
}
