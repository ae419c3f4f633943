//! Conversions between f32, f16 and bf16 (all round to nearest even; NaN stays NaN, quieted),
//! and between f32 and i32.
//!
//! The row conversions here are also how every other op widens f16/bf16 inputs and narrows
//! its outputs. f16 uses the F16C / AVX-512 conversion instructions; bf16 is integer work on
//! the f32 bit pattern (bf16 is the top half of an f32).

use super::{check_len, for_flat_blocks, Element};
use crate::{Exec, Isa, KernelError};
use half::{bf16, f16};

/// Converts `src[..len]` into `dst[..len]` (`S` to `D`, rounding to nearest even when
/// narrowing), on the path and threads `exec` names.
pub fn cast<S: Element, D: Element>(
    src: &[S],
    dst: &mut [D],
    len: usize,
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    let Exec { isa, par } = exec.into();
    isa.require()?;
    check_len("src", len, src.len())?;
    check_len("dst", len, dst.len())?;
    let src = &src[..len];
    for_flat_blocks(par, &mut dst[..len], |start, out| {
        convert_row(isa, &src[start..start + out.len()], out);
    });
    Ok(())
}

/// Converts `src` into `dst` (same length) through f32.
pub(crate) fn convert_row<S: Element, D: Element>(isa: Isa, src: &[S], dst: &mut [D]) {
    debug_assert_eq!(src.len(), dst.len());
    if S::DTYPE == D::DTYPE {
        dst.copy_from_slice(bytemuck::cast_slice(src));
    } else if let Some(s) = S::as_f32(src) {
        D::narrow(isa, s, dst);
    } else if let Some(d) = D::as_f32_mut(dst) {
        S::widen(isa, src, d);
    } else {
        let mut buf = [0.0f32; 512];
        for (s, d) in src.chunks(512).zip(dst.chunks_mut(512)) {
            let b = &mut buf[..s.len()];
            S::widen(isa, s, b);
            D::narrow(isa, b, d);
        }
    }
}

/// Converts `src[..len]` into `dst[..len]` the way Rust's `as` does: toward zero, saturating
/// at `i32::MIN`/`i32::MAX`, NaN to 0.
pub fn f32_to_i32(src: &[f32], dst: &mut [i32], len: usize) -> Result<(), KernelError> {
    check_len("src", len, src.len())?;
    check_len("dst", len, dst.len())?;
    for (d, &s) in dst[..len].iter_mut().zip(&src[..len]) {
        *d = s as i32;
    }
    Ok(())
}

/// Converts `src[..len]` into `dst[..len]`, rounding to the nearest f32 (ties to even).
pub fn i32_to_f32(src: &[i32], dst: &mut [f32], len: usize) -> Result<(), KernelError> {
    check_len("src", len, src.len())?;
    check_len("dst", len, dst.len())?;
    for (d, &s) in dst[..len].iter_mut().zip(&src[..len]) {
        *d = s as f32;
    }
    Ok(())
}

/// Widens f16 to f32; `dst.len() == src.len()`.
pub(crate) fn f16_to_f32(isa: Isa, src: &[f16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len());
    assert!(isa.is_supported());
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            // SAFETY: the host supports AVX-512F (asserted); lengths are equal (asserted).
            unsafe { x86::f16_to_f32_avx512(src, dst) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            // SAFETY: the host supports AVX2 and F16C (asserted); lengths are equal (asserted).
            unsafe { x86::f16_to_f32_avx2(src, dst) }
        }
        _ => f16_to_f32_portable(src, dst),
    }
}

/// Narrows f32 to f16, rounding to nearest even; `dst.len() == src.len()`.
pub(crate) fn f32_to_f16(isa: Isa, src: &[f32], dst: &mut [f16]) {
    assert_eq!(src.len(), dst.len());
    assert!(isa.is_supported());
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            // SAFETY: the host supports AVX-512F (asserted); lengths are equal (asserted).
            unsafe { x86::f32_to_f16_avx512(src, dst) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            // SAFETY: the host supports AVX2 and F16C (asserted); lengths are equal (asserted).
            unsafe { x86::f32_to_f16_avx2(src, dst) }
        }
        _ => f32_to_f16_portable(src, dst),
    }
}

