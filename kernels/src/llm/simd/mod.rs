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

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;

#[cfg(target_arch = "x86_64")]
pub(crate) use avx2::Avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) use avx512::Avx512;
pub(crate) use portable::Portable;

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

/// Defines the [`Simd`] methods of an x86 token that are one intrinsic each, from a table of
/// `method(args) => intrinsic;` rows (inside the token's `impl Simd`, `$v` its vector type).
/// A token exists only inside a function compiled for its path on a host that has it, so the
/// intrinsic's features are present and the call is safe.
#[cfg(target_arch = "x86_64")]
macro_rules! one_instruction {
    ($v:ty; $($name:ident($($arg:ident),+) => $intrinsic:path;)*) => {
        $(
            #[inline(always)]
            fn $name(self, $($arg: $v),+) -> $v {
                // SAFETY: the token proves the path's features are present (see above).
                unsafe { $intrinsic($($arg),+) }
            }
        )*
    };
}
#[cfg(target_arch = "x86_64")]
pub(crate) use one_instruction;

/// Defines `fn $name(isa, args...)`, which runs `$kernel($token, args...)` on path `isa`.
///
/// For each x86 path it defines a `#[target_feature]` function that calls the generic,
/// `#[inline(always)]` kernel directly, so the kernel (and every closure inside it, which
/// inherits the features) compiles with that path's instructions.
///
/// The generated function panics if the path is not supported on this host; entry points
/// check with [`Isa::require`](crate::Isa::require) first.
macro_rules! simd_entry {
    (fn $name:ident = $kernel:ident <$($g:ident : $b:path),*> ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)?) => {
        fn $name<$($g: $b),*>(isa: $crate::Isa, $($arg: $ty),*) $(-> $ret)? {
            assert!(isa.is_supported(), "{} is not supported here", isa.name());
            match isa {
                #[cfg(target_arch = "x86_64")]
                $crate::Isa::Avx2 => $crate::llm::simd::simd_entry!(
                    @x86 "avx2,fma,f16c", Avx2,
                    $kernel<$($g: $b),*>($($arg: $ty),*) $(-> $ret)?
                ),
                #[cfg(target_arch = "x86_64")]
                $crate::Isa::Avx512 => $crate::llm::simd::simd_entry!(
                    @x86 "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c", Avx512,
                    $kernel<$($g: $b),*>($($arg: $ty),*) $(-> $ret)?
                ),
                _ => $kernel($crate::llm::simd::Portable, $($arg),*),
            }
        }
    };
    // One x86 arm: a function compiled with `$features` that makes token `$token` (whose
    // path needs exactly those features) and runs the kernel with it.
    (@x86 $features:literal, $token:ident, $kernel:ident <$($g:ident : $b:path),*> ($($arg:ident : $ty:ty),*) $(-> $ret:ty)?) => {{
        /// # Safety
        /// - The host must support every feature this function enables.
        #[target_feature(enable = $features)]
        unsafe fn entry<$($g: $b),*>($($arg: $ty),*) $(-> $ret)? {
            // SAFETY: this function only runs where its path's features exist.
            let s = unsafe { $crate::llm::simd::$token::new_unchecked() };
            $kernel(s, $($arg),*)
        }
        // SAFETY: the host supports this path (asserted above), and the features enabled are
        // the path's (isa.rs).
        unsafe { entry($($arg),*) }
    }};
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

/// `$out[i] = $body` lane-wise, with each `$v` bound to the vector of its input `$x` at `i`
/// (every input at least as long as `$out`; tail lanes read as 0).
macro_rules! map {
    ($s:expr, [$($x:expr),+], $out:expr, |$($v:ident),+| $body:expr) => {{
        let s = $s;
        // Every input is evaluated before any name is bound, as a call would.
        let ($($v,)+) = ($({
            let x: &[f32] = $x;
            x
        },)+);
        let out: &mut [f32] = $out;
        let l = <_ as $crate::llm::simd::SimdLanes>::lanes(&s);
        let n = out.len();
        let mut i = 0;
        while i + l <= n {
            $(let $v = s.load(&$v[i..]);)+
            s.store($body, &mut out[i..]);
            i += l;
        }
        if i < n {
            $(let $v = s.load_part(&$v[i..n], 0.0);)+
            s.store_part($body, &mut out[i..n]);
        }
    }};
}
pub(crate) use map;

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
