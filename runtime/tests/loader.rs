//! Driver loading: every way a library can fail to be a usable driver gives a clear error.
//!
//! The odd drivers here are small C libraries (`tests/drivers/*.c`) compiled against
//! `knpu_driver.h` at test time with the system C compiler, as a vendor would build one.

use std::path::{Path, PathBuf};
use std::process::Command;

fn header_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ffi/include")
}

/// `tests/drivers/{name}.c` compiled to a shared library in a temporary directory.
fn build_c_library(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("knpu-loader-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/drivers/{name}.c"));
    let so = dir.join(format!("lib{name}.so"));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-shared", "-fPIC", "-std=c99", "-Wall", "-Werror", "-I"])
        .arg(header_dir())
        .arg("-o")
        .arg(&so)
        .arg(&c)
        .output()
        .unwrap_or_else(|e| panic!("these tests need a C compiler (`{cc}`): {e}"));
    assert!(
        out.status.success(),
        "compiling {name}.c failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    so
}

fn load(path: &Path) -> knpu::Error {
    knpu::load_driver(path.to_str().unwrap()).expect_err("loading must fail")
}

#[test]
fn missing_library_is_refused() {
    let e = load(Path::new("/nonexistent/libknpu_nothing.so"));
    assert!(matches!(e, knpu::Error::DriverLoad { .. }), "{e}");
    assert!(e.to_string().contains("no such file"), "{e}");
}

#[test]
fn file_that_is_not_a_library_is_refused() {
    let p = std::env::temp_dir().join(format!("knpu-not-a-lib-{}.so", std::process::id()));
    std::fs::write(&p, b"this is text, not ELF").unwrap();
    let e = load(&p);
    assert!(matches!(e, knpu::Error::DriverLoad { .. }), "{e}");
    assert!(
        e.to_string().contains("not a loadable shared library"),
        "{e}"
    );
}

#[test]
fn library_without_entry_point_is_refused() {
    let e = load(&build_c_library("notadriver"));
    assert!(matches!(e, knpu::Error::DriverLoad { .. }), "{e}");
    assert!(e.to_string().contains("not a knpu driver"), "{e}");
}

#[test]
fn driver_of_another_abi_major_is_refused_naming_both_versions() {
    let e = load(&build_c_library("futuredriver"));
    match &e {
        knpu::Error::AbiMismatch {
            driver_major,
            driver_minor,
            runtime_major,
            ..
        } => {
            assert_eq!(*driver_major, knpu::abi::KNPU_DRIVER_ABI_MAJOR + 1);
            assert_eq!(*driver_minor, 3);
            assert_eq!(*runtime_major, knpu::abi::KNPU_DRIVER_ABI_MAJOR);
        }
        other => panic!("expected AbiMismatch, got {other}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("{}.3", knpu::abi::KNPU_DRIVER_ABI_MAJOR + 1)),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "{}.{}",
            knpu::abi::KNPU_DRIVER_ABI_MAJOR,
            knpu::abi::KNPU_DRIVER_ABI_MINOR
        )),
        "{msg}"
    );
}

#[test]
fn driver_that_declines_the_loader_version_is_refused() {
    let e = load(&build_c_library("decliner"));
    assert!(e.to_string().contains("returned no function table"), "{e}");
}

#[test]
fn truncated_table_is_refused_naming_the_missing_function() {
    let e = load(&build_c_library("truncated"));
    assert!(e.to_string().contains("device_get"), "{e}");
}
