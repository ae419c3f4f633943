//! Builds C and C++ programs against the real libknpu, as an application would, and runs
//! them with a time limit.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where the test's programs go.
pub fn out_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("capi")
        .join(name);
    std::fs::create_dir_all(&d).expect("create the test's output dir");
    d
}

/// A directory holding libknpu.so.1, libknpu.so and libknpu.a, as an installation would:
/// the crate's cdylib and staticlib, built by cargo beside this test binary.
pub fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test binary path");
        let deps = exe.parent().expect("deps dir");
        // `cargo test` builds the library into deps/; `cargo build` also copies it into the
        // profile directory, where an older copy can outlive later test builds: take the newer.
        let find = |name: &str| {
            [deps.parent().expect("profile dir"), deps]
                .iter()
                .map(|d| d.join(name))
                .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
                .max()
                .map(|(_, p)| p)
                .unwrap_or_else(|| {
                    panic!(
                        "{name} not found beside {}; `cargo build -p knpu-capi` builds it",
                        exe.display()
                    )
                })
        };
        let so = find("libknpu_capi.so");
        let a = find("libknpu_capi.a");
        let dir = out_dir("lib");
        for (link, target) in [
            ("libknpu.so.1", &so),
            ("libknpu.so", &so),
            ("libknpu.a", &a),
        ] {
            let p = dir.join(link);
            let _ = std::fs::remove_file(&p);
            std::os::unix::fs::symlink(target, &p).expect("link the library");
        }
        dir
    })
}

/// How a program links libknpu.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Shared,
    Static,
}

fn compiler(cpp: bool) -> cc::Tool {
    cc::Build::new()
        .cpp(cpp)
        .target(env!("KNPU_CAPI_TARGET"))
        .host(env!("KNPU_CAPI_HOST"))
        .opt_level(1)
        .debug(false)
        .cargo_metadata(false)
        .cargo_warnings(false)
        .get_compiler()
}

/// Compiles `sources` into the executable `out`, linked against libknpu.
pub fn build_program(sources: &[PathBuf], out: &Path, cpp: bool, link: Link) {
    let tool = compiler(cpp);
    let mut cmd = tool.to_command();
    cmd.arg(if cpp { "-std=c++17" } else { "-std=c99" })
        .args(["-Wall", "-Wextra", "-Werror", "-pthread"])
        .arg("-I")
        .arg(repo().join("ffi/include"))
        .arg("-I")
        .arg(repo().join("examples/c"))
        .args(sources)
        .arg("-o")
        .arg(out);
    let lib = lib_dir();
    match link {
        Link::Shared => {
            cmd.arg("-L").arg(lib).arg("-lknpu");
            cmd.arg(format!("-Wl,-rpath,{}", lib.display()));
            cmd.arg("-lm");
        }
        Link::Static => {
            cmd.arg(lib.join("libknpu.a"));
            cmd.args(["-lpthread", "-ldl", "-lm", "-lrt", "-lgcc_s"]);
        }
    }
    let o = cmd.output().expect("run the C compiler");
    assert!(
        o.status.success(),
        "compiling {:?} failed:\n{}{}",
        sources,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Compiles `source` into a shared library (a driver).
pub fn build_shared_library(source: &Path, out: &Path) {
    let mut cmd = compiler(false).to_command();
    cmd.args([
        "-std=c99", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared", "-pthread",
    ])
    .arg("-I")
    .arg(repo().join("ffi/include"))
    .arg(source)
    .arg("-o")
    .arg(out);
    let o = cmd.output().expect("run the C compiler");
    assert!(
        o.status.success(),
        "compiling {} failed:\n{}",
        source.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Runs a program with a time limit; its output, with stdout and stderr together.
pub fn run(program: &Path, env: &[(&str, &str)], limit: Duration) -> (Output, String) {
    let mut child = Command::new(program)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    let start = Instant::now();
    while child.try_wait().expect("poll the child").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("collect the output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// Runs a program and fails the test unless it exits 0.
pub fn run_ok(program: &Path, env: &[(&str, &str)]) -> String {
    let (out, text) = run(program, env, Duration::from_secs(300));
    assert!(
        out.status.success(),
        "{} failed ({}):\n{text}",
        program.display(),
        out.status
    );
    text
}
