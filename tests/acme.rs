//! ACME against a real pebble (Let's Encrypt's test server, Debian's
//! `pebble` package; scripts/setup installs it): hpgate obtains a
//! certificate by TLS-ALPN-01 and by HTTP-01, serves it by SNI, keeps it in
//! its cache (owner-only files) and reuses it after a restart without a new
//! order, and renews a short-lived one. Pebble's VA resolves `localhost`
//! from /etc/hosts and connects to the fixed ports hpgate listens on.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use support::{free_port, wait_until, Gateway, Site};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and, signed by it, the certificate of pebble's own HTTPS API.
fn pebble_api_cert(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=hpgate test CA",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "api.key",
            "-out",
            "api.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "api.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "api.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

/// A pebble and the ports it sends its validations to.
struct Pebble {
    child: Child,
    dir: PathBuf,
    api: u16,
    mgmt: u16,
    log: PathBuf,
}

impl Pebble {
    fn start(dir: &Path, http_port: u16, tls_port: u16, validity: Option<u64>) -> Pebble {
        let pebble = Command::new("pebble").arg("-h").output();
        assert!(
            pebble.is_ok(),
            "pebble is not installed: run scripts/setup (apt-get install pebble)"
        );
        pebble_api_cert(dir);
        let (api, mgmt) = (free_port(), free_port());
        let validity = validity.map_or(String::new(), |s| {
            format!(",\"certificateValidityPeriod\": {s}")
        });
        let config = format!(
            r#"{{"pebble": {{"listenAddress": "127.0.0.1:{api}", "managementListenAddress": "127.0.0.1:{mgmt}",
            "certificate": "api.pem", "privateKey": "api.key", "httpPort": {http_port}, "tlsPort": {tls_port},
            "ocspResponderURL": "", "externalAccountBindingRequired": false{validity}}}}}"#
        );
        std::fs::write(dir.join("pebble.json"), config).unwrap();
        let log = dir.join("pebble.log");
        let child = Command::new("pebble")
            .args(["-config", "pebble.json", "-strict=false"])
            .current_dir(dir)
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_VA_ALWAYS_VALID", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble");
        let p = Pebble {
            child,
            dir: dir.to_path_buf(),
            api,
            mgmt,
            log,
        };
        let up = wait_until(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", api)).is_ok()
                && TcpStream::connect(("127.0.0.1", mgmt)).is_ok()
        });
        assert!(up, "pebble did not start: {}", p.logs());
        p
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.api)
    }

    /// Pebble's issuing root (GET /roots/0 on the management API).
    fn root(&self) -> Vec<u8> {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(self.dir.join("ca.pem"))
            .arg(format!("https://127.0.0.1:{}/roots/0", self.mgmt))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "GET /roots/0: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Handshakes with `localhost` as SNI, verifying the chain against
/// `root_pem`; Ok is the leaf's serial number (hex).
fn served_serial(addr: SocketAddr, root_pem: &[u8]) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls_pki_types::CertificateDer::pem_slice_iter(root_pem) {
        roots
            .add(der.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1];
    tls.read(&mut buf).map_err(|e| e.to_string())?;
    let leaf = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| e.to_string())?;
    Ok(cert.raw_serial_as_string())
}

use rustls_pki_types::pem::PemObject;

struct Setup {
    site: Site,
    pebble: Pebble,
    http: u16,
    https: u16,
}

fn setup(name: &str, validity: Option<u64>, settings: &[(&str, &str)]) -> Setup {
    let site = Site::new(name);
    site.testapp_config("echo", "", settings);
    let dir = site.path("pebble");
    std::fs::create_dir_all(&dir).unwrap();
    let (http, https) = (free_port(), free_port());
    let pebble = Pebble::start(&dir, http, https, validity);
    Setup {
        site,
        pebble,
        http,
        https,
    }
}

impl Setup {
    fn hpgate(&self, challenge: &str) -> Gateway {
        let (plain, tls) = (
            format!("127.0.0.1:{}", self.http),
            format!("https://127.0.0.1:{}", self.https),
        );
        let ca = self.pebble.dir.join("ca.pem");
        let dir = self.pebble.directory();
        let args = [
            "--listen",
            &plain,
            "--listen",
            &tls,
            "--acme-domain",
            "localhost",
            "--acme-email",
            "ops@example.com",
            "--acme-directory",
            &dir,
            "--acme-directory-ca",
            ca.to_str().unwrap(),
        ];
        Gateway::start_env(
            &self.site.path(""),
            &args,
            &[("HPGATE_ACME_CHALLENGE", challenge)],
        )
    }

    fn https_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.https))
    }

    fn cache_files(&self) -> (PathBuf, PathBuf, PathBuf) {
        let slug = format!("127.0.0.1_{}_dir", self.pebble.api);
        let base = self.site.path(".hpgate-acme").join(slug);
        (
            base.join("account.json"),
            base.join("localhost/cert.pem"),
            base.join("localhost/key.pem"),
        )
    }
}

