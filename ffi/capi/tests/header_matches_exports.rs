//! `ffi/include/knpu.h`, `knpublas.h`, `knpu_ops.h` and the library agree: every declared function is exported with the
//! same signature.
//!
//! The check has two halves. This test runs bindgen on the public headers and fails unless the
//! committed `src/header.rs` (the header's types and constants, which the implementation
//! uses as its own) and `src/header_check.rs` (one compile-time assertion per declared
//! function) are what the header gives today. `header_check.rs` is compiled into the crate:
//! each line coerces the exported function to the function-pointer type bindgen derived
//! from its declaration, so a missing export or a different signature does not compile.
//!
//! bindgen needs libclang at run time (`bash scripts/ensure-libclang.sh` installs it); when
//! it is missing the test fails and says so, it never passes without comparing. Set
//! `KNPU_BLESS=1` to rewrite both files after an intended header change.

use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn builder() -> bindgen::Builder {
    if let Err(e) = std::panic::catch_unwind(|| {
        let _ = bindgen::Builder::default()
            .header_contents("probe.h", "int x;")
            .generate();
    }) {
        panic!(
            "bindgen could not load libclang ({e:?}). Install it (`bash \
             scripts/ensure-libclang.sh`, or set LIBCLANG_PATH) and run this test again."
        );
    }
    let include = root().join("../include");
    bindgen::Builder::default()
        .header_contents(
            "knpu_all.h",
            "#include \"knpu.h\"\n#include \"knpublas.h\"\n#include \"knpu_ops.h\"\n",
        )
        .clang_arg(format!("-I{}", include.to_str().expect("utf-8 path")))
        .prepend_enum_name(false)
        .derive_default(false)
        .derive_debug(true)
        .derive_copy(true)
        .layout_tests(true)
        .generate_comments(false)
        .formatter(bindgen::Formatter::Rustfmt)
}

/// The DLPack structs `knpu.h` declares are the runtime's own (`knpu::tensor::dlpack`, which
/// Python uses too), so they are not generated again; `checks` compares their layouts.
const DLPACK_TYPES: &str =
    "DLDataType, DLDevice, DLManagedTensorVersioned, DLPackVersion, DLTensor";

/// The header's types and constants, without functions.
fn types() -> String {
    builder()
        .allowlist_type("knpu.*")
        .allowlist_var("knpu.*|KNPU_.*|KNPUBLAS_.*")
        .raw_line(format!(
            "pub use knpu::tensor::dlpack::{{\n    {DLPACK_TYPES},\n}};"
        ))
        .generate()
        .expect("bindgen failed on the public headers")
        .to_string()
}

/// bindgen's layout assertions of the header's DLPack structs, which then hold for the
/// runtime's structs of the same names: size, alignment and the offset of every field.
fn dlpack_layouts() -> String {
    let generated = builder()
        .allowlist_type(DLPACK_TYPES.replace(", ", "|"))
        .generate()
        .expect("bindgen failed on the public headers")
        .to_string();
    let mut out = String::new();
    let mut rest = generated.as_str();
    while let Some(start) = rest.find("const _: () = {") {
        let end = rest[start..].find("};").expect("a layout block ends") + start + 2;
        out.push_str(&rest[start..end]);
        out.push('\n');
        rest = &rest[end..];
    }
    assert!(
        out.contains("DLManagedTensorVersioned"),
        "no DLPack layouts generated"
    );
    out
}

/// One compile-time assertion per declared function.
fn checks() -> String {
    let decls = builder()
        .allowlist_function("knpu.*")
        .generate()
        .expect("bindgen failed on the public headers")
        .to_string();
    let mut out = String::new();
    let mut rest = decls.as_str();
    let mut count = 0;
    while let Some(start) = rest.find("pub fn ") {
        let after = &rest[start + "pub fn ".len()..];
        let end = after.find(';').expect("a declaration ends with ;");
        let decl = &after[..end];
        let open = decl.find('(').expect("a declaration has parameters");
        let name = decl[..open].trim();
        let signature: String = decl[open..]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let signature = signature.replace("( ", "(").replace(", )", ")");
        out.push_str(&format!(
            "const _: unsafe extern \"C\" fn{signature} = crate::{name};\n"
        ));
        count += 1;
        rest = &after[end..];
    }
    assert!(count > 50, "bindgen found only {count} functions in knpu.h");
    out + &dlpack_layouts()
}

