//! Options set on each TCP connection hpgate accepts or opens to the app.
//!
//! Owns which socket options a connection gets and why: Nagle off (a
//! response head must not wait for an ACK), and on Linux the plain Reno
//! congestion control for a loopback peer. It must not read or write the
//! socket; `direct_io.rs` does.
//!
//! Why Reno on loopback: the kernel's default here is often BBR, which runs
//! its model (`bbr_main`) on every ACK and paces sends. On loopback there is
//! no link to model and no queue to spare, so that work buys nothing; a
//! profile of the proxy-bound benchmark put it at about 2.5% of hpgate's CPU
//! (docs/benchmarks.md, step 16). Connections from other hosts keep the
//! system's choice. Reno is built into every Linux kernel and every
//! process may select it, so the call does not fail in practice; if it
//! does, the connection keeps the default and nothing else changes.

use std::net::SocketAddr;

use tokio::net::TcpStream;

/// The congestion control a loopback connection is switched to.
#[cfg(target_os = "linux")]
const LOOPBACK_CONGESTION: &str = "reno";

/// Sets the options for a connection to or from `peer`. Failures are
/// ignored: each option only saves work, none is needed for correctness.
pub fn tune(stream: &TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    if is_loopback(peer) {
        loopback_congestion(stream);
    }
}

/// Loopback, including an IPv4 loopback address written as IPv6
/// (`::ffff:127.0.0.1`, what a dual-stack listener reports).
fn is_loopback(peer: SocketAddr) -> bool {
    peer.ip().to_canonical().is_loopback()
}

#[cfg(target_os = "linux")]
fn loopback_congestion(stream: &TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt::TcpCongestion};
    let name = std::ffi::OsString::from(LOOPBACK_CONGESTION);
    if let Err(e) = setsockopt(stream, TcpCongestion, &name) {
        tracing::debug!("loopback connection keeps its congestion control: {e}");
    }
}

#[cfg(not(target_os = "linux"))]
fn loopback_congestion(_stream: &TcpStream) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_told_apart_from_other_peers() {
        let at = |s: &str| is_loopback(s.parse().expect("address"));
        assert!(at("127.0.0.1:80"));
        assert!(at("127.8.9.10:80"));
        assert!(at("[::1]:80"));
        assert!(at("[::ffff:127.0.0.1]:80"));
        assert!(!at("10.0.0.1:80"));
        assert!(!at("[::ffff:10.0.0.1]:80"));
        assert!(!at("[2001:db8::1]:80"));
        assert!(!at("0.0.0.0:80"));
    }

    #[cfg(target_os = "linux")]
    fn congestion(stream: &TcpStream) -> String {
        use nix::sys::socket::{getsockopt, sockopt::TcpCongestion};
        let name = getsockopt(stream, TcpCongestion).expect("getsockopt");
        name.to_string_lossy().trim_end_matches('\0').to_string()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn both_ends_of_a_loopback_connection_get_reno_and_no_delay() {
        let (client, server) = crate::proxy::direct_io::tests::pair().await;
        for (stream, peer) in [
            (&client, server.local_addr()),
            (&server, client.local_addr()),
        ] {
            tune(stream, peer.expect("address"));
            assert_eq!(congestion(stream), LOOPBACK_CONGESTION);
            assert!(stream.nodelay().expect("nodelay"));
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_peer_elsewhere_keeps_the_systems_congestion_control() {
        use nix::sys::socket::{setsockopt, sockopt::TcpCongestion};
        let (client, _server) = crate::proxy::direct_io::tests::pair().await;
        // Start from something other than Reno, so that a tune which set
        // Reno regardless of the peer would be seen.
        for other in ["cubic", "bbr"] {
            if congestion(&client) == LOOPBACK_CONGESTION {
                let _ = setsockopt(&client, TcpCongestion, &other.into());
            }
        }
        let before = congestion(&client);
        if before == LOOPBACK_CONGESTION {
            // A kernel with Reno alone: nothing this test could tell apart.
            eprintln!("skipped: no congestion control but Reno can be set here");
            return;
        }
        tune(&client, "192.0.2.1:443".parse().expect("address"));
        assert_eq!(congestion(&client), before);
        assert!(client.nodelay().expect("nodelay"));
    }
}
