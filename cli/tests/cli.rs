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
fn unknown_commands_and_suites_fail_with_usage() {
    let (ok, _, err) = knpu(&["frobnicate"], &[]);
    assert!(!ok);
    assert!(err.contains("usage"), "{err}");
    let (ok, _, err) = knpu(&["bench", "nosuch"], &[]);
    assert!(!ok);
    assert!(err.contains("unknown benchmark suite"), "{err}");
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
