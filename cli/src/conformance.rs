//! `knpu conformance [--driver PATH.so] [--json]`: runs the driver conformance kit
//! (`knpu-conformance`) on the built-in software NPU or on a driver library, and prints a
//! table of pass / fail / expected failure / skipped by feature (JSON Lines with `--json`).
//! Exits non-zero when a case fails.

use std::path::PathBuf;

use knpu_conformance::{Expectations, Target};

/// Options of `knpu conformance`.
#[derive(clap::Args)]
pub struct Args {
    /// The driver library to test (default: the built-in software NPU).
    #[arg(long, value_name = "PATH.so")]
    driver: Option<PathBuf>,
    /// The driver's expectations file (default: the one bundled for the driver's name, if
    /// any).
    #[arg(long, value_name = "FILE")]
    expectations: Option<PathBuf>,
    /// Run only the cases whose id (level/feature/name) contains this text.
    #[arg(long, value_name = "TEXT")]
    filter: Option<String>,
    /// List the case ids and exit.
    #[arg(long)]
    list: bool,
    /// Print JSON Lines: one object per case, then one per feature with its counts.
    #[arg(long)]
    json: bool,
}

/// Runs the subcommand.
pub fn run(args: &Args) -> Result<(), String> {
    if args.list {
        for c in knpu_conformance::cases() {
            println!("{}", c.id());
        }
        return Ok(());
    }
    // The software NPU reads its device count once, at first use: give it spare devices for
    // the cases that need a second device or lose one, unless the user chose a count.
    if std::env::var_os("KNPU_SIM_DEVICES").is_none() {
        std::env::set_var("KNPU_SIM_DEVICES", "3");
    }
    let target = match &args.driver {
        None => Target::builtin()?,
        Some(path) => Target::library(path)?,
    };
    let expectations = match &args.expectations {
        Some(path) => Expectations::load(path)?,
        None => Expectations::for_driver(&target.driver_name()),
    };
    let json = args.json;
    let report = knpu_conformance::run(&target, &expectations, args.filter.as_deref(), &mut |c| {
        if !json {
            eprintln!("{:<16} {}", c.outcome.name(), c.id);
        }
    });
    if json {
        print!("{}", report.json_lines());
    } else {
        print!("{}", report.table());
    }
    let failures = report.failures();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} case(s) failed on driver `{}`",
            failures.len(),
            target.driver_name()
        ))
    }
}
