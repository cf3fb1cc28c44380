//! The client-facing side: listener, forwarding service, WebSocket
//! upgrades, error pages.
//!
//! Owns everything HTTP. It asks the supervisor for a ready process per
//! request and must not start, stop or inspect processes itself.

mod affinity;
mod app_io;
mod body;
mod client;
mod error;
mod forward;
mod guard;
mod headers;
mod host;
mod pool;
mod server;
pub mod websocket;

pub use forward::Gateway;
pub use server::{bind, serve};
