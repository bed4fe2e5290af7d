//! The integration tests of `tunnelbroker-core`: one binary, one module per topic.

mod audit;
mod broker;
mod chain_e2e;
mod doctor_e2e;
mod lab;
mod lifecycle;
mod openvpn_e2e;
mod parsers;
mod pki;
mod plan;
mod plan_state;
