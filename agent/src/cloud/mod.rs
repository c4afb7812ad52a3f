//! The Hetzner Cloud API, wrapped for venue.
//!
//! README — why a thin client of our own and not the `hcloud` crate:
//! `hcloud` 0.26 is generated from the same OpenAPI document (reqwest
//! underneath) and does take a custom base URL, but every call returns only
//! the decoded body: the `RateLimit-Remaining`/`-Reset` headers that rate-limit
//! awareness needs are out of reach, retries would have to wrap each of its
//! ~300 generated functions one by one (each with its own error enum), and its
//! models make nearly every field optional and boxed. venue uses about fifteen
//! endpoints; a reqwest + serde client of ~400 lines gives one place for
//! retries with backoff and jitter, one for the rate limit, batched action
//! polls (`GET /actions?id=1&id=2…`), pagination and typed errors, and it
//! compiles in a fraction of the time. Faithfulness to the API is checked the
//! same way as the fake's: `agent/tests` validate the agent's requests against
//! the official spec (venue-testbed's `spec` module).

pub mod actions;
pub mod client;
pub mod cost;
pub mod dns;
pub mod error;
pub mod firewall;
pub mod inventory;
pub mod labels;
pub mod pricing;
pub mod retry;
pub mod types;

pub use client::{Client, ClientConfig};
pub use error::CloudError;
