//! HTTP adapters: the services' retirement APIs, OAuth2 client credentials, and the store that
//! uses a real Open edX LMS as the retirement queue.
//!
//! This crate is filled by the service-adapters issue; for now it only fixes the workspace layout.
#![warn(missing_docs)]

pub use retirement_core;
