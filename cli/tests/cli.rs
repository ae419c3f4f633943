//! The `knpu` command as a user runs it.

use std::process::Command;

fn knpu(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_knpu"));
    c.args(args)
        .env_remove("KNPU_DRIVER_PATH")
        .env_remove("KNPU_SIM_DEVICES");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run knpu");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn device_rows(stdout: &str) -> usize {
    stdout.lines().filter(|l| l.contains("knpu-sim")).count()
}

#[test]
fn devices_lists_the_software_npu() {
    let (ok, out, err) = knpu(&["devices"], &[]);
    assert!(ok, "{err}");
    assert_eq!(device_rows(&out), 1, "{out}");
    assert!(out.contains("sim"), "{out}");
    assert!(out.contains("GiB"), "memory column: {out}");
}

#[test]
fn devices_lists_two_with_two_configured() {
    let (ok, out, err) = knpu(&["devices"], &[("KNPU_SIM_DEVICES", "2")]);
    assert!(ok, "{err}");
    assert_eq!(device_rows(&out), 2, "{out}");
}

#[test]
fn bad_driver_path_is_a_warning_not_a_failure() {
    let (ok, out, err) = knpu(
        &["devices"],
        &[("KNPU_DRIVER_PATH", "/nonexistent/libx.so")],
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("/nonexistent/libx.so") && err.contains("no such file"),
        "{err}"
    );
    assert_eq!(device_rows(&out), 1);
}

#[test]
fn unknown_commands_suites_and_options_fail_with_usage() {
    let (ok, _, err) = knpu(&["frobnicate"], &[]);
    assert!(!ok);
    assert!(err.contains("Usage"), "{err}");
    let (ok, _, err) = knpu(&["bench", "nosuch"], &[]);
    assert!(!ok);
    assert!(err.contains("nosuch") && err.contains("Usage"), "{err}");
    // Every suite refuses options it does not have (they used to be ignored by some).
    for suite in [
        "runtime",
        "graph",
        "gemm",
        "attention",
        "quant",
        "ops",
        "attention-device",
        "quant-device",
    ] {
        let (ok, _, err) = knpu(&["bench", suite, "--no-such-option"], &[]);
        assert!(!ok, "{suite}");
        assert!(err.contains("--no-such-option"), "{suite}: {err}");
    }
    let (ok, _, err) = knpu(&["devices", "--all"], &[]);
    assert!(!ok);
    assert!(err.contains("--all"), "{err}");
    let (ok, _, err) = knpu(&["bench", "quant", "--only", "everything"], &[]);
    assert!(!ok);
    assert!(err.contains("everything"), "{err}");
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        &["--help"][..],
        &["devices", "--help"],
        &["bench", "--help"],
        &["bench", "gemm", "--help"],
        &["bench", "attention", "--help"],
        &["bench", "quant", "--help"],
        &["bench", "ops", "--help"],
        &["bench", "runtime", "--help"],
        &["conformance", "--help"],
    ] {
        let (ok, out, err) = knpu(args, &[]);
        assert!(ok, "{args:?}: {err}");
        assert!(out.contains("Usage: knpu"), "{args:?}: {out}");
    }
    let (_, out, _) = knpu(&["bench", "--help"], &[]);
    for suite in ["attention-device", "quant-device", "gemm"] {
        assert!(out.contains(suite), "{out}");
    }
    let (_, out, _) = knpu(&["bench", "gemm", "--help"], &[]);
    for option in [
        "--quick",
        "--runtime",
        "--threads",
        "--isa",
        "--shape",
        "--trans-b",
    ] {
        assert!(out.contains(option), "{option}: {out}");
    }
}

/// The simulator's cdylib, built by cargo in the target directory.
fn sim_plugin() -> std::path::PathBuf {
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_knpu"));
    let dir = bin.parent().unwrap();
    for d in [dir.to_path_buf(), dir.join("deps")] {
        let p = d.join("libknpu_driver_sim.so");
        if p.exists() {
            return p;
        }
    }
    panic!("libknpu_driver_sim.so not found beside {}", bin.display());
}

#[test]
fn conformance_prints_a_table_by_feature_and_json_lines() {
    let (ok, out, err) = knpu(&["conformance", "--filter", "copies"], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("conformance of driver `sim`"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("copies ")),
        "a row for the copies feature: {out}"
    );
    let plugin = sim_plugin();
    let (ok, out, err) = knpu(
        &[
            "conformance",
            "--driver",
            plugin.to_str().unwrap(),
            "--filter",
            "copies",
            "--json",
        ],
        &[],
    );
    assert!(ok, "{err}");
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let cases: Vec<&serde_json::Value> =
        records.iter().filter(|r| r.get("case").is_some()).collect();
    assert!(cases.len() >= 5, "{out}");
    assert!(cases.iter().all(|c| c["outcome"] == "pass"), "{out}");
    assert!(cases.iter().any(|c| c["level"] == "runtime"), "{out}");
    let summary = records
        .iter()
        .find(|r| r["feature"] == "copies" && r.get("case").is_none())
        .expect("a summary record for copies");
    assert_eq!(summary["fail"], 0);
    assert!(summary["pass"].as_u64().unwrap() >= 5);

    let (ok, _, err) = knpu(&["conformance", "--driver", "/nonexistent/libx.so"], &[]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/libx.so"), "{err}");
    let (ok, out, _) = knpu(&["conformance", "--list"], &[]);
    assert!(ok);
    assert!(
        out.lines().any(|l| l == "abi/copies/copies_round_trip"),
        "{out}"
    );
}

#[test]
fn bench_runtime_prints_json_lines_records() {
    let (ok, out, err) = knpu(&["bench", "runtime", "--json", "--quick"], &[]);
    assert!(ok, "{err}");
    let mut ops = std::collections::BTreeSet::new();
    for line in out.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["bench"], "runtime");
        assert!(v["case"].is_object());
        assert!(v["runs"].as_u64().unwrap() > 0);
        assert!(v["median_s"].as_f64().unwrap() > 0.0);
        assert!(
            v.get("us").or(v.get("gbps")).is_some(),
            "a rate named by its unit: {line}"
        );
        ops.insert(v["case"]["op"].as_str().unwrap().to_string());
    }
    for op in [
        "launch_async",
        "launch_sync",
        "event_record",
        "alloc_free",
        "copy_h2d",
        "copy_d2h",
        "host_memcpy",
    ] {
        assert!(ops.contains(op), "missing {op} in {ops:?}");
    }
}

#[test]
fn bench_attention_decodes_from_a_paged_cache() {
    let args = [
        "bench",
        "attention",
        "--json",
        "--phase",
        "decode",
        "--kv-len",
        "40",
        "--block-size",
        "16",
        "--hot",
    ];
    let (ok, out, err) = knpu(&args, &[]);
    assert!(ok, "{err}");
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(records.len(), 1, "{out}");
    let v = &records[0];
    assert_eq!(v["case"]["phase"], "decode");
    assert_eq!(v["case"]["cache"], "paged");
    assert_eq!(v["case"]["block_size"], 16);
    assert_eq!(v["case"]["kv_len"], 40);
    assert!(v["us"].as_f64().unwrap() > 0.0, "{out}");

    let (ok, _, err) = knpu(
        &[
            "bench",
            "attention",
            "--layout",
            "bhsd",
            "--block-size",
            "16",
        ],
        &[],
    );
    assert!(!ok);
    assert!(err.contains("--block-size"), "{err}");
}
