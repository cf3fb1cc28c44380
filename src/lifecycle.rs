//! hpgate's life: load the configuration, bind, start the supervisor and
//! the server, wait for a stop signal, shut down in order.
//!
//! Shutdown order: stop accepting, let in-flight requests finish, close
//! WebSockets with 1001, stop the app processes (stop signal, then kill).
//! All of it shares one deadline, shutdownTimeLimit after the signal; past
//! it the app still gets a moment between the stop signal and the kill.
//! A second signal exits at once; the OS guards still take the app
//! processes down with hpgate.
//! The stop signal is a cancellation token passed down, not global state.
//!
//! Under systemd (`Type=notify`) it also says READY=1 once the app answers,
//! RELOADING=1 / READY=1 around a SIGHUP reload, STOPPING=1 on a stop
//! signal, and WATCHDOG=1 every half WATCHDOG_USEC; and with socket
//! activation it serves on the passed sockets instead of binding.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::admin;
use crate::config::{self, Config, Sources};
use crate::proxy::{self, websocket, Endpoint, Gateway};
use crate::signals::{Hangup, Signals};
use crate::supervisor::{watch_files, Supervisor};
use crate::systemd::{Passed, Systemd};
use crate::tls;

/// `hpgate config`: print the effective configuration or the errors.
pub fn print_config(sources: &Sources) -> ExitCode {
    match config::load(sources, &config::expand_lookup) {
        Ok(cfg) => match serde_json::to_string_pretty(&cfg) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot render the configuration: {e}");
                ExitCode::FAILURE
            }
        },
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::from(2)
        }
    }
}

/// `hpgate run`.
pub fn run(sources: Sources) -> ExitCode {
    run_until(sources, CancellationToken::new())
}

/// `hpgate run` that also stops, the same graceful way as on a stop
/// signal, when `request` is cancelled (the Windows service's Stop).
pub fn run_until(sources: Sources, request: CancellationToken) -> ExitCode {
    let cfg = match config::load(&sources, &config::expand_lookup) {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = cfg.check_runnable() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    // Before any thread starts: reading systemd's variables removes them.
    let systemd = match Systemd::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    crate::logging::init(cfg.log_format);
    let mut builder = runtime_builder(cfg.worker_threads);
    builder.enable_all();
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(cfg, sources, systemd, request))
}

/// One worker thread: a current-thread runtime, the main thread serving
/// everything like one nginx worker (no work-stealing queues, no wake-ups
/// across threads: a request's tasks wake each other on the same thread;
/// docs/benchmarks.md). More: the work-stealing runtime with that many
/// workers (0: one per CPU).
fn runtime_builder(workers: u64) -> tokio::runtime::Builder {
    if workers == 1 {
        return tokio::runtime::Builder::new_current_thread();
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        // Checked to be at most 256 when the configuration was read.
        builder.worker_threads(workers as usize);
    }
    builder
}

