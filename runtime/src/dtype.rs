//! Element types that kernels understand, tied to the driver ABI's `KnpuDtype` numbers.

use knpu_driver_abi as abi;

/// An element type device kernels compute on.
pub trait DType: bytemuck::Pod + Send + Sync + 'static {
    /// The `KnpuDtype` number.
    const ABI: u32;
    /// A short name, e.g. `"f32"`.
    const NAME: &'static str;
}

impl DType for f32 {
    const ABI: u32 = abi::KNPU_DTYPE_F32;
    const NAME: &'static str = "f32";
}

impl DType for half::f16 {
    const ABI: u32 = abi::KNPU_DTYPE_F16;
    const NAME: &'static str = "f16";
}

impl DType for half::bf16 {
    const ABI: u32 = abi::KNPU_DTYPE_BF16;
    const NAME: &'static str = "bf16";
}

impl DType for f64 {
    const ABI: u32 = abi::KNPU_DTYPE_F64;
    const NAME: &'static str = "f64";
}

impl DType for i8 {
    const ABI: u32 = abi::KNPU_DTYPE_I8;
    const NAME: &'static str = "i8";
}

impl DType for u8 {
    const ABI: u32 = abi::KNPU_DTYPE_U8;
    const NAME: &'static str = "u8";
}

impl DType for i32 {
    const ABI: u32 = abi::KNPU_DTYPE_I32;
    const NAME: &'static str = "i32";
}

impl DType for u32 {
    const ABI: u32 = abi::KNPU_DTYPE_U32;
    const NAME: &'static str = "u32";
}

impl DType for i64 {
    const ABI: u32 = abi::KNPU_DTYPE_I64;
    const NAME: &'static str = "i64";
}

/// The name of a `KnpuDtype` number (the op definitions' table).
pub use knpu_driver_abi::ops::dtype_name;
