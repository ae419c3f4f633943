//! The C and C++ examples, and the misuse test, built against the real libknpu (shared and
//! static) and run as separate processes, so a crash is a failed test, not a dead runner.

mod support;

use support::{build_program, out_dir, repo, run_ok, Link};

fn example(name: &str, link: Link, env: &[(&str, &str)]) -> String {
    let src = repo().join("examples/c").join(format!("{name}.c"));
    let suffix = if link == Link::Static { "-static" } else { "" };
    let exe = out_dir("examples").join(format!("{name}{suffix}"));
    build_program(&[src], &exe, false, link);
    run_ok(&exe, env)
}

/// `ffi/capi/tests/c/{name}.c` built against the shared library and run; its output.
fn c_test(name: &str) -> String {
    let src = repo().join("ffi/capi/tests/c").join(format!("{name}.c"));
    let exe = out_dir("tests").join(name);
    build_program(&[src], &exe, false, Link::Shared);
    run_ok(&exe, &[])
}

#[test]
fn example_01_device_query() {
    let out = example("01-device-query", Link::Shared, &[]);
    assert!(out.contains("device 0:"), "{out}");
}

#[test]
fn example_02_memcpy_with_pointer_arithmetic() {
    let out = example("02-memcpy", Link::Shared, &[]);
    assert!(out.contains("past-the-end copy refused"), "{out}");
    // With two devices the example also does a peer copy.
    let out = example("02-memcpy", Link::Shared, &[("KNPU_SIM_DEVICES", "2")]);
    assert!(
        out.contains("peer copy between devices 0 and 1: ok"),
        "{out}"
    );
}

#[test]
fn example_02_links_statically() {
    let out = example("02-memcpy", Link::Static, &[]);
    assert!(out.contains("memcpy with pointer arithmetic: ok"), "{out}");
}

#[test]
fn example_03_streams_and_events_with_timing() {
    let out = example("03-streams-events", Link::Shared, &[]);
    assert!(out.contains("ms of device time"), "{out}");
}

#[test]
fn example_04_graph_capture_and_replay() {
    let out = example("04-graph", Link::Shared, &[]);
    assert!(out.contains("graph capture and replay: ok"), "{out}");
}

#[test]
fn example_05_sgemm_through_knpublas() {
    let out = example("05-sgemm", Link::Shared, &[]);
    assert!(out.contains("against the host loop"), "{out}");
    let out = example("05-sgemm", Link::Static, &[]);
    assert!(out.contains("against the host loop"), "{out}");
}

#[test]
fn example_06_llm_ops_through_the_ops_header() {
    let out = example("06-llm-ops", Link::Shared, &[]);
    assert!(out.contains("max errors against the C reference"), "{out}");
    assert!(out.contains("rotary_dim"), "{out}");
    let out = example("06-llm-ops", Link::Static, &[]);
    assert!(out.contains("max errors against the C reference"), "{out}");
}

#[test]
fn knpublas_matches_a_column_major_reference() {
    let out = c_test("blas");
    assert!(out.contains(" products checked, 0 failures"), "{out}");
}

#[test]
fn dlpack_export_import_and_refusals() {
    let out = c_test("dlpack");
    assert!(out.contains(" checks, 0 failures"), "{out}");
}

#[test]
fn an_applications_own_dlpack_h_is_used_instead_of_knpus() {
    let out = c_test("dlpack_own_header");
    assert!(out.contains("own dlpack.h: ok"), "{out}");
}

#[test]
fn cpp_example_with_raii_wrappers() {
    let src = repo().join("examples/cpp/01-raii.cpp");
    let exe = out_dir("examples").join("cpp-01-raii");
    build_program(&[src], &exe, true, Link::Shared);
    let out = run_ok(&exe, &[]);
    assert!(out.contains("C++ RAII wrappers: ok"), "{out}");
}

/// The functions `knpu.h`, `knpublas.h` and `knpu_ops.h` declare.
fn declared_functions() -> Vec<String> {
    let mut names = Vec::new();
    for header in ["knpu.h", "knpublas.h", "knpu_ops.h"] {
        let text = std::fs::read_to_string(repo().join("ffi/include").join(header)).unwrap();
        names.extend(text.lines().filter_map(|l| {
            let rest = l
                .strip_prefix("knpuError_t ")
                .or_else(|| l.strip_prefix("knpublasStatus_t "))
                .or_else(|| l.strip_prefix("const char *"))?;
            let name = rest.split('(').next()?;
            name.starts_with("knpu").then(|| name.to_string())
        }));
    }
    names
}

#[test]
fn misuse_calls_every_function_and_none_crashes() {
    let src = repo().join("ffi/capi/tests/c/misuse.c");
    let text = std::fs::read_to_string(&src).unwrap();
    let declared = declared_functions();
    assert!(
        declared.len() > 60,
        "found only {} functions",
        declared.len()
    );
    let missing: Vec<_> = declared
        .iter()
        .filter(|f| !text.contains(&format!("{f}(")))
        .collect();
    assert!(missing.is_empty(), "misuse.c does not call {missing:?}");
    let out = c_test("misuse");
    assert!(out.contains(", 0 failures"), "{out}");
}