/// Widens bf16 to f32 (exact); `dst.len() == src.len()`.
pub(crate) fn bf16_to_f32(isa: Isa, src: &[bf16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len());
    assert!(isa.is_supported());
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            // SAFETY: the host supports AVX-512F (asserted); lengths are equal (asserted).
            unsafe { x86::bf16_to_f32_avx512(src, dst) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            // SAFETY: the host supports AVX2 (asserted); lengths are equal (asserted).
            unsafe { x86::bf16_to_f32_avx2(src, dst) }
        }
        _ => bf16_to_f32_portable(src, dst),
    }
}

/// Narrows f32 to bf16, rounding to nearest even; `dst.len() == src.len()`.
pub(crate) fn f32_to_bf16(isa: Isa, src: &[f32], dst: &mut [bf16]) {
    assert_eq!(src.len(), dst.len());
    assert!(isa.is_supported());
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            // SAFETY: the host supports AVX-512F (asserted); lengths are equal (asserted).
            unsafe { x86::f32_to_bf16_avx512(src, dst) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            // SAFETY: the host supports AVX2 (asserted); lengths are equal (asserted).
            unsafe { x86::f32_to_bf16_avx2(src, dst) }
        }
        _ => f32_to_bf16_portable(src, dst),
    }
}

fn f16_to_f32_portable(src: &[f16], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = s.to_f32();
    }
}

fn f32_to_f16_portable(src: &[f32], dst: &mut [f16]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f16::from_f32(s);
    }
}

fn bf16_to_f32_portable(src: &[bf16], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = f32::from_bits(u32::from(s.to_bits()) << 16);
    }
}

/// f32 bits to bf16 bits: round to nearest even, NaN quieted (as `half::bf16::from_f32`).
#[inline(always)]
fn bf16_bits(x: u32) -> u16 {
    if x & 0x7fff_ffff > 0x7f80_0000 {
        ((x >> 16) | 0x40) as u16
    } else {
        ((x + 0x7fff + ((x >> 16) & 1)) >> 16) as u16
    }
}

