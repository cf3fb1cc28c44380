use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{tempdir, wait_for, write, Ca};
use crate::tls::{watch_every, CertSource, ReloadCounts, Resolver};

const POLL: Duration = Duration::from_millis(50);

fn served(r: &Resolver) -> Vec<u8> {
    r.choose(None, &[]).expect("cert").cert[0].as_ref().to_vec()
}

/// Writes beside `target` and renames over it, as deploy tools do.
fn swap_in(target: &Path, content: &str) {
    let tmp = target.with_extension("new");
    std::fs::write(&tmp, content).expect("write");
    std::fs::rename(&tmp, target).expect("rename");
}

fn counts(r: &Resolver) -> ReloadCounts {
    r.reload_counts()
}

#[tokio::test]
async fn rename_swap_reloads_and_a_broken_file_keeps_the_old_certificate() {
    let dir = tempdir();
    let ca = Ca::new();
    let first = ca.leaf(&["a.example.com"]);
    let cert = write(&dir.0, "a.crt", &first.cert_pem);
    let key = write(&dir.0, "a.key", &first.key_pem);
    let r = Arc::new(
        Resolver::new(vec![CertSource::Pem {
            cert: cert.clone(),
            key: key.clone(),
        }])
        .expect("loads"),
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(watch_every(r.clone(), POLL, stop.clone()));

    let second = ca.leaf(&["a.example.com"]);
    swap_in(&key, &second.key_pem);
    swap_in(&cert, &second.cert_pem);
    wait_for("the second certificate", || served(&r) == second.der).await;
    assert!(counts(&r).reloaded >= 1);

    // (A slow machine may have caught the key swapped before the
    // certificate: count failures from here.)
    let before: ReloadCounts = counts(&r);
    swap_in(&cert, "-----BEGIN CERTIFICATE-----\ncut short\n");
    wait_for("the failed reload", || counts(&r).failed > before.failed).await;
    assert_eq!(served(&r), second.der, "still the previous certificate");

    let third = ca.leaf(&["a.example.com"]);
    swap_in(&key, &third.key_pem);
    swap_in(&cert, &third.cert_pem);
    wait_for("the third certificate", || served(&r) == third.der).await;
    stop.cancel();
    task.await.expect("watcher ends");
}

#[cfg(unix)]
#[tokio::test]
async fn symlink_swap_like_certbot_reloads() {
    use std::os::unix::fs::symlink;
    let dir = tempdir();
    let ca = Ca::new();
    let (one, two) = (ca.leaf(&["c.example.com"]), ca.leaf(&["c.example.com"]));
    write(&dir.0, "archive/fullchain1.pem", &one.cert_pem);
    write(&dir.0, "archive/privkey1.pem", &one.key_pem);
    write(&dir.0, "archive/fullchain2.pem", &two.cert_pem);
    write(&dir.0, "archive/privkey2.pem", &two.key_pem);
    let live = dir.0.join("live");
    std::fs::create_dir_all(live.join("c.example.com")).expect("mkdir");
    let link = |name: &str, target: &str| {
        let l = live.join("c.example.com").join(name);
        let tmp = l.with_extension("tmp");
        symlink(dir.0.join("archive").join(target), &tmp).expect("symlink");
        std::fs::rename(&tmp, &l).expect("rename link");
    };
    link("fullchain.pem", "fullchain1.pem");
    link("privkey.pem", "privkey1.pem");
    let r = Arc::new(Resolver::new(vec![CertSource::Folder(live.clone())]).expect("loads"));
    assert_eq!(served(&r), one.der);
    let stop = CancellationToken::new();
    let task = tokio::spawn(watch_every(r.clone(), POLL, stop.clone()));
    link("fullchain.pem", "fullchain2.pem");
    link("privkey.pem", "privkey2.pem");
    wait_for("the renewed certificate", || served(&r) == two.der).await;
    stop.cancel();
    task.await.expect("watcher ends");
}
