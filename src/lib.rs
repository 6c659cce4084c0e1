//! ontrack: live early-warning flags for students at risk of dropping out.
//!
//! [`core`] is the pure heart (decode → fold → rules); [`output`] renders flag events;
//! [`replay`] runs the core over a JSON-Lines export.

pub mod clock;
pub mod config;
pub mod core;
pub mod demo;
pub mod edfi;
pub mod http;
pub mod kafka;
pub mod loadgen;
pub mod notify;
pub mod output;
pub mod pipeline;
pub mod replay;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod synth;
pub mod telemetry;
pub mod translator;
