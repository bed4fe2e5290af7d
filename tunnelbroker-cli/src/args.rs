//! The command line, as clap derive types. Later commands add a variant to
//! [`Command`] and an `Args` struct here, and a module of their own.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Run an OpenVPN-based IPv6 tunnel broker: address plan, CA, client configs.
#[derive(Debug, Parser)]
#[command(name = "tunnelbroker", version, about, long_about = None)]
pub struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// The broker's directory (CA, client database, configs).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "TUNNELBROKER_DIR",
        default_value = "./broker"
    )]
    pub dir: PathBuf,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the address plan of a pool, or of one subnet of it.
    Plan(PlanArgs),
}

/// Arguments of `tunnelbroker plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The pool: an IPv6 prefix of length /48 to /62, e.g. 2001:db8:0:f100::/56.
    #[arg(long, value_name = "PREFIX")]
    pub pool: String,

    /// Show this subnet /64 of the pool: its routing net, both ends and link-local addresses.
    #[arg(long, value_name = "SUBNET")]
    pub subnet: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
