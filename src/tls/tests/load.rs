use std::path::Path;

use time::OffsetDateTime;

use super::{openssl, tempdir, write, write_pair, Ca};
use crate::tls::{load_pem, load_pfx, CertSource, CertWarning, TlsError};

fn err_pem(cert: &Path, key: &Path) -> TlsError {
    load_pem(cert, key).expect_err("should fail")
}

#[test]
fn ecdsa_pem_chain_loads_with_names_and_expiry() {
    let dir = tempdir();
    let ca = Ca::new();
    let leaf = ca.leaf(&["a.example.com", "*.w.example.com"]);
    let (cert, key) = write_pair(&dir.0, "a", &leaf);
    let got = load_pem(&cert, &key).expect("loads");
    assert_eq!(got.names, ["a.example.com", "*.w.example.com"]);
    assert_eq!(got.key.cert.len(), 2, "leaf and CA");
    assert_eq!(got.key.cert[0].as_ref(), leaf.der.as_slice());
    assert_eq!(got.file, cert);
    let days = (got.not_after - OffsetDateTime::now_utc()).whole_days();
    assert!((363..=365).contains(&days), "{days}");
    assert_eq!(got.expiry_warning(OffsetDateTime::now_utc()), None);
}

#[test]
fn rsa_pkcs1_and_sec1_ec_keys_load() {
    let dir = tempdir();
    let subj = ["-subj", "/CN=x.example.com", "-days", "30"];
    openssl(
        &dir.0,
        &["genrsa", "-traditional", "-out", "rsa.key", "2048"],
    );
    let mut args = vec!["req", "-x509", "-key", "rsa.key", "-out", "rsa.crt"];
    args.extend(subj);
    openssl(&dir.0, &args);
    let rsa = std::fs::read_to_string(dir.0.join("rsa.key")).expect("read");
    assert!(rsa.contains("BEGIN RSA PRIVATE KEY"), "PKCS#1");
    let got = load_pem(&dir.0.join("rsa.crt"), &dir.0.join("rsa.key")).expect("rsa loads");
    assert_eq!(got.names, ["x.example.com"], "CN when there is no SAN");

    let ec = [
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-out",
        "ec.key",
    ];
    openssl(&dir.0, &ec);
    let mut args = vec!["req", "-x509", "-key", "ec.key", "-out", "ec.crt"];
    args.extend(subj);
    openssl(&dir.0, &args);
    let sec1 = std::fs::read_to_string(dir.0.join("ec.key")).expect("read");
    assert!(sec1.contains("BEGIN EC PRIVATE KEY"), "SEC1");
    load_pem(&dir.0.join("ec.crt"), &dir.0.join("ec.key")).expect("sec1 loads");
}

#[test]
fn der_certificate_and_key_load() {
    let dir = tempdir();
    let leaf = Ca::new().leaf(&["d.example.com"]);
    let (cert, key) = write_pair(&dir.0, "d", &leaf);
    openssl(
        &dir.0,
        &["x509", "-in", "d.crt", "-outform", "DER", "-out", "d.der"],
    );
    openssl(
        &dir.0,
        &["pkey", "-in", "d.key", "-outform", "DER", "-out", "dk.der"],
    );
    let got = load_pem(&dir.0.join("d.der"), &dir.0.join("dk.der")).expect("der loads");
    assert_eq!(got.names, ["d.example.com"]);
    drop((cert, key));
}

#[test]
fn unreadable_file_names_path_and_os_reason() {
    let dir = tempdir();
    let missing = dir.0.join("nope.crt");
    let e = err_pem(&missing, &dir.0.join("nope.key"));
    let msg = e.to_string();
    assert!(matches!(e, TlsError::Read { .. }), "{msg}");
    assert!(msg.contains(&*missing.to_string_lossy()), "{msg}");
    assert!(msg.contains("No such file"), "{msg}");
}

