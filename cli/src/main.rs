//! The `knpu` command.
//!
//! `knpu devices` lists devices like an smi tool; `knpu bench <suite> [--json]` runs a
//! benchmark suite (see `bench`); `knpu conformance [--driver PATH.so] [--json]` runs the
//! driver conformance kit (see `conformance`). Arguments are parsed one way for every
//! subcommand (clap), so each has `--help` and an unknown option is an error.

mod bench;
mod conformance;
mod devices;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// knpu: devices, benchmarks and driver conformance for knpu NPUs.
#[derive(Parser)]
#[command(name = "knpu", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every device of every driver (built-in and KNPU_DRIVER_PATH).
    Devices,
    /// Run a benchmark suite; records print as a table, or JSON Lines with --json.
    Bench(bench::BenchArgs),
    /// Run the driver conformance kit on a driver (default: the built-in software NPU).
    Conformance(conformance::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (what, result) = match cli.command {
        Command::Devices => ("devices", devices::run()),
        Command::Bench(args) => ("bench", bench::run(&args)),
        Command::Conformance(args) => ("conformance", conformance::run(&args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("knpu {what}: {e}");
            ExitCode::FAILURE
        }
    }
}
