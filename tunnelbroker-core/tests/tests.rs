//! The integration tests of `tunnelbroker-core`, one binary with a module per topic.

mod broker;
mod openvpn_e2e;
