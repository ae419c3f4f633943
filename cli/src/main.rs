//! The `knpu` command.
//!
//! `knpu devices` lists devices like an smi tool; `knpu bench <suite> [--json]` runs a
//! benchmark suite (see `bench`).

mod bench;
mod devices;

use std::process::ExitCode;

fn usage() -> String {
    let mut s =
        String::from("usage: knpu devices\n       knpu bench <suite> [--json]\n\nsuites:\n");
    for (name, what) in bench::SUITES {
        s.push_str(&format!("  {name:<10} {what}\n"));
    }
    s
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench") => {
            let Some(suite) = args.get(1) else {
                eprint!("{}", usage());
                return ExitCode::from(2);
            };
            let rest: Vec<String> = args[2..]
                .iter()
                .filter(|a| *a != "--json")
                .cloned()
                .collect();
            let mut sink = bench::Sink::new(args.iter().any(|a| a == "--json"));
            match bench::run(suite, &rest, &mut sink) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("knpu bench: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("devices") => match devices::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("knpu devices: {e}");
                ExitCode::FAILURE
            }
        },
        Some("-h") | Some("--help") | Some("help") => {
            print!("{}", usage());
            ExitCode::SUCCESS
        }
        _ => {
            eprint!("{}", usage());
            ExitCode::from(2)
        }
    }
}
