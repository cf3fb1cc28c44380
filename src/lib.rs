//! hpgate: a gateway that starts, supervises and fronts web apps the way
//! IIS HttpPlatformHandler does, for Linux and Windows.
//!
//! The binary (`main.rs`) only wires these modules together; integration
//! tests drive the binary itself.
#![deny(unsafe_code)]

pub mod admin;
pub mod check;
pub mod cli;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod lifecycle;
pub mod logging;
pub mod proxy;
pub mod service;
pub mod signals;
pub mod supervisor;
pub mod systemd;
pub mod tls;