#[test]
fn garbage_is_neither_pem_nor_der() {
    let dir = tempdir();
    let leaf = Ca::new().leaf(&["a.example.com"]);
    let (cert, key) = write_pair(&dir.0, "a", &leaf);
    let junk = write(&dir.0, "junk.crt", "hello, not a certificate\n");
    let e = err_pem(&junk, &key);
    assert!(matches!(e, TlsError::NotPemOrDer { .. }), "{e}");
    assert!(e.to_string().contains("junk.crt is neither PEM"), "{e}");
    let e = err_pem(&cert, &junk);
    assert!(matches!(e, TlsError::NotPemOrDer { .. }), "{e}");
    let bogus = "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n";
    let bogus = write(&dir.0, "bogus.crt", bogus);
    let e = err_pem(&bogus, &key);
    assert!(matches!(e, TlsError::BadCertificate { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("bogus.crt holds a certificate hpgate cannot parse"),
        "{e}"
    );
    let cut = write(&dir.0, "cut.crt", &leaf.cert_pem[..100]);
    let e = err_pem(&cut, &key);
    assert!(e.to_string().contains("has no END line"), "{e}");
}

#[test]
fn swapped_files_say_no_certificate_and_no_key() {
    let dir = tempdir();
    let leaf = Ca::new().leaf(&["a.example.com"]);
    let (cert, key) = write_pair(&dir.0, "a", &leaf);
    let e = err_pem(&key, &cert);
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
    assert!(e.to_string().contains("a.key holds no certificate"), "{e}");
    assert!(e.to_string().contains("swapped"), "{e}");
    let e = err_pem(&cert, &cert);
    assert!(matches!(e, TlsError::NoKey { .. }), "{e}");
    assert!(e.to_string().contains("a.crt holds no private key"), "{e}");
    let csr_only = write(
        &dir.0,
        "other.pem",
        "-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n",
    );
    let e = err_pem(&csr_only, &key);
    assert!(matches!(e, TlsError::NoCertificate { hint: "", .. }), "{e}");
}

#[test]
fn encrypted_key_asks_for_conversion() {
    let dir = tempdir();
    let leaf = Ca::new().leaf(&["a.example.com"]);
    let (cert, _) = write_pair(&dir.0, "a", &leaf);
    let args = ["pkcs8", "-topk8", "-in", "a.key", "-out", "enc.key"];
    openssl(&dir.0, &[&args[..], &["-passout", "pass:secret"]].concat());
    let e = err_pem(&cert, &dir.0.join("enc.key"));
    assert!(matches!(e, TlsError::EncryptedKey { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("enc.key holds an encrypted private key"),
        "{msg}"
    );
    assert!(
        msg.contains("hpgate needs an unencrypted key; convert with `openssl pkey -in"),
        "{msg}"
    );
}

#[test]
fn key_of_another_certificate_is_a_mismatch_naming_the_key() {
    let dir = tempdir();
    let ca = Ca::new();
    let (cert, _) = write_pair(&dir.0, "a", &ca.leaf(&["a.example.com"]));
    let (_, other_key) = write_pair(&dir.0, "b", &ca.leaf(&["b.example.com"]));
    let e = err_pem(&cert, &other_key);
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("the private key in") && msg.contains("b.key"),
        "{msg}"
    );
    assert!(
        msg.contains("does not match the certificate in") && msg.contains("a.crt"),
        "{msg}"
    );
    assert_eq!(e.path(), other_key);
}

#[test]
fn unsupported_key_type_is_named() {
    let dir = tempdir();
    let (cert, _) = write_pair(&dir.0, "a", &Ca::new().leaf(&["a.example.com"]));
    openssl(
        &dir.0,
        &["genpkey", "-algorithm", "ed448", "-out", "ed448.key"],
    );
    let e = err_pem(&cert, &dir.0.join("ed448.key"));
    assert!(matches!(e, TlsError::UnsupportedKey { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("ed448.key holds an unsupported private key"),
        "{e}"
    );
}

#[test]
fn expired_and_expiring_certificates_load_with_a_warning() {
    let dir = tempdir();
    let ca = Ca::new();
    let now = OffsetDateTime::now_utc();
    let soon = ca.leaf_until(&["s.example.com"], now + time::Duration::days(5));
    let (cert, key) = write_pair(&dir.0, "s", &soon);
    let got = load_pem(&cert, &key).expect("loads anyway");
    match got.expiry_warning(now) {
        Some(CertWarning::ExpiresSoon { days: 4..=5, .. }) => {}
        other => panic!("{other:?}"),
    }
    let old = ca.leaf_until(&["o.example.com"], now - time::Duration::days(1));
    let (cert, key) = write_pair(&dir.0, "o", &old);
    let got = load_pem(&cert, &key).expect("loads anyway");
    let w = got.expiry_warning(now).expect("warning");
    assert!(matches!(w, CertWarning::Expired { .. }), "{w}");
    assert!(w.to_string().contains("o.crt expired on"), "{w}");
}

fn make_pfx(dir: &Path, name: &str, password: &str) -> std::path::PathBuf {
    let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
    let out = format!("{name}.pfx");
    let pass = format!("pass:{password}");
    let args = [
        "pkcs12", "-export", "-in", &crt, "-inkey", &key, "-out", &out,
    ];
    openssl(dir, &[&args[..], &["-passout", &pass]].concat());
    dir.join(out)
}

#[test]
fn pfx_loads_with_its_password_and_names_a_wrong_one() {
    let dir = tempdir();
    let leaf = Ca::new().leaf(&["p.example.com"]);
    write_pair(&dir.0, "p", &leaf);
    let pfx = make_pfx(&dir.0, "p", "s3cret");
    let got = load_pfx(&pfx, Some("s3cret")).expect("loads");
    assert_eq!(got.names, ["p.example.com"]);
    assert_eq!(got.key.cert[0].as_ref(), leaf.der.as_slice());
    assert_eq!(got.file, pfx);

    let e = load_pfx(&pfx, Some("wrong")).expect_err("wrong password");
    assert!(matches!(e, TlsError::PfxPassword { .. }), "{e}");
    assert!(
        e.to_string().contains("wrong password for") && e.to_string().contains("p.pfx"),
        "{e}"
    );
    let e = load_pfx(&pfx, None).expect_err("no password");
    assert!(e.to_string().contains("no password was given"), "{e}");
}

#[test]
fn pfx_as_older_windows_exports_it_loads() {
    // TripleDES-SHA1 key and certificate encryption with a SHA-1 MAC:
    // Export-PfxCertificate's default (CryptoAlgorithmOption TripleDES_SHA1).
    let dir = tempdir();
    let leaf = Ca::new().leaf(&["old.example.com"]);
    write_pair(&dir.0, "old", &leaf);
    let args = [
        "pkcs12", "-export", "-in", "old.crt", "-inkey", "old.key", "-out", "old.pfx",
    ];
    let legacy = [
        "-certpbe",
        "PBE-SHA1-3DES",
        "-keypbe",
        "PBE-SHA1-3DES",
        "-macalg",
        "sha1",
    ];
    openssl(
        &dir.0,
        &[&args[..], &legacy, &["-passout", "pass:pw"]].concat(),
    );
    let got = load_pfx(&dir.0.join("old.pfx"), Some("pw")).expect("loads");
    assert_eq!(got.key.cert[0].as_ref(), leaf.der.as_slice());
}

#[test]
fn pfx_without_key_or_not_a_pfx() {
    let dir = tempdir();
    write_pair(&dir.0, "n", &Ca::new().leaf(&["n.example.com"]));
    let args = [
        "pkcs12", "-export", "-nokeys", "-in", "n.crt", "-out", "n.pfx",
    ];
    openssl(&dir.0, &[&args[..], &["-passout", "pass:x"]].concat());
    let e = load_pfx(&dir.0.join("n.pfx"), Some("x")).expect_err("no key");
    assert!(matches!(e, TlsError::PfxNoKey { .. }), "{e}");
    assert!(e.to_string().contains("export the private key"), "{e}");
    let e = load_pfx(&dir.0.join("n.crt"), Some("x")).expect_err("not pfx");
    assert!(matches!(e, TlsError::Pfx { .. }), "{e}");
}

#[test]
fn folder_follows_the_naming_rule() {
    let dir = tempdir();
    let ca = Ca::new();
    let d = &dir.0;
    // certbot layout in a subfolder: cert.pem/chain.pem beside are ignored.
    let live = ca.leaf(&["live.example.com"]);
    write(d, "live.example.com/fullchain.pem", &live.cert_pem);
    write(d, "live.example.com/privkey.pem", &live.key_pem);
    write(d, "live.example.com/cert.pem", &live.cert_pem);
    write(d, "live.example.com/chain.pem", &ca.pem);
    write_pair(d, "b", &ca.leaf(&["b.example.com"]));
    write(d, "ca-only.crt", &ca.pem);
    write_pair(d, "p", &ca.leaf(&["p.example.com"]));
    make_pfx(d, "p", "pw");
    std::fs::remove_file(d.join("p.crt")).expect("rm");
    write(d, "p.password", "pw\n");
    let got = CertSource::Folder(d.clone()).load().expect("loads");
    let names: Vec<_> = got.iter().map(|c| c.names[0].as_str()).collect();
    assert_eq!(
        names,
        ["b.example.com", "p.example.com", "live.example.com"]
    );

    let empty = tempdir();
    write(&empty.0, "readme.txt", "nothing");
    let e = CertSource::Folder(empty.0.clone())
        .load()
        .expect_err("empty");
    assert!(matches!(e, TlsError::EmptyFolder { .. }), "{e}");
}

#[test]
fn pfx_password_never_reaches_debug_output() {
    let s = CertSource::Pfx {
        path: "a.pfx".into(),
        password: Some("s3cret".into()),
    };
    assert!(!format!("{s:?}").contains("s3cret"));
}
