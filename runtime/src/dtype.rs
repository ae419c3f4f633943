//! Element types that kernels understand, tied to the driver ABI's `KnpuDtype` numbers.

use knpu_driver_abi as abi;

/// An element type device kernels compute on.
pub trait DType: bytemuck::Pod + Send + Sync + 'static {
    /// The `KnpuDtype` number.
    const ABI: u32;
    /// A short name, e.g. `"f32"`.
    const NAME: &'static str;
}

/// Implements [`DType`] for each Rust type with its `KnpuDtype` number and name.
macro_rules! dtypes {
    ($($t:ty => $abi:ident, $name:literal;)*) => {$(
        impl DType for $t {
            const ABI: u32 = abi::$abi;
            const NAME: &'static str = $name;
        }
    )*};
}

dtypes! {
    f32 => KNPU_DTYPE_F32, "f32";
    half::f16 => KNPU_DTYPE_F16, "f16";
    half::bf16 => KNPU_DTYPE_BF16, "bf16";
    f64 => KNPU_DTYPE_F64, "f64";
    i8 => KNPU_DTYPE_I8, "i8";
    u8 => KNPU_DTYPE_U8, "u8";
    i32 => KNPU_DTYPE_I32, "i32";
    u32 => KNPU_DTYPE_U32, "u32";
    i64 => KNPU_DTYPE_I64, "i64";
}

/// The name of a `KnpuDtype` number (the op definitions' table).
pub use knpu_driver_abi::ops::dtype_name;
