use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::{tempdir, write_pair, Ca};
use crate::tls::{install_provider, server_config, CertSource, Resolver};

fn client(ca: &Ca, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone().into()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(cfg))
}

#[tokio::test]
async fn real_handshakes_get_the_certificate_of_their_name_and_alpn() {
    install_provider();
    install_provider(); // idempotent
    let dir = tempdir();
    let ca = Ca::new();
    let (a, b) = (ca.leaf(&["a.example.com"]), ca.leaf(&["b.example.com"]));
    let (ac, ak) = write_pair(&dir.0, "a", &a);
    let (bc, bk) = write_pair(&dir.0, "b", &b);
    let sources = vec![
        CertSource::Pem { cert: ac, key: ak },
        CertSource::Pem { cert: bc, key: bk },
    ];
    let resolver = Arc::new(Resolver::new(sources).expect("loads"));
    let acceptor = TlsAcceptor::from(Arc::new(server_config(resolver)));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut tls = acceptor.accept(tcp).await.expect("server handshake");
                let mut byte = [0u8; 1];
                tls.read_exact(&mut byte).await.expect("read");
                tls.write_all(&byte).await.expect("echo");
                tls.shutdown().await.ok();
            });
        }
    });

    // (SNI, ALPN offered, ALPN wanted, certificate wanted)
    type Case<'a> = (&'a str, &'a [&'a [u8]], &'a [u8], &'a [u8]);
    let cases: [Case; 2] = [
        ("a.example.com", &[b"h2", b"http/1.1"], b"h2", &a.der),
        ("b.example.com", &[b"http/1.1"], b"http/1.1", &b.der),
    ];
    for (name, offered, want_alpn, want_cert) in cases {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let sni = ServerName::try_from(name.to_string()).expect("name");
        let mut tls = client(&ca, offered)
            .connect(sni, tcp)
            .await
            .expect("client handshake");
        let (_, conn) = tls.get_ref();
        assert_eq!(conn.alpn_protocol(), Some(want_alpn), "{name}");
        let served = conn.peer_certificates().expect("certs")[0]
            .as_ref()
            .to_vec();
        assert_eq!(served, want_cert, "{name}");
        tls.write_all(b"x").await.expect("write");
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.expect("echo");
        assert_eq!(&byte, b"x");
    }
}