/// `s` as tokens: each punctuation mark alone and the runs between marks and whitespace, so
/// that a comparison ignores how the lines were wrapped.
fn tokens(s: &str) -> Vec<String> {
    const MARKS: &str = "{}()[]<>;,:=&*#!";
    let spaced: String = s
        .chars()
        .map(|c| {
            if MARKS.contains(c) {
                format!(" {c} ")
            } else {
                c.to_string()
            }
        })
        .collect();
    spaced.split_whitespace().map(str::to_string).collect()
}

fn compare_or_bless(file: &str, generated: String, preamble: &str) {
    let path = root().join("src").join(file);
    if std::env::var_os("KNPU_BLESS").is_some() {
        let body = format!(
            "// Generated from ffi/include/knpu.h, knpublas.h and knpu_ops.h by tests/header_matches_exports.rs; do not \
             edit.\n// Regenerate with `KNPU_BLESS=1 cargo test -p knpu-capi --test \
             header_matches_exports`.\n{preamble}{generated}"
        );
        std::fs::write(&path, body).expect("write the generated file");
        return;
    }
    let committed = std::fs::read_to_string(&path).expect("read the committed file");
    // The committed file's tokens after its comment lines (the generated header).
    let committed: Vec<String> = committed
        .lines()
        .filter(|l| !l.starts_with("//"))
        .flat_map(tokens)
        .collect();
    let expected = format!("{preamble}{generated}");
    assert!(
        committed == tokens(&expected),
        "ffi/capi/src/{file} is out of date with the public headers; regenerate with `KNPU_BLESS=1 cargo \
         test -p knpu-capi --test header_matches_exports`"
    );
}

#[test]
fn header_types_match_committed_bindings() {
    compare_or_bless("header.rs", types(), "");
}

#[test]
fn every_declared_function_is_checked_against_its_export() {
    compare_or_bless(
        "header_check.rs",
        checks(),
        "#[allow(unused_imports)]\nuse crate::header::*;\n",
    );
}

/// The enumerators of every `typedef enum` in a header whose names start with `prefix`, as
/// (name without the prefix, lower case, no underscores; value).
fn enumerators(header: &str, prefix: &str) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(root().join("../include").join(header)).unwrap();
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim().trim_end_matches(',');
        let Some((name, value)) = line.split_once(" = ") else {
            continue;
        };
        let Some(rest) = name.trim().strip_prefix(prefix) else {
            continue;
        };
        let value = value.trim();
        let value = match value
            .strip_prefix("0x")
            .or_else(|| value.strip_prefix("0X"))
        {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => value.parse(),
        };
        let Ok(value) = value else { continue };
        out.push((rest.to_lowercase().replace('_', ""), value));
    }
    out.sort();
    out
}

/// Every enum of `knpu_ops.h` mirrors an enum of the driver ABI: the same names (up to case
/// and the prefix) with the same numbers, none missing on either side. The C API passes the
/// values to the op definitions as they are, so a difference would change what an op does.
#[test]
fn ops_header_enums_are_the_driver_abi_enums() {
    let pairs = [
        ("knpuDtype", "KNPU_DTYPE_"),
        ("knpuActivation", "KNPU_ACTIVATION_"),
        ("knpuRope", "KNPU_ROPE_"),
        ("knpuBinary", "KNPU_BINARY_"),
        ("knpuBroadcast", "KNPU_BROADCAST_"),
        ("knpuQuant", "KNPU_QUANT_"),
        ("knpuActQuant", "KNPU_ACT_QUANT_"),
        ("knpuAttention", "KNPU_ATTENTION_"),
    ];
    for (ours, abi) in pairs {
        let c = enumerators("knpu_ops.h", ours);
        let a = enumerators("knpu_driver.h", abi);
        assert!(!c.is_empty(), "knpu_ops.h has no {ours}* enumerators");
        assert_eq!(
            c, a,
            "{ours}* of knpu_ops.h against {abi}* of knpu_driver.h"
        );
    }
}
