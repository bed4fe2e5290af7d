//! The integration tests of `tunnelbroker-core`: one binary, one module per topic.

mod audit;
mod broker;
mod pki;
mod plan;
