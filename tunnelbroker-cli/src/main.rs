//! `tunnelbroker`: the command line of an OpenVPN-based IPv6 tunnel broker.
//!
//! This binary is glue: it parses arguments ([`args`]), calls
//! `tunnelbroker-core`, and prints the result ([`output`]). Every failure is
//! one line on stderr and an exit status: 2 for bad input, 1 for the rest.

use std::process::ExitCode;

use clap::Parser;

mod agent;
mod args;
mod client;
mod db;
mod doctor;
mod init;
mod output;
mod plan;
mod server;
mod servers;
mod sessions;

fn main() -> ExitCode {
    // Usage errors and --help/--version exit here, through clap (status 2 / 0).
    let cli = args::Cli::parse();
    let out = output::Output::new(cli.json);
    let result = match &cli.command {
        args::Command::Plan(a) => plan::run(&out, a),
        args::Command::Init(a) => init::init(&out, &cli.dir, a),
        args::Command::Client(c) => client::run(&out, &cli.dir, c),
        args::Command::Crl(a) => init::crl(&out, &cli.dir, a),
        args::Command::Doctor(a) => doctor::doctor(&out, a),
        args::Command::Audit(a) => doctor::audit(&out, &cli.dir, a),
        args::Command::Server(c) => server::run(&out, &cli.dir, c),
        args::Command::Db(c) => db::run(&out, &cli.dir, c),
        args::Command::Agent(a) => agent::run(&out, &cli.dir, a),
        args::Command::Status => sessions::status(&out, &cli.dir),
        args::Command::Whois(a) => sessions::whois(&out, &cli.dir, a),
    };
    output::finish(&out, result)
}
