//! Gives the shared library the soname `libknpu.so.<ABI major>`, so applications linked
//! against one major keep loading a newer minor and refuse another major.

fn main() {
    let header = std::path::Path::new("../include/knpu.h");
    println!("cargo:rerun-if-changed=../include/knpu.h");
    let text = std::fs::read_to_string(header).expect("read ffi/include/knpu.h");
    let major = text
        .lines()
        .find_map(|l| l.strip_prefix("#define KNPU_API_VERSION_MAJOR "))
        .expect("knpu.h defines KNPU_API_VERSION_MAJOR")
        .trim()
        .to_string();
    println!("cargo:rustc-env=KNPU_API_VERSION_MAJOR={major}");
    // The C tests compile programs with the `cc` crate, which needs the target and host.
    for var in ["TARGET", "HOST"] {
        let v = std::env::var(var).expect("cargo sets TARGET and HOST for build scripts");
        println!("cargo:rustc-env=KNPU_CAPI_{var}={v}");
    }
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libknpu.so.{major}");
    }
}