async fn serve(
    cfg: Config,
    sources: Sources,
    mut systemd: Systemd,
    request: CancellationToken,
) -> ExitCode {
    // Signals first, so one that arrives during start-up is not lost.
    let mut signals = Signals::new();
    let hangup = Hangup::new();
    let stop = CancellationToken::new();
    let passed = std::mem::take(&mut systemd.passed);
    let (endpoints, challenges, resolver) = match endpoints(&cfg, passed, &stop).await {
        Ok(e) => e,
        Err((code, msg)) => {
            tracing::error!("{msg}");
            return ExitCode::from(code);
        }
    };
    let admin_listener = match admin_bind(&cfg).await {
        Ok(l) => l.map(|l| (l, endpoints.iter().map(describe).collect())),
        Err(msg) => {
            tracing::error!("{msg}");
            return ExitCode::from(1);
        }
    };
    let cfg = Arc::new(cfg);

    let mut serving = Serving::start(cfg, endpoints, challenges, &stop);
    if let Some((l, listeners)) = admin_listener {
        let mut admin = admin::Admin::new(&serving.sup, &serving.ws, listeners);
        admin.affinity = serving.gateway.affinity.clone();
        admin.tls = resolver;
        let admin = tokio::spawn(admin::serve(l, Arc::new(admin), stop.clone()));
        serving.servers.push(admin);
    }
    let systemd = Arc::new(systemd);
    let told = Told {
        systemd: systemd.clone(),
        sup: serving.sup.clone(),
        stop: stop.clone(),
    };
    let watcher = told.watch(sources, hangup);

    let which = tokio::select! {
        which = signals.next() => which,
        _ = request.cancelled() => "stop request",
    };
    tracing::info!("{which} received: shutting down (a second signal exits at once)");
    systemd.notify("STOPPING=1");
    tokio::spawn(async move {
        let again = signals.next().await;
        tracing::warn!("{again} received again: exiting now");
        std::process::exit(1);
    });

    // One deadline for every wait below (the server computes the same one
    // from the same configuration): they overlap instead of adding up.
    let grace = serving.sup.config().shutdown_time_limit;
    serving
        .shutdown(&stop, tokio::time::Instant::now() + grace)
        .await;
    let _ = watcher.await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// The app's supervisor and the gateway serving the public endpoints:
/// what `hpgate run` starts, and `hpgate check` too for its WebSocket
/// through hpgate (check 13).
pub(crate) struct Serving {
    pub(crate) sup: Supervisor,
    pub(crate) ws: websocket::Registry,
    pub(crate) gateway: Arc<Gateway>,
    /// The endpoints' servers (and the admin listener's, when there is one).
    pub(crate) servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Serving {
    /// Starts the app's processes and serves `endpoints` until `stop`.
    pub(crate) fn start(
        cfg: Arc<Config>,
        endpoints: Vec<Endpoint>,
        challenges: Option<Arc<tls::acme::Challenges>>,
        stop: &CancellationToken,
    ) -> Serving {
        let sup = Supervisor::start(cfg);
        let ws = websocket::Registry::default();
        let gateway = gateway(&sup, &ws, &endpoints, challenges);
        let servers = endpoints
            .into_iter()
            .map(|ep| tokio::spawn(proxy::serve(ep, gateway.clone(), stop.clone())))
            .collect();
        Serving {
            sup,
            ws,
            gateway,
            servers,
        }
    }

    /// Shuts down in order (see the module doc), all by `deadline`.
    pub(crate) async fn shutdown(self, stop: &CancellationToken, deadline: tokio::time::Instant) {
        stop.cancel();
        self.ws.shutdown.cancel();
        for server in self.servers {
            let _ = server.await;
        }
        self.ws.tasks.close();
        let _ = tokio::time::timeout_at(deadline, self.ws.tasks.wait()).await;
        self.sup.shutdown(deadline).await;
    }
}

/// The state every public connection shares.
fn gateway(
    sup: &Supervisor,
    ws: &websocket::Registry,
    endpoints: &[Endpoint],
    challenges: Option<Arc<tls::acme::Challenges>>,
) -> Arc<Gateway> {
    let mut gateway = Gateway::new(sup.clone(), ws.clone());
    gateway.https_port = endpoints
        .iter()
        .find(|e| e.tls.is_some())
        .and_then(|e| e.listener.local_addr().ok())
        .map(|a| a.port());
    gateway.acme = challenges;
    Arc::new(gateway)
}

/// Binds the admin listener when `adminListen` is set.
async fn admin_bind(cfg: &Config) -> Result<Option<tokio::net::TcpListener>, String> {
    if cfg.admin_listen.is_empty() {
        return Ok(None);
    }
    let addr = cfg
        .admin_listen
        .parse()
        .map_err(|e| format!("adminListen \"{}\": {e}", cfg.admin_listen))?;
    let listener = admin::bind(addr).await?;
    let addr = listener.local_addr().unwrap_or(addr);
    tracing::info!("admin listener on http://{addr} (/metrics, /livez, /readyz, /status)");
    Ok(Some(listener))
}

/// A public endpoint as /status names it.
fn describe(ep: &Endpoint) -> String {
    let scheme = if ep.tls.is_some() { "https" } else { "http" };
    match ep.listener.local_addr() {
        Ok(a) => format!("{scheme}://{a}"),
        Err(_) => format!("{scheme}://?"),
    }
}

/// The endpoints, ACME's challenge answers and the certificate resolver
/// (the admin listener reads the certificates' expiry from it).
type Bound = (
    Vec<Endpoint>,
    Option<Arc<tls::acme::Challenges>>,
    Option<Arc<tls::Resolver>>,
);

/// Binds every listener (an https one with the certificates loaded and
/// watched from here on) and says where hpgate listens. Err carries the
/// exit code: 2 for a certificate problem (a configuration error), 1 when
/// a port cannot be bound.
async fn endpoints(
    cfg: &Config,
    passed: Vec<Passed>,
    stop: &CancellationToken,
) -> Result<Bound, (u8, String)> {
    let env = |name: &str| std::env::var(name).ok();
    let acme = tls::setup::acme(cfg, &env).map_err(|m| (2, m))?;
    let challenges = acme
        .as_ref()
        .map(|_| Arc::new(tls::acme::Challenges::default()));
    let wants_tls = if passed.is_empty() {
        cfg.listen.any_tls()
    } else {
        passed.iter().any(Passed::is_https)
    };
    let mut served = None;
    let tls = if wants_tls {
        let sources = tls::setup::sources(cfg, &env).map_err(|m| (2, m))?;
        let (acceptor, resolver) =
            tls::setup::acceptor(sources, challenges.clone()).map_err(|m| (2, m))?;
        tokio::spawn(tls::watch(resolver.clone(), stop.clone()));
        served = Some(resolver.clone());
        if let (Some(acme), Some(ch)) = (acme, &challenges) {
            tokio::spawn(tls::acme::run(acme, resolver, ch.clone(), stop.clone()));
        }
        Some(acceptor)
    } else {
        None
    };
    if !passed.is_empty() {
        return Ok((adopt(passed, tls)?, challenges, served));
    }
    let mut out = Vec::new();
    for listen in cfg.listen.iter() {
        let listener = proxy::bind(listen.addr).await.map_err(|m| (1, m))?;
        let addr = listener.local_addr().unwrap_or(listen.addr);
        let scheme = if listen.tls { "https" } else { "http" };
        tracing::info!("listening on {scheme}://{addr}");
        out.push(Endpoint {
            listener,
            tls: tls.clone().filter(|_| listen.tls),
        });
    }
    Ok((out, challenges, served))
}

/// The endpoints of socket activation: one per passed socket, TLS on those
/// named `https`; the listen setting is not used.
fn adopt(passed: Vec<Passed>, tls: Option<TlsAcceptor>) -> Result<Vec<Endpoint>, (u8, String)> {
    tracing::info!(
        "socket activation: serving on the {} socket(s) systemd passed; the listen setting is not used",
        passed.len()
    );
    let mut out = Vec::new();
    for p in passed {
        let https = p.is_https();
        let listener = proxy::adopt(p.listener).map_err(|m| (1, m))?;
        let scheme = if https { "https" } else { "http" };
        match listener.local_addr() {
            Ok(addr) => tracing::info!("listening on {scheme}://{addr} (socket {})", p.name),
            Err(_) => tracing::info!("listening on socket {} ({scheme})", p.name),
        }
        out.push(Endpoint {
            listener,
            tls: tls.clone().filter(|_| https),
        });
    }
    Ok(out)
}

/// Keeps systemd told (`Type=notify`); a no-op when it does not listen.
struct Told {
    systemd: Arc<Systemd>,
    sup: Supervisor,
    stop: CancellationToken,
}

impl Told {
    /// Starts watching the site's files (and SIGHUP: the same reload) and
    /// telling systemd; returns the watcher, to wait for at shutdown.
    fn watch(self, sources: Sources, hangup: Hangup) -> tokio::task::JoinHandle<()> {
        let reload = move || config::load(&sources, &config::expand_lookup);
        let (reloader, requests) = watch_files::reloader();
        let (sup, stop) = (self.sup.clone(), self.stop.clone());
        let watcher = tokio::spawn(watch_files::run(sup, reload, requests, stop));
        tokio::spawn(self.run(hangup, reloader));
        watcher
    }

    /// READY=1 once the app answers, then RELOADING=1 / READY=1 around each
    /// SIGHUP reload (a SIGHUP during start-up waits for READY); meanwhile
    /// WATCHDOG=1 every half WATCHDOG_USEC until hpgate exits, shutdown
    /// included (it may take up to shutdownTimeLimit).
    async fn run(self, mut hangup: Hangup, reloader: watch_files::Reloader) {
        if let Some(every) = self.systemd.watchdog() {
            tokio::spawn(keep_alive(self.systemd.clone(), every));
        }
        tokio::select! {
            _ = self.sup.started() => self.systemd.notify("READY=1\nSTATUS=serving"),
            _ = self.stop.cancelled() => return,
        }
        loop {
            tokio::select! {
                _ = hangup.next() => {}
                _ = self.stop.cancelled() => return,
            }
            tracing::info!("SIGHUP received: reloading the configuration");
            self.systemd.notify("RELOADING=1");
            tokio::select! {
                _ = reloader.reload() => self.systemd.notify("READY=1"),
                _ = self.stop.cancelled() => return,
            }
        }
    }
}

async fn keep_alive(systemd: Arc<Systemd>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        systemd.notify("WATCHDOG=1");
    }
}
