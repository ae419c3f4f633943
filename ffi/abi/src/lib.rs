//! The knpu driver ABI (`ffi/include/knpu_driver.h`) as Rust types.
