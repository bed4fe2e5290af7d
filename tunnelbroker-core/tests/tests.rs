//! The one integration-test binary of tunnelbroker-core (one module per topic).

mod pki;
