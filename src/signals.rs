//! Stop signals: SIGTERM and SIGINT on Unix, Ctrl-C and Ctrl-Break on
//! Windows. One public type over an OS-specific inside. Also SIGHUP, the
//! reload request ([`Hangup`]).

#[cfg(unix)]
mod imp {
    use tokio::signal::unix::{signal, Signal, SignalKind};

    pub struct Signals {
        term: Option<Signal>,
        int: Option<Signal>,
    }

    impl Signals {
        pub fn new() -> Signals {
            Signals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }

        pub async fn next(&mut self) -> &'static str {
            async fn recv(s: &mut Option<Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = recv(&mut self.term) => "SIGTERM",
                _ = recv(&mut self.int) => "SIGINT",
            }
        }
    }
}

#[cfg(windows)]
mod imp {
    use tokio::signal::windows::{ctrl_break, ctrl_c, CtrlBreak, CtrlC};

    pub struct Signals {
        c: Option<CtrlC>,
        brk: Option<CtrlBreak>,
    }

    impl Signals {
        pub fn new() -> Signals {
            Signals {
                c: ctrl_c().ok(),
                brk: ctrl_break().ok(),
            }
        }

        pub async fn next(&mut self) -> &'static str {
            let c = async {
                match &mut self.c {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let b = async {
                match &mut self.brk {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = c => "Ctrl-C",
                _ = b => "Ctrl-Break",
            }
        }
    }
}

pub use imp::Signals;

impl Default for Signals {
    fn default() -> Self {
        Signals::new()
    }
}

/// SIGHUP, which asks for a reload (`systemctl reload`). Windows has no
/// such signal: there it never arrives.
pub struct Hangup {
    #[cfg(unix)]
    inner: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    /// Installs the handler: from here on SIGHUP no longer ends hpgate.
    pub fn new() -> Hangup {
        Hangup {
            #[cfg(unix)]
            inner: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    /// The next SIGHUP; several before this is called count as one.
    pub async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(s) = &mut self.inner {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await
    }
}

impl Default for Hangup {
    fn default() -> Self {
        Hangup::new()
    }
}
