use std::sync::Arc;

use rustls::sign::CertifiedKey;

use super::{tempdir, write_pair, Ca, Leaf};
use crate::tls::{CertSource, Resolver};

fn leaf_of(k: Option<Arc<CertifiedKey>>) -> Vec<u8> {
    k.expect("a certificate").cert[0].as_ref().to_vec()
}

#[test]
fn sni_picks_exact_then_wildcard_else_the_default() {
    let dir = tempdir();
    let ca = Ca::new();
    let leaves: Vec<Leaf> = vec![
        ca.leaf(&["default.example.com"]),
        ca.leaf(&["a.example.com"]),
        ca.leaf(&["*.w.example.com"]),
        ca.leaf(&["exact.w.example.com"]),
    ];
    let sources = leaves
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let (cert, key) = write_pair(&dir.0, &format!("c{i}"), l);
            CertSource::Pem { cert, key }
        })
        .collect();
    let r = Resolver::new(sources).expect("loads");
    let pick = |sni: Option<&str>| leaf_of(r.choose(sni, &[]));
    assert_eq!(pick(Some("a.example.com")), leaves[1].der);
    assert_eq!(
        pick(Some("A.Example.COM.")),
        leaves[1].der,
        "case and root dot"
    );
    assert_eq!(pick(Some("x.w.example.com")), leaves[2].der, "wildcard");
    assert_eq!(
        pick(Some("exact.w.example.com")),
        leaves[3].der,
        "exact beats wildcard"
    );
    assert_eq!(
        pick(Some("w.example.com")),
        leaves[0].der,
        "wildcard needs a label"
    );
    assert_eq!(
        pick(Some("a.b.w.example.com")),
        leaves[0].der,
        "one label only"
    );
    assert_eq!(
        pick(Some("unknown.test")),
        leaves[0].der,
        "no match: default"
    );
    assert_eq!(pick(None), leaves[0].der, "no SNI: default");
    assert_eq!(r.certificates().len(), 4);
}

#[test]
fn a_broken_source_fails_the_start() {
    let dir = tempdir();
    let ca = Ca::new();
    let (cert, key) = write_pair(&dir.0, "a", &ca.leaf(&["a.example.com"]));
    let bad = CertSource::Pem {
        cert: cert.clone(),
        key: dir.0.join("missing.key"),
    };
    let e = Resolver::new(vec![CertSource::Pem { cert, key }, bad]).expect_err("fails");
    assert!(e.to_string().contains("missing.key"), "{e}");
}
