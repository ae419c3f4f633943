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

/// One test a line: `name: program => [texts its output must contain], ...;`, where a program
/// is `example(name, link, env)` or `c_test(name)` and each program is built and run in turn.
macro_rules! program_tests {
    ($($name:ident: $($program:expr => [$($want:literal),+]),+;)*) => {
        $(
            #[test]
            fn $name() {
                $(
                    let out = $program;
                    $(assert!(out.contains($want), "{out}");)+
                )+
            }
        )*
    };
}

program_tests! {
    example_01_device_query: example("01-device-query", Link::Shared, &[]) => ["device 0:"];
    example_02_memcpy_with_pointer_arithmetic:
        example("02-memcpy", Link::Shared, &[]) => ["past-the-end copy refused"],
        // With two devices the example also does a peer copy.
        example("02-memcpy", Link::Shared, &[("KNPU_SIM_DEVICES", "2")])
            => ["peer copy between devices 0 and 1: ok"];
    example_02_links_statically:
        example("02-memcpy", Link::Static, &[]) => ["memcpy with pointer arithmetic: ok"];
    example_03_streams_and_events_with_timing:
        example("03-streams-events", Link::Shared, &[]) => ["ms of device time"];
    example_04_graph_capture_and_replay:
        example("04-graph", Link::Shared, &[]) => ["graph capture and replay: ok"];
    example_05_sgemm_through_knpublas:
        example("05-sgemm", Link::Shared, &[]) => ["against the host loop"],
        example("05-sgemm", Link::Static, &[]) => ["against the host loop"];
    example_06_llm_ops_through_the_ops_header:
        example("06-llm-ops", Link::Shared, &[])
            => ["max errors against the C reference", "rotary_dim"],
        example("06-llm-ops", Link::Static, &[]) => ["max errors against the C reference"];
    knpublas_matches_a_column_major_reference: c_test("blas") => [" products checked, 0 failures"];
    dlpack_export_import_and_refusals: c_test("dlpack") => [" checks, 0 failures"];
    an_applications_own_dlpack_h_is_used_instead_of_knpus:
        c_test("dlpack_own_header") => ["own dlpack.h: ok"];
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
