//! venue's offline testbed.
//!
//! `fake` is a stateful fake of the Hetzner Cloud API (the `fake-hcloud`
//! binary serves it; tests start it in-process), `spec` checks the fake's
//! traffic against the official OpenAPI document so the fake cannot drift
//! into a dialect of its own, and `selector` is Hetzner's label-selector
//! language. The next issue adds test hosts in network namespaces: they plug
//! into the fake through [`fake::ServerHook`].

pub mod bbb;
pub mod catalogue;
pub mod dns;
pub mod fake;
pub mod netns;
pub mod pebble;
pub mod selector;
pub mod spec;

pub use fake::state::bill::{Bill, Line as BillLine};
pub use fake::{
    Addresses, Exchange, FakeCloud, FakeConfig, FakeHandle, Fault, NewServer, ServerHook,
};
