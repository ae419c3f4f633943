//! KNPU_KERNEL_SAMPLE (`KnpuSampleParams`, since ABI 2.1): one token id drawn from each row
//! of logits, with greedy, temperature, top-k and top-p, and the counter-based random
//! number every driver draws ([`uniform`]), so the same seed and counter give the same ids
//! everywhere.

use super::{float_size, product, rule, Extent, Extents, OpError};
use crate::sys::*;

/// The ABI minor (of major 2) that defined KNPU_KERNEL_SAMPLE.
pub const SINCE_MINOR: u32 = 1;

/// The token id dtypes of `out`: U32 or I32.
pub const ID_DTYPES: &str = "u32 or i32";

/// The largest vocabulary whose ids fit an I32 `out`.
pub const MAX_I32_VOCAB: u64 = 1 << 31;

/// `temperature`: finite and `>= 0` (0 is greedy).
pub fn check_temperature(temperature: f32) -> Result<(), OpError> {
    rule(
        temperature.is_finite() && temperature >= 0.0,
        "temperature",
        "temperature must be finite and >= 0",
    )
}

/// `top_p`: in `(0, 1]`.
pub fn check_top_p(top_p: f32) -> Result<(), OpError> {
    rule(
        top_p > 0.0 && top_p <= 1.0,
        "top_p",
        "top_p must be in (0, 1]",
    )
}

/// `top_k`: at most `vocab` (0 keeps every id).
pub fn check_top_k(top_k: u64, vocab: u64) -> Result<(), OpError> {
    rule(top_k <= vocab, "top_k", "top_k must be at most vocab")
}

/// The shape `[rows, vocab]` with ids of dtype `out_dtype`: at least one id when there are
/// rows, and every id fits the dtype. Returns `rows * vocab`.
pub fn check_shape(rows: u64, vocab: u64, out_dtype: u32) -> Result<u64, OpError> {
    if !matches!(out_dtype, KNPU_DTYPE_U32 | KNPU_DTYPE_I32) {
        return Err(OpError::Dtype {
            operand: "out",
            dtype: out_dtype,
            expected: ID_DTYPES,
        });
    }
    if rows > 0 && vocab == 0 {
        return Err(OpError::Rule {
            operand: "vocab",
            rule: "sampling needs at least one id per row",
        });
    }
    let limit = if out_dtype == KNPU_DTYPE_I32 {
        MAX_I32_VOCAB
    } else {
        u64::from(u32::MAX) + 1
    };
    rule(vocab <= limit, "vocab", "every id must fit out's dtype")?;
    product("logits", &[rows, vocab])
}

/// Checks the scalars of a sampling launch (temperature, top_k, top_p).
pub fn check_params(temperature: f32, top_k: u64, top_p: f32, vocab: u64) -> Result<(), OpError> {
    check_temperature(temperature)?;
    check_top_p(top_p)?;
    check_top_k(top_k, vocab)
}

/// KNPU_KERNEL_SAMPLE: extents `logits`, `out`, and `rng_counter` (an output: the kernel
/// reads and increments it) when given. `rng_counter` may be 0 only for greedy sampling.
pub fn validate(p: &KnpuSampleParams) -> Result<Extents, OpError> {
    let size = float_size("logits", p.dtype)?;
    let n = check_shape(p.rows, p.vocab, p.out_dtype)?;
    check_params(p.temperature, p.top_k, p.top_p, p.vocab)?;
    let work = p.rows > 0;
    let out = Extent::new("out", p.out, p.rows, 4, true)?;
    let mut e = Extents::default();
    e.push(Extent::new("logits", p.logits, n, size, false)?);
    e.push(out);
    if p.rng_counter != 0 || p.temperature > 0.0 {
        let counter = Extent::new("rng_counter", p.rng_counter, u64::from(work), 8, true)?;
        if counter.overlaps(&out) {
            return Err(OpError::Overlap {
                output: "out",
                other: "rng_counter",
            });
        }
        e.push(counter);
    }
    Ok(e)
}

/// splitmix64's finaliser.
const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One splitmix64 step from state `z`.
const fn step(z: u64) -> u64 {
    mix(z.wrapping_add(0x9E37_79B9_7F4A_7C15))
}

