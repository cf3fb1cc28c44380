//! The ACME pieces that need no ACME server: the TLS-ALPN-01 certificate,
//! the challenge maps and the ALPN list (tests/acme.rs runs pebble).

use std::sync::Arc;

use crate::tls::acme::{alpn_cert, Challenges, ACME_TLS_ALPN};
use crate::tls::{server_config, Resolver};

/// RFC 8737 id-pe-acmeIdentifier.
const ACME_IDENTIFIER: &str = "1.3.6.1.5.5.7.1.31";

#[test]
fn alpn_certificate_carries_the_critical_acme_identifier() {
    let digest = [7u8; 32];
    let key = alpn_cert("a.example", &digest).expect("made");
    let (_, cert) = x509_parser::parse_x509_certificate(&key.cert[0]).expect("parses");
    let ext = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == ACME_IDENTIFIER)
        .expect("acmeIdentifier");
    assert!(ext.critical);
    // An OCTET STRING of the 32-byte digest.
    assert_eq!(&ext.value[..2], &[0x04, 32]);
    assert_eq!(&ext.value[2..], &digest);
    let san = cert.subject_alternative_name().expect("ok").expect("san");
    assert_eq!(
        format!("{:?}", san.value.general_names),
        "[DNSName(\"a.example\")]"
    );
}

#[test]
fn challenges_are_found_by_token_and_name_until_cleared() {
    let ch = Challenges::default();
    ch.set_http("tok".into(), "tok.thumb".into());
    let cert = Arc::new(alpn_cert("a.example", &[0; 32]).expect("made"));
    ch.set_tls("a.example".into(), cert);
    assert_eq!(ch.http_answer("tok").as_deref(), Some("tok.thumb"));
    assert_eq!(ch.http_answer("other"), None);
    assert!(ch.tls_cert("A.Example.").is_some());
    assert!(ch.tls_cert("b.example").is_none());
    ch.clear();
    assert_eq!(ch.http_answer("tok"), None);
    assert!(ch.tls_cert("a.example").is_none());
}

#[test]
fn acme_tls_1_is_offered_only_with_acme_on() {
    crate::tls::install_provider();
    let plain = Arc::new(Resolver::new(Vec::new()).expect("empty"));
    let cfg = server_config(plain);
    assert_eq!(cfg.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    let acme = Resolver::new(Vec::new())
        .expect("empty")
        .with_challenges(Arc::default());
    let cfg = server_config(Arc::new(acme));
    assert_eq!(
        cfg.alpn_protocols.last().map(Vec::as_slice),
        Some(ACME_TLS_ALPN)
    );
}