fn f32_to_bf16_portable(src: &[f32], dst: &mut [bf16]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = bf16::from_bits(bf16_bits(s.to_bits()));
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use half::{bf16, f16};
    use std::arch::x86_64::*;

    /// # Safety
    /// - The host supports AVX-512F; `src.len() == dst.len()`.
    #[target_feature(enable = "avx512f,avx2,f16c")]
    pub(super) unsafe fn f16_to_f32_avx512(src: &[f16], dst: &mut [f32]) {
        let n = src.len() / 16 * 16;
        for i in (0..n).step_by(16) {
            // SAFETY: i + 16 <= n <= both lengths; f16 is 2 bytes, so 16 of them are 256 bits.
            unsafe {
                let h = _mm256_loadu_si256(src.as_ptr().add(i).cast());
                _mm512_storeu_ps(dst.as_mut_ptr().add(i), _mm512_cvtph_ps(h));
            }
        }
        super::f16_to_f32_portable(&src[n..], &mut dst[n..]);
    }

    /// # Safety
    /// - The host supports AVX-512F; `src.len() == dst.len()`.
    #[target_feature(enable = "avx512f,avx2,f16c")]
    pub(super) unsafe fn f32_to_f16_avx512(src: &[f32], dst: &mut [f16]) {
        let n = src.len() / 16 * 16;
        for i in (0..n).step_by(16) {
            // SAFETY: i + 16 <= n <= both lengths.
            unsafe {
                let v = _mm512_loadu_ps(src.as_ptr().add(i));
                let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
                _mm256_storeu_si256(dst.as_mut_ptr().add(i).cast(), h);
            }
        }
        super::f32_to_f16_portable(&src[n..], &mut dst[n..]);
    }

    /// # Safety
    /// - The host supports AVX2 and F16C; `src.len() == dst.len()`.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn f16_to_f32_avx2(src: &[f16], dst: &mut [f32]) {
        let n = src.len() / 8 * 8;
        for i in (0..n).step_by(8) {
            // SAFETY: i + 8 <= n <= both lengths; 8 f16 are 128 bits.
            unsafe {
                let h = _mm_loadu_si128(src.as_ptr().add(i).cast());
                _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
            }
        }
        super::f16_to_f32_portable(&src[n..], &mut dst[n..]);
    }

    /// # Safety
    /// - The host supports AVX2 and F16C; `src.len() == dst.len()`.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn f32_to_f16_avx2(src: &[f32], dst: &mut [f16]) {
        let n = src.len() / 8 * 8;
        for i in (0..n).step_by(8) {
            // SAFETY: i + 8 <= n <= both lengths.
            unsafe {
                let v = _mm256_loadu_ps(src.as_ptr().add(i));
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
                _mm_storeu_si128(dst.as_mut_ptr().add(i).cast(), h);
            }
        }
        super::f32_to_f16_portable(&src[n..], &mut dst[n..]);
    }

    /// # Safety
    /// - The host supports AVX-512F; `src.len() == dst.len()`.
    #[target_feature(enable = "avx512f,avx2")]
    pub(super) unsafe fn bf16_to_f32_avx512(src: &[bf16], dst: &mut [f32]) {
        let n = src.len() / 16 * 16;
        for i in (0..n).step_by(16) {
            // SAFETY: i + 16 <= n <= both lengths; 16 bf16 are 256 bits.
            unsafe {
                let h = _mm256_loadu_si256(src.as_ptr().add(i).cast());
                let w = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h));
                _mm512_storeu_ps(dst.as_mut_ptr().add(i), _mm512_castsi512_ps(w));
            }
        }
        super::bf16_to_f32_portable(&src[n..], &mut dst[n..]);
    }

    /// # Safety
    /// - The host supports AVX-512F; `src.len() == dst.len()`.
    #[target_feature(enable = "avx512f,avx2")]
    pub(super) unsafe fn f32_to_bf16_avx512(src: &[f32], dst: &mut [bf16]) {
        let n = src.len() / 16 * 16;
        for i in (0..n).step_by(16) {
            // SAFETY: i + 16 <= n <= both lengths.
            unsafe {
                let v = _mm512_loadu_ps(src.as_ptr().add(i));
                let x = _mm512_castps_si512(v);
                let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(x), _mm512_set1_epi32(1));
                let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(
                    _mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)),
                    lsb,
                ));
                let quiet = _mm512_or_si512(_mm512_srli_epi32::<16>(x), _mm512_set1_epi32(0x40));
                let r = _mm512_mask_blend_epi32(nan, rounded, quiet);
                _mm256_storeu_si256(dst.as_mut_ptr().add(i).cast(), _mm512_cvtepi32_epi16(r));
            }
        }
        super::f32_to_bf16_portable(&src[n..], &mut dst[n..]);
    }

    /// # Safety
    /// - The host supports AVX2; `src.len() == dst.len()`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn bf16_to_f32_avx2(src: &[bf16], dst: &mut [f32]) {
        let n = src.len() / 8 * 8;
        for i in (0..n).step_by(8) {
            // SAFETY: i + 8 <= n <= both lengths; 8 bf16 are 128 bits.
            unsafe {
                let h = _mm_loadu_si128(src.as_ptr().add(i).cast());
                let w = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h));
                _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_castsi256_ps(w));
            }
        }
        super::bf16_to_f32_portable(&src[n..], &mut dst[n..]);
    }

    /// # Safety
    /// - The host supports AVX2; `src.len() == dst.len()`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn f32_to_bf16_avx2(src: &[f32], dst: &mut [bf16]) {
        let n = src.len() / 8 * 8;
        for i in (0..n).step_by(8) {
            // SAFETY: i + 8 <= n <= both lengths.
            unsafe {
                let v = _mm256_loadu_ps(src.as_ptr().add(i));
                let x = _mm256_castps_si256(v);
                let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
                let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(x), _mm256_set1_epi32(1));
                let rounded = _mm256_srli_epi32::<16>(_mm256_add_epi32(
                    _mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)),
                    lsb,
                ));
                let quiet = _mm256_or_si256(_mm256_srli_epi32::<16>(x), _mm256_set1_epi32(0x40));
                let r = _mm256_blendv_epi8(rounded, quiet, nan);
                // Values are below 2^16, so unsigned saturation keeps them; the pack works per
                // 128-bit half, so gather the two low quadwords.
                let packed = _mm256_permute4x64_epi64::<0b00_00_10_00>(_mm256_packus_epi32(r, r));
                _mm_storeu_si128(
                    dst.as_mut_ptr().add(i).cast(),
                    _mm256_castsi256_si128(packed),
                );
            }
        }
        super::f32_to_bf16_portable(&src[n..], &mut dst[n..]);
    }
}