/// The uniform number in `[0, 1)` that row `row` draws with `seed` when the counter holds
/// `counter`: `(h >> 11) * 2^-53` with `h = step(step(step(seed) ^ counter) ^ row)`, as the
/// header defines it. Every driver draws exactly this number.
pub const fn uniform(seed: u64, counter: u64, row: u64) -> f64 {
    let h = step(step(step(seed) ^ counter) ^ row);
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SizedStruct;

    fn params() -> KnpuSampleParams {
        let mut p = KnpuSampleParams::sized();
        (p.dtype, p.out_dtype) = (KNPU_DTYPE_F32, KNPU_DTYPE_U32);
        (p.rows, p.vocab, p.top_k, p.seed) = (2, 10, 0, 7);
        (p.logits, p.out, p.rng_counter) = (0x1000, 0x2000, 0x3000);
        (p.temperature, p.top_p) = (0.8, 0.9);
        p
    }

    fn rule_at(p: &KnpuSampleParams) -> Option<&'static str> {
        validate(p).err().and_then(|e| e.operand())
    }

    #[test]
    fn every_parameter_is_checked() {
        let ok = params();
        let e = validate(&ok).unwrap();
        assert_eq!(e.get("logits").unwrap().bytes, 80);
        assert_eq!(e.get("out").unwrap().bytes, 8);
        assert_eq!(e.get("rng_counter").unwrap().bytes, 8);
        for t in [-0.5, f32::NAN, f32::INFINITY] {
            assert_eq!(
                rule_at(&KnpuSampleParams {
                    temperature: t,
                    ..ok
                }),
                Some("temperature")
            );
        }
        for tp in [0.0, -0.1, 1.01, f32::NAN] {
            assert_eq!(
                rule_at(&KnpuSampleParams { top_p: tp, ..ok }),
                Some("top_p")
            );
        }
        assert_eq!(
            rule_at(&KnpuSampleParams { top_k: 11, ..ok }),
            Some("top_k")
        );
        assert!(validate(&KnpuSampleParams { top_k: 10, ..ok }).is_ok());
        assert_eq!(rule_at(&KnpuSampleParams { vocab: 0, ..ok }), Some("vocab"));
        assert_eq!(
            rule_at(&KnpuSampleParams {
                rng_counter: 0,
                ..ok
            }),
            Some("rng_counter")
        );
        assert_eq!(
            rule_at(&KnpuSampleParams {
                rng_counter: 0x3004,
                ..ok
            }),
            Some("rng_counter")
        );
        assert!(matches!(
            validate(&KnpuSampleParams {
                rng_counter: 0x2000,
                ..ok
            }),
            Err(OpError::Overlap { .. })
        ));
        let bad_out = validate(&KnpuSampleParams {
            out_dtype: KNPU_DTYPE_F32,
            ..ok
        });
        assert_eq!(bad_out.unwrap_err().status(), KNPU_STATUS_NOT_SUPPORTED);
        let bad_in = validate(&KnpuSampleParams {
            dtype: KNPU_DTYPE_I32,
            ..ok
        });
        assert_eq!(bad_in.unwrap_err().status(), KNPU_STATUS_NOT_SUPPORTED);
        let i32_ids = KnpuSampleParams {
            out_dtype: KNPU_DTYPE_I32,
            rows: 1,
            ..ok
        };
        assert_eq!(
            rule_at(&KnpuSampleParams {
                vocab: MAX_I32_VOCAB + 1,
                ..i32_ids
            }),
            Some("vocab")
        );
        assert_eq!(
            rule_at(&KnpuSampleParams {
                rows: u64::MAX,
                vocab: 2,
                ..ok
            }),
            Some("logits")
        );
    }

    #[test]
    fn greedy_needs_no_counter_and_empty_launches_touch_nothing() {
        let greedy = KnpuSampleParams {
            temperature: 0.0,
            rng_counter: 0,
            ..params()
        };
        let e = validate(&greedy).unwrap();
        assert!(e.get("rng_counter").is_none());
        let empty = KnpuSampleParams {
            rows: 0,
            logits: 0,
            out: 0,
            rng_counter: 0,
            ..params()
        };
        assert!(validate(&empty)
            .unwrap()
            .as_slice()
            .iter()
            .all(|x| x.bytes == 0));
    }

    #[test]
    fn uniform_is_the_header_hash() {
        // splitmix64 from state 0 gives 0xE220A8397B1DCDAF as its first output.
        assert_eq!(step(0), 0xE220_A839_7B1D_CDAF);
        let u = uniform(1, 2, 3);
        assert!((0.0..1.0).contains(&u));
        assert_ne!(uniform(1, 2, 3), uniform(1, 3, 3));
        assert_ne!(uniform(1, 2, 3), uniform(1, 2, 4));
        assert_ne!(uniform(1, 2, 3), uniform(2, 2, 3));
        let h = step(step(step(1) ^ 2) ^ 3);
        assert_eq!(u, (h >> 11) as f64 / 9007199254740992.0);
    }
}