fn wait_obtained(g: &Gateway, p: &Pebble, times: usize, within: Duration) {
    let ok = wait_until(within, || {
        g.logs()
            .matches("ACME: certificate for localhost obtained")
            .count()
            >= times
    });
    assert!(
        ok,
        "certificate not obtained {times} time(s); hpgate:\n{}\npebble:\n{}",
        g.logs(),
        p.logs()
    );
}

#[test]
fn tls_alpn_01_certificate_is_served_cached_and_reused() {
    let s = setup("acme-alpn", None, &[]);
    let root = s.pebble.root();
    let mut g = s.hpgate("tls-alpn-01");
    wait_obtained(&g, &s.pebble, 1, Duration::from_secs(60));
    assert!(g
        .logs()
        .contains("ordering a certificate for localhost (tls-alpn-01)"));
    let first = served_serial(s.https_addr(), &root)
        .expect("the served chain verifies against pebble's root");
    let (account, cert, key) = s.cache_files();
    for f in [&account, &cert, &key] {
        assert!(f.is_file(), "{} cached", f.display());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
    }
    assert_eq!(g.stop(Duration::from_secs(15)), Some(0));
    let orders = s.pebble.logs().matches("POST /order-plz").count();
    assert_eq!(orders, 1, "{}", s.pebble.logs());
    // Pebble really validated (PEBBLE_VA_ALWAYS_VALID=0) over acme-tls/1.
    assert!(
        g.wait_log(
            "ACME tls-alpn-01 validation answered",
            Duration::from_secs(5)
        ),
        "{}",
        g.logs()
    );

    // A restart serves the cached certificate and orders nothing.
    let g = s.hpgate("tls-alpn-01");
    assert!(
        g.wait_log(
            "ACME: using the cached certificate",
            Duration::from_secs(10)
        ),
        "{}",
        g.logs()
    );
    assert_eq!(
        served_serial(s.https_addr(), &root).expect("verifies"),
        first
    );
    assert!(!g.logs().contains("ACME: ordering"), "{}", g.logs());
    assert_eq!(s.pebble.logs().matches("POST /order-plz").count(), orders);
}

#[test]
fn http_01_short_lived_certificate_is_renewed() {
    // 30 s certificates: renewal is due after 20 s (two thirds). The
    // challenge is answered although plain HTTP redirects everything else.
    let s = setup("acme-http", Some(30), &[("httpsRedirect", "true")]);
    let root = s.pebble.root();
    let g = s.hpgate("http-01");
    wait_obtained(&g, &s.pebble, 1, Duration::from_secs(60));
    assert!(g
        .logs()
        .contains("ordering a certificate for localhost (http-01)"));
    let first = served_serial(s.https_addr(), &root).expect("verifies against pebble's root");
    wait_obtained(&g, &s.pebble, 2, Duration::from_secs(90));
    let second = served_serial(s.https_addr(), &root).expect("the renewed chain verifies");
    assert_ne!(first, second, "the renewed certificate is served");
    // The renewal reused the account.
    assert_eq!(s.pebble.logs().matches("POST /sign-me-up").count(), 1);
}

#[test]
fn without_a_certificate_tls_fails_cleanly_and_plain_http_works() {
    let site = Site::new("acme-none");
    site.testapp_config("echo", "", &[]);
    let https = free_port();
    let tls = format!("https://127.0.0.1:{https}");
    // An ACME server that is not there: hpgate keeps trying.
    let dir = format!("https://127.0.0.1:{}/dir", free_port());
    let g = Gateway::start(
        &site.path(""),
        &[
            "--listen",
            &tls,
            "--acme-domain",
            "localhost",
            "--acme-directory",
            &dir,
        ],
    );
    assert!(
        g.wait_log(
            "ACME: no certificate for localhost: ACME server",
            Duration::from_secs(20)
        ),
        "{}",
        g.logs()
    );
    assert!(
        g.wait_log("retrying in 60s", Duration::from_secs(5)),
        "{}",
        g.logs()
    );
    let err = served_serial(SocketAddr::from(([127, 0, 0, 1], https)), b"")
        .expect_err("no certificate to serve");
    // rustls's alert when the resolver has no certificate for the hello.
    assert!(err.contains("AccessDenied"), "{err}");
    assert_eq!(g.get("/").status, 200, "{}", g.logs());
}

#[test]
fn acme_configuration_errors_stop_the_start() {
    let site = Site::new("acme-config");
    site.testapp_config("echo", "", &[]);
    let run = |args: &[&str]| {
        let out = Command::new(support::hpgate_bin())
            .arg("run")
            .args(args)
            .current_dir(site.path(""))
            .env_remove("HPGATE_LISTEN")
            .env_remove("HPGATE_CONFIG")
            .stdin(Stdio::null())
            .output()
            .expect("run hpgate");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--listen", "127.0.0.1:0", "--acme-domain", "a.example"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("acmeDomains needs an https:// listener"),
        "{err}"
    );
    let (code, err) = run(&[
        "--listen",
        "https://127.0.0.1:0",
        "--acme-domain",
        "*.example.com",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("wildcard names need the DNS-01 challenge"),
        "{err}"
    );
}
