//! Safe construction and reading of the ABI's growable structs (those that start with
//! `struct_size`).
//!
//! A caller fills such a struct by starting from [`SizedStruct::sized`] (all zeros, with
//! `struct_size` set) and assigning the fields it knows; a driver reads one that arrived as
//! bytes with [`SizedStruct::read`]. The `unsafe` that both need is written once, here, for
//! the structs the header declares, so no caller writes it again.

use crate::sys::*;

/// A C struct of the ABI whose first field is `struct_size: size_t` and for which every bit
/// pattern, all zeros in particular, is a valid value.
///
/// # Safety
/// - The first field is a `usize` named `struct_size` at offset 0.
/// - Every bit pattern of `size_of::<Self>()` bytes is a valid `Self` (the struct holds only
///   integers, floats, nullable raw pointers, `Option` function pointers and unions of
///   those).
pub unsafe trait SizedStruct: Copy {
    /// The byte offset just past the last field a driver requires: a caller must declare at
    /// least this `struct_size`. Fields appended by later minor versions lie beyond it and
    /// read as zero when a caller's struct is shorter.
    fn required_size() -> usize;

    /// All zeros with `struct_size` set to this struct's size.
    fn sized() -> Self {
        // SAFETY: all-zero bytes are a valid Self (trait contract).
        let mut v: Self = unsafe { core::mem::zeroed() };
        // SAFETY: Self starts with a usize `struct_size` at offset 0 (trait contract), so the
        // write is in bounds and aligned.
        unsafe { (&mut v as *mut Self as *mut usize).write(core::mem::size_of::<Self>()) };
        v
    }

    /// Reads a struct from the bytes a caller passed: its `struct_size` must cover
    /// [`SizedStruct::required_size`] and fit in `bytes`; fields past the caller's
    /// `struct_size` read as zero, bytes past this struct's size are ignored.
    fn read(bytes: &[u8]) -> Option<Self> {
        let head = bytes.get(..core::mem::size_of::<usize>())?;
        let declared = usize::from_ne_bytes(head.try_into().ok()?);
        if declared > bytes.len() || declared < Self::required_size() {
            return None;
        }
        let mut value = Self::sized();
        let n = declared.min(core::mem::size_of::<Self>());
        // SAFETY: copies n <= size_of::<Self>() bytes from a slice of at least n bytes into
        // the value; every bit pattern is a valid Self (trait contract).
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), &mut value as *mut Self as *mut u8, n)
        };
        Some(value)
    }
}

macro_rules! sized_structs {
    ($($ty:ident => $last:ident),* $(,)?) => {$(
        const _: () = assert!(core::mem::offset_of!($ty, struct_size) == 0);
        // SAFETY: bindgen generated `$ty` from the header with `struct_size: usize` first (the
        // assertion above checks its offset); its fields are integers, floats, nullable
        // pointers, `Option` function pointers or unions of those, valid for any bits.
        unsafe impl SizedStruct for $ty {
            fn required_size() -> usize {
                crate::field_end!($ty, $last)
            }
        }
    )*};
}

sized_structs! {
    KnpuElementwiseParams => alpha,
    KnpuGemmParams => stride_residual,
    KnpuAttentionParams => scale,
    KnpuPagedAttentionParams => scale,
    KnpuKvAppendParams => seq_lens,
    KnpuPagedKvAppendParams => seq_lens,
    KnpuRmsNormParams => eps,
    KnpuLayerNormParams => eps,
    KnpuRopeParams => base,
    KnpuActivationParams => out,
    KnpuSwigluParams => out,
    KnpuSoftmaxParams => scale,
    KnpuBinaryParams => out,
    KnpuEmbeddingParams => out,
    KnpuCastParams => dst,
    KnpuArgmaxParams => out,
    KnpuTopKParams => indices,
    KnpuSampleParams => top_p,
    KnpuQuantizeParams => scales,
    KnpuDequantizeParams => dst,
    KnpuQMatmulParams => y,
    KnpuW8A8GemmParams => y,
    KnpuQEmbeddingParams => out,
    KnpuCommand => u,
    KnpuSubmitInfo => signal_values,
    KnpuFaultInjection => count,
    KnpuCommandRecord => modeled_ns,
    KnpuDriverApi => abi_minor,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of<T: SizedStruct>(v: &T) -> &[u8] {
        // SAFETY: a T is size_of::<T>() initialised bytes (bindgen structs of plain data;
        // padding was zeroed by `sized`).
        unsafe {
            core::slice::from_raw_parts(v as *const T as *const u8, core::mem::size_of::<T>())
        }
    }

    #[test]
    fn sized_sets_struct_size_and_zeroes_the_rest() {
        let p = KnpuGemmParams::sized();
        assert_eq!(p.struct_size, core::mem::size_of::<KnpuGemmParams>());
        assert_eq!((p.m, p.alpha, p.residual), (0, 0.0, 0));
    }

    #[test]
    fn read_round_trips_and_checks_struct_size() {
        let mut p = KnpuBinaryParams::sized();
        p.rows = 3;
        let back = KnpuBinaryParams::read(bytes_of(&p)).unwrap();
        assert_eq!(back.rows, 3);
        // Too short for the required fields, longer than the bytes, or no header at all.
        let mut short = p;
        short.struct_size = KnpuBinaryParams::required_size() - 8;
        assert!(KnpuBinaryParams::read(bytes_of(&short)).is_none());
        let mut long = p;
        long.struct_size = 4096;
        assert!(KnpuBinaryParams::read(bytes_of(&long)).is_none());
        assert!(KnpuBinaryParams::read(&[0u8; 4]).is_none());
    }
}
