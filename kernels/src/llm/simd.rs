//! A small vector abstraction the LLM ops are written against once, with three
//! implementations: [`Portable`] (eight `f32` lanes in an array, plain Rust any compiler can
//! vectorise), [`Avx2`] (`__m256`) and [`Avx512`] (`__m512`).
//!
//! The x86 tokens can only be made unsafely, inside functions compiled for their path on a
//! host that supports their instructions, so their methods are safe to call: holding a token
//! is the proof. Every method is `#[inline(always)]` and every kernel written against
//! [`Simd`] is too, so the whole kernel is inlined into the `#[target_feature]` function that
//! `simd_entry!` defines, and compiles with that path's instructions.

use crate::Isa;

/// One SIMD path: a vector of `LANES` f32 lanes and the operations the LLM ops need.
///
/// Comparisons and `max`/`min` follow x86 semantics on NaN: `max(a, b)` and `min(a, b)`
/// return `b` when either lane is NaN.
pub(crate) trait Simd: Copy + Send + Sync {
    /// Lanes per vector.
    const LANES: usize;
    /// The vector type.
    type V: Copy;
    /// All lanes `x`.
    fn splat(self, x: f32) -> Self::V;
    /// Loads `s[..LANES]`.
    fn load(self, s: &[f32]) -> Self::V;
    /// Stores into `s[..LANES]`.
    fn store(self, v: Self::V, s: &mut [f32]);
    /// Loads `s` (shorter than `LANES`), filling the remaining lanes with `fill`.
    fn load_part(self, s: &[f32], fill: f32) -> Self::V;
    /// Stores the first `s.len()` (fewer than `LANES`) lanes into `s`.
    fn store_part(self, v: Self::V, s: &mut [f32]);
    /// `a + b`.
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a - b`.
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a * b`.
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a / b`.
    fn div(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a * b + c` (fused on the x86 paths).
    fn fma(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// Lane-wise maximum; `b` where either is NaN.
    fn max(self, a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise minimum; `b` where either is NaN.
    fn min(self, a: Self::V, b: Self::V) -> Self::V;
    /// `|a|`.
    fn abs(self, a: Self::V) -> Self::V;
    /// Rounds to the nearest integer, ties to even (for |a| < 2^22, all the kernels need).
    fn round(self, a: Self::V) -> Self::V;
    /// `p * 2^n` for integral `n` in [-252, 254], correct into the subnormal and overflow
    /// ranges.
    fn ldexp(self, p: Self::V, n: Self::V) -> Self::V;
    /// `a < b ? t : f` per lane.
    fn lt_select(self, a: Self::V, b: Self::V, t: Self::V, f: Self::V) -> Self::V;
    /// Sum of the lanes.
    fn reduce_add(self, a: Self::V) -> f32;
    /// Maximum of the lanes (NaN lanes are ignored unless all are NaN).
    fn reduce_max(self, a: Self::V) -> f32;
    /// Bit `i` set where `!(a[i] <= b[i])`: `a` greater, or either NaN.
    fn not_le_mask(self, a: Self::V, b: Self::V) -> u32;
    /// Swaps lanes `2i` and `2i + 1`.
    fn swap_pairs(self, a: Self::V) -> Self::V;
    /// The instruction-set path this token stands for.
    fn isa(self) -> Isa;
}

/// Defines `fn $name(isa, args...)`, which runs `$kernel($token, args...)` on path `isa`.
///
/// For each x86 path it defines a `#[target_feature]` function that calls the generic,
/// `#[inline(always)]` kernel directly, so the kernel (and every closure inside it, which
/// inherits the features) compiles with that path's instructions.
///
/// The generated function panics if the path is not supported on this host; entry points
/// check with `check_isa` first.
macro_rules! simd_entry {
    (fn $name:ident = $kernel:ident <$($g:ident : $b:path),*> ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)?) => {
        fn $name<$($g: $b),*>(isa: $crate::Isa, $($arg: $ty),*) $(-> $ret)? {
            assert!(isa.is_supported(), "{} is not supported here", isa.name());
            match isa {
                #[cfg(target_arch = "x86_64")]
                $crate::Isa::Avx2 => {
                    /// # Safety
                    /// - The host must support AVX2, FMA and F16C.
                    #[target_feature(enable = "avx2,fma,f16c")]
                    unsafe fn avx2<$($g: $b),*>($($arg: $ty),*) $(-> $ret)? {
                        // SAFETY: this function only runs where AVX2, FMA and F16C exist.
                        let s = unsafe { $crate::llm::simd::Avx2::new_unchecked() };
                        $kernel(s, $($arg),*)
                    }
                    // SAFETY: the host supports AVX2, FMA and F16C (asserted above).
                    unsafe { avx2($($arg),*) }
                }
                #[cfg(target_arch = "x86_64")]
                $crate::Isa::Avx512 => {
                    /// # Safety
                    /// - The host must support AVX-512 F/BW/DQ/VL, AVX2, FMA and F16C.
                    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
                    unsafe fn avx512<$($g: $b),*>($($arg: $ty),*) $(-> $ret)? {
                        // SAFETY: this function only runs where AVX-512 F/BW/DQ/VL exist.
                        let s = unsafe { $crate::llm::simd::Avx512::new_unchecked() };
                        $kernel(s, $($arg),*)
                    }
                    // SAFETY: the host supports AVX-512 F/BW/DQ/VL, FMA and F16C (asserted).
                    unsafe { avx512($($arg),*) }
                }
                _ => $kernel($crate::llm::simd::Portable, $($arg),*),
            }
        }
    };
}
pub(crate) use simd_entry;

// Row helpers are macros rather than functions taking closures: a closure is compiled as its
// own function with the target features of the function that defines it, which here has
// none, so its intrinsics would become calls. Macros put the body in the kernel itself.

/// Sum over a row `$x` of `$body` with `$v` bound to each vector of `$x` and `$a` to the
/// running accumulator (four of them); `$fill` pads the tail and must contribute nothing.
macro_rules! row_sum {
    ($s:expr, $x:expr, $fill:expr, |$v:ident, $a:ident| $body:expr) => {{
        let s = $s;
        let x: &[f32] = $x;
        let l = <_ as $crate::llm::simd::SimdLanes>::lanes(&s);
        let n = x.len();
        let mut acc = [s.splat(0.0); 4];
        let mut i = 0;
        while i + 4 * l <= n {
            for (k, acc_k) in acc.iter_mut().enumerate() {
                let $v = s.load(&x[i + k * l..]);
                let $a = *acc_k;
                *acc_k = $body;
            }
            i += 4 * l;
        }
        while i + l <= n {
            let $v = s.load(&x[i..]);
            let $a = acc[0];
            acc[0] = $body;
            i += l;
        }
        if i < n {
            let $v = s.load_part(&x[i..], $fill);
            let $a = acc[1];
            acc[1] = $body;
        }
        s.reduce_add(s.add(s.add(acc[0], acc[1]), s.add(acc[2], acc[3])))
    }};
}
pub(crate) use row_sum;

/// `$out[i] = $body` lane-wise with `$p` bound to vectors of `$a` and `$q` to vectors of `$b`
/// (`$a`, `$b` at least as long as `$out`).
macro_rules! map2 {
    ($s:expr, $a:expr, $b:expr, $out:expr, |$p:ident, $q:ident| $body:expr) => {{
        let s = $s;
        let a: &[f32] = $a;
        let b: &[f32] = $b;
        let out: &mut [f32] = $out;
        let l = <_ as $crate::llm::simd::SimdLanes>::lanes(&s);
        let n = out.len();
        let mut i = 0;
        while i + l <= n {
            let $p = s.load(&a[i..]);
            let $q = s.load(&b[i..]);
            s.store($body, &mut out[i..]);
            i += l;
        }
        if i < n {
            let $p = s.load_part(&a[i..n], 0.0);
            let $q = s.load_part(&b[i..n], 0.0);
            s.store_part($body, &mut out[i..n]);
        }
    }};
}
pub(crate) use map2;

/// Like [`map2`] with a third input `$c` bound to `$r`.
macro_rules! map3 {
    ($s:expr, $a:expr, $b:expr, $c:expr, $out:expr, |$p:ident, $q:ident, $r:ident| $body:expr) => {{
        let s = $s;
        let a: &[f32] = $a;
        let b: &[f32] = $b;
        let c: &[f32] = $c;
        let out: &mut [f32] = $out;
        let l = <_ as $crate::llm::simd::SimdLanes>::lanes(&s);
        let n = out.len();
        let mut i = 0;
        while i + l <= n {
            let $p = s.load(&a[i..]);
            let $q = s.load(&b[i..]);
            let $r = s.load(&c[i..]);
            s.store($body, &mut out[i..]);
            i += l;
        }
        if i < n {
            let $p = s.load_part(&a[i..n], 0.0);
            let $q = s.load_part(&b[i..n], 0.0);
            let $r = s.load_part(&c[i..n], 0.0);
            s.store_part($body, &mut out[i..n]);
        }
    }};
}
pub(crate) use map3;

/// Runs `$body` with `$o` bound to an f32 view of output row `$out` (of `T`): the row itself
/// for f32, else `$scratch`, narrowed into `$out` afterwards.
macro_rules! with_f32_out {
    ($isa:expr, $out:expr, $scratch:expr, |$o:ident| $body:expr) => {{
        let out = $out;
        let len = out.len();
        let scratch: &mut Vec<f32> = $scratch;
        let direct = $crate::llm::is_f32(&*out);
        if !direct {
            scratch.resize(len, 0.0);
        }
        {
            let $o: &mut [f32] = match $crate::llm::Element::as_f32_mut(&mut *out) {
                Some(o) => o,
                None => &mut scratch[..len],
            };
            $body;
        }
        if !direct {
            $crate::llm::Element::narrow($isa, &scratch[..len], out);
        }
    }};
}
pub(crate) use with_f32_out;

/// The lane count of a token, for the macros above.
pub(crate) trait SimdLanes {
    fn lanes(&self) -> usize;
}

impl<S: Simd> SimdLanes for S {
    #[inline(always)]
    fn lanes(&self) -> usize {
        S::LANES
    }
}

/// The portable path: eight lanes in an array.
#[derive(Clone, Copy)]
pub(crate) struct Portable;

const PL: usize = 8;

impl Simd for Portable {
    const LANES: usize = PL;
    type V = [f32; PL];
    #[inline(always)]
    fn isa(self) -> Isa {
        Isa::Portable
    }
    #[inline(always)]
    fn splat(self, x: f32) -> [f32; PL] {
        [x; PL]
    }
    #[inline(always)]
    fn load(self, s: &[f32]) -> [f32; PL] {
        let mut v = [0.0; PL];
        v.copy_from_slice(&s[..PL]);
        v
    }
    #[inline(always)]
    fn store(self, v: [f32; PL], s: &mut [f32]) {
        s[..PL].copy_from_slice(&v);
    }
    #[inline(always)]
    fn load_part(self, s: &[f32], fill: f32) -> [f32; PL] {
        let mut v = [fill; PL];
        let n = s.len().min(PL);
        v[..n].copy_from_slice(&s[..n]);
        v
    }
    #[inline(always)]
    fn store_part(self, v: [f32; PL], s: &mut [f32]) {
        let n = s.len().min(PL);
        s[..n].copy_from_slice(&v[..n]);
    }
    #[inline(always)]
    fn add(self, a: [f32; PL], b: [f32; PL]) -> [f32; PL] {
        std::array::from_fn(|i| a[i] + b[i])
    }
    #[inline(always)]
    fn sub(self, a: [f32; PL], b: [f32; PL]) -> [f32; PL] {
        std::array::from_fn(|i| a[i] - b[i])
    }
    #[inline(always)]
    fn mul(self, a: [f32; PL], b: [f32; PL]) -> [f32; PL] {
        std::array::from_fn(|i| a[i] * b[i])
    }
    #[inline(always)]
    fn div(self, a: [f32; PL], b: [f32; PL]) -> [f32; PL] {
        std::array::from_fn(|i| a[i] / b[i])
    }
    #[inline(always)]
    fn fma(self, a: [f32; PL], b: [f32; PL], c: [f32; PL]) -> [f32; PL] {
        // Unfused: `mul_add` is a library call on targets without FMA.
        std::array::from_fn(|i| a[i] * b[i] + c[i])
    }
    #[inline(always)]
    fn max(self, a: [f32; PL], b: [f32; PL]) -> [f32; PL] {
        std::array::from_fn(|i| if a[i] > b[i] { a[i] } else { b[i] })
    }
    #[inline(always)]
    fn min(self, a: [f32; PL], b: [f32; PL]) -> [f32; PL] {
        std::array::from_fn(|i| if a[i] < b[i] { a[i] } else { b[i] })
    }
    #[inline(always)]
    fn abs(self, a: [f32; PL]) -> [f32; PL] {
        std::array::from_fn(|i| a[i].abs())
    }
    #[inline(always)]
    fn round(self, a: [f32; PL]) -> [f32; PL] {
        // Adding and subtracting 1.5·2^23 rounds to an integer (ties to even) for |a| < 2^22,
        // which covers every use here, without the library call `round_ties_even` becomes on
        // targets lacking a rounding instruction.
        const MAGIC: f32 = 12_582_912.0;
        std::array::from_fn(|i| (a[i] + MAGIC) - MAGIC)
    }
    #[inline(always)]
    fn ldexp(self, p: [f32; PL], n: [f32; PL]) -> [f32; PL] {
        std::array::from_fn(|i| {
            let n1 = (n[i] * 0.5 + 12_582_912.0) - 12_582_912.0;
            let n2 = n[i] - n1;
            p[i] * pow2i_scalar(n1) * pow2i_scalar(n2)
        })
    }
    #[inline(always)]
    fn lt_select(self, a: [f32; PL], b: [f32; PL], t: [f32; PL], f: [f32; PL]) -> [f32; PL] {
        std::array::from_fn(|i| if a[i] < b[i] { t[i] } else { f[i] })
    }
    #[inline(always)]
    fn reduce_add(self, a: [f32; PL]) -> f32 {
        ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
    }
    #[inline(always)]
    fn reduce_max(self, a: [f32; PL]) -> f32 {
        a.iter()
            .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
    }
    #[inline(always)]
    fn not_le_mask(self, a: [f32; PL], b: [f32; PL]) -> u32 {
        (0..PL).fold(0, |m, i| {
            m | (u32::from(a[i] > b[i] || a[i].is_nan() || b[i].is_nan()) << i)
        })
    }
    #[inline(always)]
    fn swap_pairs(self, a: [f32; PL]) -> [f32; PL] {
        std::array::from_fn(|i| a[i ^ 1])
    }
}

/// `2^n` for integral `n` in [-126, 127].
///
/// Integer arithmetic on the bits of `n + 1.5·2^23` (whose low bits hold `n`) instead of
/// `n as i32`, whose saturating semantics do not vectorise.
#[inline(always)]
fn pow2i_scalar(n: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    let k = (n + MAGIC).to_bits().wrapping_sub(MAGIC.to_bits());
    f32::from_bits(k.wrapping_add(127) << 23)
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Simd;
    use std::arch::x86_64::*;

    /// The AVX2 + FMA + F16C path. Only `new_unchecked` makes one.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2(());

    /// The AVX-512 F/BW/DQ/VL path. Only `new_unchecked` makes one.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512(());

    impl Avx2 {
        /// The AVX2 token.
        ///
        /// # Safety
        /// - The host must support AVX2, FMA and F16C.
        #[inline(always)]
        pub(crate) unsafe fn new_unchecked() -> Avx2 {
            Avx2(())
        }
    }

    impl Avx512 {
        /// The AVX-512 token.
        ///
        /// # Safety
        /// - The host must support AVX-512 F/BW/DQ/VL, AVX2, FMA and F16C.
        #[inline(always)]
        pub(crate) unsafe fn new_unchecked() -> Avx512 {
            Avx512(())
        }
    }

    // The methods below are safe to call because a token exists only inside a function
    // compiled for its path, on a host that supports its instructions; loads and stores check
    // their slice lengths first.

    impl Simd for Avx2 {
        const LANES: usize = 8;
        type V = __m256;
        #[inline(always)]
        fn isa(self) -> crate::Isa {
            crate::Isa::Avx2
        }
        #[inline(always)]
        fn splat(self, x: f32) -> __m256 {
            // SAFETY: AVX is present (token).
            unsafe { _mm256_set1_ps(x) }
        }
        #[inline(always)]
        fn load(self, s: &[f32]) -> __m256 {
            let s = &s[..8];
            // SAFETY: `s` has 8 readable f32s; AVX is present (token).
            unsafe { _mm256_loadu_ps(s.as_ptr()) }
        }
        #[inline(always)]
        fn store(self, v: __m256, s: &mut [f32]) {
            let s = &mut s[..8];
            // SAFETY: `s` has 8 writable f32s; AVX is present (token).
            unsafe { _mm256_storeu_ps(s.as_mut_ptr(), v) }
        }
        #[inline(always)]
        fn load_part(self, s: &[f32], fill: f32) -> __m256 {
            let mut buf = [fill; 8];
            let n = s.len().min(8);
            buf[..n].copy_from_slice(&s[..n]);
            self.load(&buf)
        }
        #[inline(always)]
        fn store_part(self, v: __m256, s: &mut [f32]) {
            let mut buf = [0.0; 8];
            self.store(v, &mut buf);
            let n = s.len().min(8);
            s[..n].copy_from_slice(&buf[..n]);
        }
        #[inline(always)]
        fn add(self, a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX is present (token).
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        fn sub(self, a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX is present (token).
            unsafe { _mm256_sub_ps(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX is present (token).
            unsafe { _mm256_mul_ps(a, b) }
        }
        #[inline(always)]
        fn div(self, a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX is present (token).
            unsafe { _mm256_div_ps(a, b) }
        }
        #[inline(always)]
        fn fma(self, a: __m256, b: __m256, c: __m256) -> __m256 {
            // SAFETY: FMA is present (token).
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn max(self, a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX is present (token).
            unsafe { _mm256_max_ps(a, b) }
        }
        #[inline(always)]
        fn min(self, a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX is present (token).
            unsafe { _mm256_min_ps(a, b) }
        }
        #[inline(always)]
        fn abs(self, a: __m256) -> __m256 {
            // SAFETY: AVX is present (token).
            unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), a) }
        }
        #[inline(always)]
        fn round(self, a: __m256) -> __m256 {
            // SAFETY: AVX is present (token).
            unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
        }
        #[inline(always)]
        fn ldexp(self, p: __m256, n: __m256) -> __m256 {
            // SAFETY: AVX and AVX2 are present (token).
            unsafe {
                let half = _mm256_set1_ps(0.5);
                let n1 = self.round(_mm256_mul_ps(n, half));
                let n2 = _mm256_sub_ps(n, n1);
                let bias = _mm256_set1_epi32(127);
                let p1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
                    _mm256_cvtps_epi32(n1),
                    bias,
                )));
                let p2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
                    _mm256_cvtps_epi32(n2),
                    bias,
                )));
                _mm256_mul_ps(_mm256_mul_ps(p, p1), p2)
            }
        }
        #[inline(always)]
        fn lt_select(self, a: __m256, b: __m256, t: __m256, f: __m256) -> __m256 {
            // SAFETY: AVX is present (token).
            unsafe { _mm256_blendv_ps(f, t, _mm256_cmp_ps::<_CMP_LT_OQ>(a, b)) }
        }
        #[inline(always)]
        fn reduce_add(self, a: __m256) -> f32 {
            // SAFETY: AVX is present (token).
            unsafe {
                let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
                let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                let s = _mm_add_ss(s, _mm_movehdup_ps(s));
                _mm_cvtss_f32(s)
            }
        }
        #[inline(always)]
        fn reduce_max(self, a: __m256) -> f32 {
            let mut buf = [0.0; 8];
            self.store(a, &mut buf);
            buf.iter()
                .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
        }
        #[inline(always)]
        fn not_le_mask(self, a: __m256, b: __m256) -> u32 {
            // SAFETY: AVX is present (token).
            unsafe { _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NLE_UQ>(a, b)) as u32 }
        }
        #[inline(always)]
        fn swap_pairs(self, a: __m256) -> __m256 {
            // SAFETY: AVX is present (token).
            unsafe { _mm256_permute_ps::<0b10_11_00_01>(a) }
        }
    }

    impl Simd for Avx512 {
        const LANES: usize = 16;
        type V = __m512;
        #[inline(always)]
        fn isa(self) -> crate::Isa {
            crate::Isa::Avx512
        }
        #[inline(always)]
        fn splat(self, x: f32) -> __m512 {
            // SAFETY: AVX-512F is present (token).
            unsafe { _mm512_set1_ps(x) }
        }
        #[inline(always)]
        fn load(self, s: &[f32]) -> __m512 {
            let s = &s[..16];
            // SAFETY: `s` has 16 readable f32s; AVX-512F is present (token).
            unsafe { _mm512_loadu_ps(s.as_ptr()) }
        }
        #[inline(always)]
        fn store(self, v: __m512, s: &mut [f32]) {
            let s = &mut s[..16];
            // SAFETY: `s` has 16 writable f32s; AVX-512F is present (token).
            unsafe { _mm512_storeu_ps(s.as_mut_ptr(), v) }
        }
        #[inline(always)]
        fn load_part(self, s: &[f32], fill: f32) -> __m512 {
            let n = s.len().min(16);
            let k: __mmask16 = ((1u32 << n) - 1) as u16;
            // SAFETY: the mask covers only the first `n` elements, which `s` has; masked-off
            // lanes are not read (fault suppression). AVX-512F is present (token).
            unsafe { _mm512_mask_loadu_ps(_mm512_set1_ps(fill), k, s.as_ptr()) }
        }
        #[inline(always)]
        fn store_part(self, v: __m512, s: &mut [f32]) {
            let n = s.len().min(16);
            let k: __mmask16 = ((1u32 << n) - 1) as u16;
            // SAFETY: the mask covers only the first `n` elements, which `s` has; masked-off
            // lanes are not written. AVX-512F is present (token).
            unsafe { _mm512_mask_storeu_ps(s.as_mut_ptr(), k, v) }
        }
        #[inline(always)]
        fn add(self, a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (token).
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        fn sub(self, a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (token).
            unsafe { _mm512_sub_ps(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (token).
            unsafe { _mm512_mul_ps(a, b) }
        }
        #[inline(always)]
        fn div(self, a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (token).
            unsafe { _mm512_div_ps(a, b) }
        }
        #[inline(always)]
        fn fma(self, a: __m512, b: __m512, c: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (token).
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn max(self, a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (token).
            unsafe { _mm512_max_ps(a, b) }
        }
        #[inline(always)]
        fn min(self, a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (token).
            unsafe { _mm512_min_ps(a, b) }
        }
        #[inline(always)]
        fn abs(self, a: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (token).
            unsafe { _mm512_abs_ps(a) }
        }
        #[inline(always)]
        fn round(self, a: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (token).
            unsafe { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
        }
        #[inline(always)]
        fn ldexp(self, p: __m512, n: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (token). `vscalefps` handles overflow to infinity
            // and gradual underflow itself.
            unsafe { _mm512_scalef_ps(p, n) }
        }
        #[inline(always)]
        fn lt_select(self, a: __m512, b: __m512, t: __m512, f: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (token).
            unsafe { _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b), f, t) }
        }
        #[inline(always)]
        fn reduce_add(self, a: __m512) -> f32 {
            // SAFETY: AVX-512F is present (token).
            unsafe { _mm512_reduce_add_ps(a) }
        }
        #[inline(always)]
        fn reduce_max(self, a: __m512) -> f32 {
            let mut buf = [0.0; 16];
            self.store(a, &mut buf);
            buf.iter()
                .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
        }
        #[inline(always)]
        fn not_le_mask(self, a: __m512, b: __m512) -> u32 {
            // SAFETY: AVX-512F is present (token).
            unsafe { u32::from(_mm512_cmp_ps_mask::<_CMP_NLE_UQ>(a, b)) }
        }
        #[inline(always)]
        fn swap_pairs(self, a: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (token).
            unsafe { _mm512_permute_ps::<0b10_11_00_01>(a) }
        }
    }
}
