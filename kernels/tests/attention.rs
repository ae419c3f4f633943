//! Fused attention against a plain f64 reference, on every instruction-set path the host
//! runs: sequence lengths 1, 2, 7, 64, 65 (and 1000 for a few cases), head_dim 32, 64, 80, 96,
//! 128 and an odd 17, GQA ratios 1, 3 and 8, causal masks with the query block offset into a
//! longer key sequence, padded batches, sliding windows, both memory layouts, contiguous and
//! paged caches, f32/f16/bf16, split-KV decode and the log-sum-exp output.
//!
//! Tolerances (absolute, outputs are averages of values in [-1, 1]): f32 2e-5 (the SIMD exp
//! has about 2 ulp error and tiles sum in another order than the reference); f16 and bf16
//! outputs are compared after rounding the inputs the same way, so the bound is the output
//! rounding plus a little: 2e-3 for f16, 1.6e-2 for bf16. Log-sum-exp: 1e-4 (relative to
//! its magnitude, plus absolute).

use half::{bf16, f16};
use knpu_kernels::attention::{
    attention, kv_append, paged_attention, paged_kv_append, AttentionInputs, AttentionParams,
    AttnElement, AttnMask, AttnTensor, NewKv, PagedAttentionInputs, PagedAttentionParams,
    PagedKvCache,
};
use knpu_kernels::{isa, Exec, Isa, KernelError, Parallelism};

mod common;

use common::Rng;

impl Rng {
    /// `n` values uniform in [-amp, amp).
    fn vec<T: AttnElement>(&mut self, n: usize, amp: f32) -> Vec<T> {
        (0..n).map(|_| T::from_f32(self.unit() * amp)).collect()
    }
    /// Random queries, keys and values for `p`.
    fn qkv<T: AttnElement>(&mut self, p: &AttentionParams) -> (Vec<T>, Vec<T>, Vec<T>) {
        let q = self.vec(p.q.required_len().unwrap(), 1.0);
        let k = self.vec(p.k.required_len().unwrap(), 1.0);
        (q, k, self.vec(p.v.required_len().unwrap(), 1.0))
    }
}

/// The f64 reference: returns `out` as dense `[batch, q_len, q_heads, d]` and `lse` as
/// `[batch, q_heads, q_len]`.
#[allow(clippy::too_many_arguments)]
fn reference<T: AttnElement>(
    p: &AttentionParams,
    q: &[T],
    k: &[T],
    v: &[T],
    kv_lens: Option<&[u32]>,
) -> (Vec<f64>, Vec<f64>) {
    let (b_n, q_len, hq, d) = (p.q.batch, p.q.seq, p.q.heads, p.q.head_dim);
    let g = hq / p.k.heads;
    let scale = p.mask.scale.map_or(1.0 / (d as f64).sqrt(), |s| s as f64);
    let at = |t: &AttnTensor, x: &[T], b: usize, s: usize, h: usize, c: usize| -> f64 {
        x[b * t.batch_stride + s * t.seq_stride + h * t.head_stride + c].to_f32() as f64
    };
    let mut out = vec![0.0; b_n * q_len * hq * d];
    let mut lse = vec![f64::NEG_INFINITY; b_n * hq * q_len];
    for b in 0..b_n {
        let kvl = kv_lens.map_or(p.k.seq, |l| l[b] as usize);
        for h in 0..hq {
            let kh = h / g;
            for i in 0..q_len {
                let pos = kvl as i64 - q_len as i64 + i as i64;
                let mut scores = Vec::new();
                for j in 0..kvl {
                    let jj = j as i64;
                    if p.mask.causal && jj > pos {
                        continue;
                    }
                    if let Some(w) = p.mask.window {
                        let w = w as i64;
                        if jj <= pos - w || (!p.mask.causal && jj >= pos + w) {
                            continue;
                        }
                    }
                    let s: f64 = (0..d)
                        .map(|c| at(&p.q, q, b, i, h, c) * at(&p.k, k, b, j, kh, c))
                        .sum();
                    scores.push((j, s * scale));
                }
                if scores.is_empty() {
                    continue;
                }
                let m = scores.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = scores.iter().map(|s| (s.1 - m).exp()).sum();
                lse[(b * hq + h) * q_len + i] = m + sum.ln();
                for c in 0..d {
                    let acc: f64 = scores
                        .iter()
                        .map(|&(j, s)| (s - m).exp() * at(&p.v, v, b, j, kh, c))
                        .sum();
                    out[((b * q_len + i) * hq + h) * d + c] = acc / sum;
                }
            }
        }
    }
    (out, lse)
}

fn tol<T: AttnElement>() -> f64 {
    match T::NAME {
        "f32" => 2e-5,
        "f16" => 2e-3,
        _ => 1.6e-2,
    }
}

#[allow(clippy::too_many_arguments)]
fn check_against_reference<T: AttnElement>(
    what: &str,
    p: &AttentionParams,
    q: &[T],
    k: &[T],
    v: &[T],
    out: &[T],
    lse: &[f32],
    kv_lens: Option<&[u32]>,
) {
    let (want, want_lse) = reference(p, q, k, v, kv_lens);
    let (b_n, q_len, hq, d) = (p.q.batch, p.q.seq, p.q.heads, p.q.head_dim);
    let t = tol::<T>();
    for b in 0..b_n {
        for i in 0..q_len {
            for h in 0..hq {
                for c in 0..d {
                    let got = out
                        [p.out.batch_stride * b + p.out.seq_stride * i + p.out.head_stride * h + c]
                        .to_f32() as f64;
                    let w = want[((b * q_len + i) * hq + h) * d + c];
                    assert!(
                        (got - w).abs() <= t,
                        "{what}: out[b={b}, i={i}, h={h}, c={c}] = {got}, want {w}"
                    );
                }
                let gl = lse[(b * hq + h) * q_len + i] as f64;
                let wl = want_lse[(b * hq + h) * q_len + i];
                if wl == f64::NEG_INFINITY {
                    assert_eq!(gl, f64::NEG_INFINITY, "{what}: lse of a fully masked row");
                } else {
                    assert!(
                        (gl - wl).abs() <= 1e-4 * (1.0 + wl.abs()),
                        "{what}: lse[b={b}, h={h}, i={i}] = {gl}, want {wl}"
                    );
                }
            }
        }
    }
}

/// Runs one configuration on every ISA path and checks it.
#[allow(clippy::too_many_arguments)]
fn run_case<T: AttnElement>(
    seed: u64,
    p: &AttentionParams,
    kv_lens: Option<&[u32]>,
    par: Parallelism,
    amp: f32,
) {
    let mut rng = Rng(seed | 1);
    let q: Vec<T> = rng.vec(p.q.required_len().unwrap(), amp);
    let k: Vec<T> = rng.vec(p.k.required_len().unwrap(), amp);
    let v: Vec<T> = rng.vec(p.v.required_len().unwrap(), 1.0);
    for isa in isa::supported() {
        let mut out = vec![T::from_f32(f32::NAN); p.out.required_len().unwrap()];
        let mut lse = vec![f32::NAN; p.q.batch * p.q.heads * p.q.seq];
        let inputs = AttentionInputs {
            kv_lens,
            ..AttentionInputs::new(&q, &k, &v)
        };
        attention(p, inputs, &mut out, Some(&mut lse), Exec::new(isa, par)).unwrap();
        let what = format!(
            "{} {} q={:?} k={:?} mask={:?} lens={kv_lens:?} {par:?}",
            isa.name(),
            T::NAME,
            (p.q.batch, p.q.seq, p.q.heads, p.q.head_dim),
            (p.k.seq, p.k.heads),
            p.mask
        );
        check_against_reference(&what, p, &q, &k, &v, &out, &lse, kv_lens);
    }
}

const CAUSAL: AttnMask = AttnMask {
    causal: true,
    window: None,
    scale: None,
};
const FULL: AttnMask = AttnMask {
    causal: false,
    window: None,
    scale: None,
};

/// `mask` with softmax scale `scale` instead of `1/sqrt(head_dim)`.
fn scaled(mask: AttnMask, scale: f32) -> AttnMask {
    AttnMask {
        scale: Some(scale),
        ..mask
    }
}

#[test]
fn sampled_shapes_match_reference() {
    let seqs = [1usize, 2, 7, 64, 65];
    let dims = [32usize, 64, 80, 96, 128, 17];
    let groups = [(2usize, 2usize), (3, 1), (8, 1), (6, 2)];
    let mut n = 0u64;
    for (si, &seq) in seqs.iter().enumerate() {
        for (di, &d) in dims.iter().enumerate() {
            // Every sequence length meets every head_dim; heads and masks rotate.
            let (hq, hk) = groups[(si + di) % groups.len()];
            let mask = if (si + di) % 2 == 0 { CAUSAL } else { FULL };
            let par = if di % 2 == 0 {
                Parallelism::None
            } else {
                Parallelism::Rayon(2)
            };
            n += 1;
            let p = AttentionParams::bshd(1 + (di % 2), seq, seq, hq, hk, d, mask);
            run_case::<f32>(n, &p, None, par, 1.0);
        }
    }
}

#[test]
fn every_gqa_ratio_and_head_dim_at_one_tile_past_the_edge() {
    for (hq, hk) in [(4usize, 4usize), (6, 2), (8, 1)] {
        for d in [32usize, 64, 80, 96, 128] {
            let p = AttentionParams::bshd(1, 65, 65, hq, hk, d, CAUSAL);
            run_case::<f32>(
                hq as u64 * 1000 + d as u64,
                &p,
                None,
                Parallelism::Rayon(2),
                1.0,
            );
        }
    }
}

#[test]
fn long_sequences_match_reference() {
    let p = AttentionParams::bshd(1, 1000, 1000, 3, 1, 64, CAUSAL);
    run_case::<f32>(11, &p, None, Parallelism::Rayon(2), 1.0);
    let p = AttentionParams::bshd(1, 1000, 1000, 2, 2, 32, FULL);
    run_case::<bf16>(12, &p, None, Parallelism::Rayon(2), 1.0);
}

#[test]
fn half_types_match_reference() {
    for (seq, d, hq, hk) in [
        (7usize, 64usize, 3usize, 1usize),
        (65, 80, 8, 1),
        (64, 128, 2, 2),
    ] {
        let p = AttentionParams::bshd(2, seq, seq, hq, hk, d, CAUSAL);
        run_case::<f16>(seq as u64, &p, None, Parallelism::Rayon(2), 1.0);
        run_case::<bf16>(seq as u64 + 1, &p, None, Parallelism::None, 1.0);
    }
}

#[test]
fn large_scores_rescale_correctly() {
    // Scores up to ~50 make each new tile's maximum jump, exercising the online rescale.
    let p = AttentionParams::bshd(1, 130, 130, 2, 1, 32, scaled(CAUSAL, 1.0));
    run_case::<f32>(5, &p, None, Parallelism::None, 1.3);
}

#[test]
fn causal_with_query_offset_for_chunked_prefill_and_decode() {
    for (q_len, kv_len) in [
        (1usize, 1usize),
        (1, 65),
        (2, 64),
        (7, 65),
        (64, 1000),
        (3, 1000),
    ] {
        let p = AttentionParams::bshd(1, q_len, kv_len, 9, 3, 64, CAUSAL);
        let seed = q_len as u64 * 7 + kv_len as u64;
        run_case::<f32>(seed, &p, None, Parallelism::Rayon(2), 1.0);
    }
    // More query rows than keys: the first rows see nothing and must be zeros.
    let p = AttentionParams::bshd(1, 7, 3, 2, 1, 32, CAUSAL);
    run_case::<f32>(3, &p, None, Parallelism::None, 1.0);
}

#[test]
fn few_row_blocks_cover_every_row_count_and_head_dim_tail() {
    // Decode-style blocks (query positions times group at most 16 rows) take the dot-product
    // score kernel, which pairs rows: odd and even row counts, head dims with and without a
    // partial last vector, key counts around the tile size, and the causal prefix mask.
    let shapes = [
        (1usize, 1usize, 1usize),
        (1, 3, 1),
        (1, 8, 1),
        (2, 3, 1),
        (1, 9, 3),
        (2, 8, 1),
        (5, 3, 1),
        (7, 2, 1),
        (1, 16, 2),
    ];
    let mut n = 0u64;
    for (si, &(q_len, hq, hk)) in shapes.iter().enumerate() {
        for d in [17usize, 64, 80] {
            for kv in [1usize, 2, 7, 33, 65, 1000] {
                n += 1;
                let mask = if (si + kv) % 2 == 0 { CAUSAL } else { FULL };
                let p = AttentionParams::bshd(1, q_len, kv, hq, hk, d, mask);
                run_case::<f32>(n, &p, None, Parallelism::None, 1.0);
                if kv == 65 {
                    run_case::<f16>(n, &p, None, Parallelism::None, 1.0);
                    run_case::<bf16>(n, &p, None, Parallelism::None, 1.0);
                }
            }
        }
    }
}

#[test]
fn decode_split_kv_matches_reference() {
    // One query per sequence over a long cache: the key range is split across tasks and
    // merged by log-sum-exp (2 and 4 tasks), and also run unsplit.
    for par in [
        Parallelism::None,
        Parallelism::Rayon(2),
        Parallelism::Rayon(4),
    ] {
        // The caches are over 1 MiB, so the work is split rather than run on one thread.
        let p = AttentionParams::bshd(1, 1, 2500, 8, 1, 128, CAUSAL);
        run_case::<f32>(21, &p, None, par, 1.0);
        let p = AttentionParams::bshd(2, 2, 3000, 6, 2, 80, CAUSAL);
        run_case::<f16>(22, &p, Some(&[3000, 1310]), par, 1.0);
    }
    // A short cache runs on the calling thread whatever the grant.
    let p = AttentionParams::bshd(2, 1, 300, 6, 2, 80, CAUSAL);
    run_case::<f32>(23, &p, Some(&[300, 131]), Parallelism::Rayon(2), 1.0);
}

#[test]
fn padded_batches_mask_keys_past_each_length() {
    // BERT-style: no causal mask, each sequence its own length, one empty.
    let p = AttentionParams::bshd(4, 65, 65, 4, 4, 64, FULL);
    run_case::<f32>(31, &p, Some(&[65, 7, 0, 64]), Parallelism::Rayon(2), 1.0);
    // Causal with lengths: query positions end at each sequence's last key.
    let p = AttentionParams::bshd(3, 5, 70, 6, 2, 32, CAUSAL);
    run_case::<f32>(32, &p, Some(&[70, 5, 2]), Parallelism::None, 1.0);
}

#[test]
fn sliding_windows_match_reference() {
    for (w, causal) in [(1usize, true), (16, true), (100, true), (9, false)] {
        let mask = AttnMask {
            window: Some(w),
            ..if causal { CAUSAL } else { FULL }
        };
        let p = AttentionParams::bshd(1, 150, 150, 3, 1, 32, mask);
        run_case::<f32>(w as u64, &p, None, Parallelism::Rayon(2), 1.0);
        let p = AttentionParams::bshd(1, 3, 200, 3, 1, 64, mask);
        run_case::<f32>(w as u64 + 1, &p, None, Parallelism::Rayon(2), 1.0);
    }
}

#[test]
fn head_major_and_mixed_layouts_match_reference() {
    let (b, s, hq, hk, d) = (2usize, 65usize, 6usize, 2usize, 64usize);
    let p = AttentionParams {
        q: AttnTensor::bhsd(b, s, hq, d),
        k: AttnTensor::bhsd(b, s, hk, d),
        v: AttnTensor::bshd(b, s, hk, d),
        out: AttnTensor::bhsd(b, s, hq, d),
        mask: CAUSAL,
    };
    run_case::<f32>(41, &p, None, Parallelism::Rayon(2), 1.0);
    // Q inside a wider buffer (a fused QKV projection): row stride larger than heads * d.
    let mut q = AttnTensor::bshd(b, s, hq, d);
    q.seq_stride = (hq + 2 * hk) * d;
    q.batch_stride = s * q.seq_stride;
    let p = AttentionParams {
        q,
        ..AttentionParams::bshd(b, s, s, hq, hk, d, FULL)
    };
    run_case::<f32>(42, &p, None, Parallelism::None, 1.0);
}

#[test]
fn non_default_scale() {
    let p = AttentionParams::bshd(1, 7, 9, 2, 1, 96, scaled(FULL, 0.05));
    run_case::<f32>(51, &p, None, Parallelism::None, 1.0);
}

/// The contiguous and the paged attention problem of queries `q` over keys and values laid
/// out as `kv` (contiguous) or in `cache` (paged, `max_blocks` table entries a sequence).
fn contiguous_and_paged(
    q: AttnTensor,
    kv: AttnTensor,
    cache: PagedKvCache,
    max_blocks: usize,
) -> (AttentionParams, PagedAttentionParams) {
    let paged = PagedAttentionParams {
        q,
        out: q,
        cache,
        max_blocks_per_seq: max_blocks,
        mask: CAUSAL,
    };
    (
        AttentionParams {
            q,
            k: kv,
            v: kv,
            out: q,
            mask: CAUSAL,
        },
        paged,
    )
}

/// Paged attention of `q` over the paged `(k, v)` cache through `isa`: the output and the
/// log-sum-exp, both started as NaN so that a value the kernel leaves unwritten shows.
fn run_paged<T: AttnElement>(
    isa: Isa,
    pp: &PagedAttentionParams,
    q: &[T],
    (k_cache, v_cache): (&[T], &[T]),
    (block_table, kv_lens): (&[u32], &[u32]),
    par: Parallelism,
) -> (Vec<T>, Vec<f32>) {
    let mut out = vec![T::from_f32(f32::NAN); pp.out.required_len().unwrap()];
    let mut lse = vec![f32::NAN; pp.q.batch * pp.q.heads * pp.q.seq];
    let inputs = PagedAttentionInputs {
        q,
        k_cache,
        v_cache,
        block_table,
        kv_lens,
    };
    paged_attention(pp, inputs, &mut out, Some(&mut lse), Exec::new(isa, par)).unwrap();
    (out, lse)
}

/// Builds a paged cache by appending in chunks through a shuffled block table, and a
/// contiguous cache the same way; paged and contiguous attention must agree with each other
/// and with the reference.
fn paged_matches_contiguous<T: AttnElement>(block_size: usize, hq: usize, hk: usize, d: usize) {
    let batch = 3usize;
    let lens = [37usize, 130, 1];
    let cap = 160usize;
    let max_blocks = cap.div_ceil(block_size);
    let num_blocks = batch * max_blocks + 3;
    let mut rng = Rng(77 + block_size as u64);
    let cache_t = AttnTensor::bshd(batch, cap, hk, d);
    let mut kc = vec![T::from_f32(0.0); cache_t.required_len().unwrap()];
    let mut vc = kc.clone();
    let paged = PagedKvCache::dense(num_blocks, block_size, hk, d);
    let mut kp = vec![T::from_f32(0.0); paged.required_len().unwrap()];
    let mut vp = kp.clone();
    // Blocks handed out in a scrambled order.
    let mut ids: Vec<u32> = (0..num_blocks as u32).collect();
    for i in (1..ids.len()).rev() {
        let j = ((rng.unit() + 1.0) * 0.5 * i as f32) as usize % (i + 1);
        ids.swap(i, j);
    }
    let table: Vec<u32> = ids[..batch * max_blocks].to_vec();
    let mut cur = [0u32; 3];
    // Append in chunks of 30 positions (masking past each length by clamping).
    let chunk = 30usize;
    while (0..batch).any(|b| (cur[b] as usize) < lens[b]) {
        let new_t = AttnTensor::bshd(batch, chunk, hk, d);
        let kn: Vec<T> = rng.vec(new_t.required_len().unwrap(), 1.0);
        let vn: Vec<T> = rng.vec(new_t.required_len().unwrap(), 1.0);
        if (0..batch).all(|b| cur[b] as usize + chunk <= cap) {
            let new = NewKv {
                shape: new_t,
                k: &kn,
                v: &vn,
            };
            kv_append(&cache_t, &mut kc, &mut vc, new, &cur).unwrap();
            paged_kv_append(&paged, &mut kp, &mut vp, new, &table, max_blocks, &cur).unwrap();
        }
        for b in 0..batch {
            cur[b] = (cur[b] + chunk as u32).min(lens[b] as u32);
        }
        if cur.iter().zip(lens).all(|(&c, l)| c as usize == l) {
            break;
        }
    }
    // The appends above wrote 30-position chunks; positions past `lens` hold extra data that
    // the lengths mask.
    let kv_lens: Vec<u32> = lens.iter().map(|&l| l as u32).collect();
    for q_len in [1usize, 4] {
        let q_t = AttnTensor::bshd(batch, q_len, hq, d);
        let q: Vec<T> = rng.vec(q_t.required_len().unwrap(), 1.0);
        let (cp, pp) = contiguous_and_paged(q_t, cache_t, paged, max_blocks);
        for isa in isa::supported() {
            for par in [Parallelism::None, Parallelism::Rayon(2)] {
                let n = q_t.required_len().unwrap();
                let mut oc = vec![T::from_f32(0.0); n];
                let mut lc = vec![0.0f32; batch * hq * q_len];
                attention(
                    &cp,
                    AttentionInputs {
                        q: &q,
                        k: &kc,
                        v: &vc,
                        kv_lens: Some(&kv_lens),
                    },
                    &mut oc,
                    Some(&mut lc),
                    Exec::new(isa, par),
                )
                .unwrap();
                let (op, lp) = run_paged(isa, &pp, &q, (&kp, &vp), (&table, &kv_lens), par);
                let what = format!("paged bs={block_size} {} {} {par:?}", isa.name(), T::NAME);
                check_against_reference(&what, &cp, &q, &kc, &vc, &op, &lp, Some(&kv_lens));
                for (a, b) in oc.iter().zip(&op) {
                    let (a, b) = (a.to_f32(), b.to_f32());
                    assert!((a - b).abs() <= tol::<T>() as f32, "{what}: {a} vs {b}");
                }
            }
        }
    }
}

#[test]
fn paged_cache_matches_contiguous_cache() {
    paged_matches_contiguous::<f32>(16, 9, 3, 64);
    paged_matches_contiguous::<f32>(7, 4, 4, 32);
    paged_matches_contiguous::<bf16>(32, 8, 1, 80);
}

#[test]
fn parallel_and_serial_agree() {
    let p = AttentionParams::bshd(2, 200, 200, 6, 2, 64, CAUSAL);
    let (q, k, v) = Rng(99).qkv::<f32>(&p);
    let isa = isa::detected();
    let mut a = vec![0.0; q.len()];
    let mut b = vec![0.0; q.len()];
    attention(
        &p,
        AttentionInputs::new(&q, &k, &v),
        &mut a,
        None,
        Exec::new(isa, Parallelism::None),
    )
    .unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.install(|| {
        attention(
            &p,
            AttentionInputs::new(&q, &k, &v),
            &mut b,
            None,
            Exec::new(isa, Parallelism::Rayon(0)),
        )
        .unwrap()
    });
    assert_eq!(a, b, "the tile order is the same whatever thread runs it");
}

fn expect_shape_err(r: Result<(), KernelError>, needle: &str) {
    match r {
        Err(e) => {
            let s = e.to_string();
            assert!(s.contains(needle), "error `{s}` should mention `{needle}`");
        }
        Ok(()) => panic!("expected an error mentioning `{needle}`"),
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let isa = Isa::Portable;
    let p = AttentionParams::bshd(1, 4, 4, 4, 4, 8, CAUSAL);
    let z = vec![0.0f32; 1024];
    let mut out = vec![0.0f32; 1024];
    let run = |p: &AttentionParams, out: &mut [f32], lens: Option<&[u32]>| {
        attention(
            p,
            AttentionInputs {
                q: &z,
                k: &z,
                v: &z,
                kv_lens: lens,
            },
            out,
            None,
            Exec::new(isa, Parallelism::None),
        )
    };
    // Head counts that do not divide.
    let bad = AttentionParams::bshd(1, 4, 4, 4, 3, 8, CAUSAL);
    expect_shape_err(run(&bad, &mut out, None), "must divide");
    // Mismatched head_dim.
    let mut bad = p;
    bad.k.head_dim = 16;
    bad.v.head_dim = 16;
    expect_shape_err(run(&bad, &mut out, None), "head_dim");
    // Lengths past the cache.
    expect_shape_err(run(&p, &mut out, Some(&[5])), "past the 4 keys");
    expect_shape_err(run(&p, &mut out, Some(&[])), "kv_lens");
    // Slices too short.
    expect_shape_err(run(&p, &mut out[..10], None), "`out` needs 128");
    // Overlapping output rows.
    let mut bad = p;
    bad.out.seq_stride = 4;
    expect_shape_err(run(&bad, &mut out, None), "overlap");
    // A zero head_dim.
    let bad = AttentionParams::bshd(1, 4, 4, 4, 4, 0, CAUSAL);
    expect_shape_err(run(&bad, &mut out, None), "head_dim is 0");
    // A zero window.
    let mut bad = p;
    bad.mask.window = Some(0);
    expect_shape_err(run(&bad, &mut out, None), "window");
    // LSE too short.
    let mut lse = vec![0.0f32; 3];
    expect_shape_err(
        attention(
            &p,
            AttentionInputs::new(&z, &z, &z),
            &mut out,
            Some(&mut lse),
            Exec::new(isa, Parallelism::None),
        ),
        "`lse` needs 16",
    );

    // Paged: block tables pointing outside the cache, lengths past the table.
    let cache = PagedKvCache::dense(2, 4, 4, 8);
    let pp = PagedAttentionParams {
        q: p.q,
        out: p.out,
        cache,
        max_blocks_per_seq: 2,
        mask: CAUSAL,
    };
    let prun = |table: &[u32], lens: &[u32], out: &mut [f32]| {
        paged_attention(
            &pp,
            PagedAttentionInputs {
                q: &z,
                k_cache: &z,
                v_cache: &z,
                block_table: table,
                kv_lens: lens,
            },
            out,
            None,
            Exec::new(isa, Parallelism::None),
        )
    };
    expect_shape_err(prun(&[0, 2], &[8], &mut out), "outside the cache");
    expect_shape_err(prun(&[0, 1], &[9], &mut out), "past the 8 keys");
    expect_shape_err(prun(&[0], &[8], &mut out), "block_table");
    prun(&[1, 0], &[8], &mut out).unwrap();
    // A table entry past the used blocks is never read, so it may be anything.
    prun(&[1, 999], &[4], &mut out).unwrap();

    // Appends past capacity.
    let ct = AttnTensor::bshd(1, 4, 4, 8);
    let nt = AttnTensor::bshd(1, 2, 4, 8);
    let new = NewKv {
        shape: nt,
        k: &z,
        v: &z,
    };
    let (mut kc, mut vc) = (vec![0.0f32; 128], vec![0.0f32; 128]);
    expect_shape_err(kv_append(&ct, &mut kc, &mut vc, new, &[3]), "capacity");
    kv_append(&ct, &mut kc, &mut vc, new, &[2]).unwrap();
    let (mut kp, mut vp) = (vec![0.0f32; 256], vec![0.0f32; 256]);
    expect_shape_err(
        paged_kv_append(&cache, &mut kp, &mut vp, new, &[0, 5], 2, &[3]),
        "outside the cache",
    );
    expect_shape_err(
        paged_kv_append(&cache, &mut kp, &mut vp, new, &[0, 1], 2, &[7]),
        "capacity",
    );
}

#[test]
fn fully_masked_rows_are_zero_not_nan() {
    let p = AttentionParams::bshd(2, 3, 8, 2, 2, 16, CAUSAL);
    let (q, k, _) = Rng(123).qkv::<f32>(&p);
    for isa in isa::supported() {
        let mut out = vec![f32::NAN; q.len()];
        let mut lse = vec![0.0f32; 12];
        // Sequence 1 has no keys at all; sequence 0 has 1 key so its first two queries see none.
        attention(
            &p,
            AttentionInputs {
                q: &q,
                k: &k,
                v: &k,
                kv_lens: Some(&[1, 0]),
            },
            &mut out,
            Some(&mut lse),
            Exec::new(isa, Parallelism::None),
        )
        .unwrap();
        assert!(out.iter().all(|x| x.is_finite()), "{}", isa.name());
        assert!(out[p.out.offset_for_test(0, 0, 0)..][..16]
            .iter()
            .all(|&x| x == 0.0));
        assert!(out[p.out.offset_for_test(1, 2, 1)..][..16]
            .iter()
            .all(|&x| x == 0.0));
        assert!(out[p.out.offset_for_test(0, 2, 0)..][..16]
            .iter()
            .any(|&x| x != 0.0));
        assert_eq!(lse[0], f32::NEG_INFINITY);
    }
}

trait OffsetForTest {
    fn offset_for_test(&self, b: usize, s: usize, h: usize) -> usize;
}

impl OffsetForTest for AttnTensor {
    fn offset_for_test(&self, b: usize, s: usize, h: usize) -> usize {
        b * self.batch_stride + s * self.seq_stride + h * self.head_stride
    }
}

#[test]
fn scratch_does_not_grow_with_sequence_length() {
    use knpu_kernels::attention::attention_scratch_bytes;
    // Prefill: tiles only, whatever the length.
    let small = attention_scratch_bytes(1, 9, 3, 64, 4096, 4096, 2);
    let large = attention_scratch_bytes(1, 9, 3, 64, 16384, 16384, 2);
    assert_eq!(small, large);
    assert!(large < 1 << 20, "{large} bytes of scratch");
    // Decode splits the keys, but the number of parts is bounded by the thread count.
    let d1 = attention_scratch_bytes(1, 9, 3, 64, 1, 4096, 2);
    let d2 = attention_scratch_bytes(1, 9, 3, 64, 1, 1 << 20, 2);
    assert_eq!(d1, d2);
}

#[test]
fn empty_problems_and_the_default_entry_point() {
    use knpu_kernels::attention::attention;
    let z = vec![0.0f32; 64];
    let mut out = vec![0.0f32; 64];
    for (b, sq, skv) in [(0usize, 3usize, 3usize), (1, 0, 3), (1, 3, 0)] {
        let p = AttentionParams::bshd(b, sq, skv, 2, 1, 8, CAUSAL);
        attention(
            &p,
            AttentionInputs::new(&z, &z, &z),
            &mut out,
            None,
            Parallelism::Rayon(2),
        )
        .unwrap();
    }
    // No keys at all: zeros.
    assert!(out.iter().all(|&x| x == 0.0));
    let p = AttentionParams::bshd(1, 2, 5, 2, 1, 8, FULL);
    let mut rng = Rng(5);
    let q: Vec<f32> = rng.vec(32, 1.0);
    let k: Vec<f32> = rng.vec(40, 1.0);
    let mut lse = vec![0.0f32; 4];
    attention(
        &p,
        AttentionInputs::new(&q, &k, &k),
        &mut out,
        Some(&mut lse),
        Parallelism::None,
    )
    .unwrap();
    check_against_reference("default entry", &p, &q, &k, &k, &out, &lse, None);
}

#[test]
fn head_major_cache_append_then_attend() {
    // A [batch, heads, capacity, d] cache filled by two appends equals one built at once.
    let (batch, hk, hq, d, cap) = (2usize, 2usize, 4usize, 32usize, 20usize);
    let cache = AttnTensor::bhsd(batch, cap, hk, d);
    let mut kc = vec![0.0f32; cache.required_len().unwrap()];
    let mut vc = kc.clone();
    let mut rng = Rng(8);
    let first = AttnTensor::bshd(batch, 9, hk, d);
    let second = AttnTensor::bshd(batch, 1, hk, d);
    let mut appended = Vec::new();
    for (shape, at) in [(first, [0, 0]), (second, [9, 9])] {
        let n = shape.required_len().unwrap();
        let (k, v): (Vec<f32>, Vec<f32>) = (rng.vec(n, 1.0), rng.vec(n, 1.0));
        let new = NewKv {
            shape,
            k: &k,
            v: &v,
        };
        kv_append(&cache, &mut kc, &mut vc, new, &at).unwrap();
        appended.push((k, v));
    }
    let (k1, v2) = (&appended[0].0, &appended[1].1);
    for b in 0..batch {
        for h in 0..hk {
            for c in 0..d {
                assert_eq!(
                    kc[cache.offset_for_test(b, 3, h) + c],
                    k1[first.offset_for_test(b, 3, h) + c]
                );
                assert_eq!(
                    vc[cache.offset_for_test(b, 9, h) + c],
                    v2[second.offset_for_test(b, 0, h) + c]
                );
            }
        }
    }
    let q_t = AttnTensor::bshd(batch, 1, hq, d);
    let p = AttentionParams {
        q: q_t,
        k: cache,
        v: cache,
        out: q_t,
        mask: CAUSAL,
    };
    run_case_with(&p, &kc, &vc, Some(&[10, 10]));
}

fn run_case_with(p: &AttentionParams, k: &[f32], v: &[f32], kv_lens: Option<&[u32]>) {
    let mut rng = Rng(9);
    let q: Vec<f32> = rng.vec(p.q.required_len().unwrap(), 1.0);
    for isa in isa::supported() {
        let mut out = vec![f32::NAN; p.out.required_len().unwrap()];
        let mut lse = vec![f32::NAN; p.q.batch * p.q.heads * p.q.seq];
        attention(
            p,
            AttentionInputs {
                q: &q,
                k,
                v,
                kv_lens,
            },
            &mut out,
            Some(&mut lse),
            Exec::new(isa, Parallelism::Rayon(2)),
        )
        .unwrap();
        check_against_reference(isa.name(), p, &q, k, v, &out, &lse, kv_lens);
    }
}

#[test]
fn long_paged_decode_splits_inside_blocks() {
    // 3000 positions in 16-position blocks, read through a reversed block table: the split
    // parts start in the middle of blocks.
    let (hk, hq, d, len, bs) = (1usize, 8usize, 128usize, 3000usize, 16usize);
    let max_blocks = len.div_ceil(bs);
    let cache = PagedKvCache::dense(max_blocks + 2, bs, hk, d);
    let table: Vec<u32> = (0..max_blocks as u32).rev().map(|b| b + 2).collect();
    let contiguous = AttnTensor::bshd(1, len, hk, d);
    let mut rng = Rng(61);
    let kn: Vec<f32> = rng.vec(contiguous.required_len().unwrap(), 1.0);
    let vn: Vec<f32> = rng.vec(contiguous.required_len().unwrap(), 1.0);
    let mut kp = vec![0.0f32; cache.required_len().unwrap()];
    let mut vp = kp.clone();
    paged_kv_append(
        &cache,
        &mut kp,
        &mut vp,
        NewKv {
            shape: contiguous,
            k: &kn,
            v: &vn,
        },
        &table,
        max_blocks,
        &[0],
    )
    .unwrap();
    let q_t = AttnTensor::bshd(1, 1, hq, d);
    let q: Vec<f32> = rng.vec(q_t.required_len().unwrap(), 1.0);
    let (cp, pp) = contiguous_and_paged(q_t, contiguous, cache, max_blocks);
    for isa in isa::supported() {
        for par in [Parallelism::Rayon(2), Parallelism::Rayon(3)] {
            let lens = [len as u32];
            let (out, lse) = run_paged(isa, &pp, &q, (&kp, &vp), (&table, &lens), par);
            let what = format!("long paged {} {par:?}", isa.name());
            check_against_reference(&what, &cp, &q, &kn, &vn, &out, &lse, None);
        }
    }
}

#[test]
fn stale_tiles_from_earlier_calls_do_not_leak_into_later_ones() {
    // Each thread keeps its tiles between calls. Poison them with NaN (a query of NaN puts
    // NaN into scores, probabilities, outputs and partial results), then run clean problems
    // of other shapes on the same threads: every tile must be written before it is read.
    let mut rng = Rng(4242);
    let poison = [
        AttentionParams::bshd(1, 1, 3000, 16, 2, 128, CAUSAL),
        AttentionParams::bshd(2, 150, 150, 12, 4, 96, CAUSAL),
    ];
    let clean = [
        AttentionParams::bshd(1, 1, 700, 9, 3, 64, CAUSAL),
        AttentionParams::bshd(1, 3, 257, 8, 1, 32, CAUSAL),
        AttentionParams::bshd(1, 70, 90, 6, 3, 80, FULL),
    ];
    for isa in isa::supported() {
        for threads in [1, 2] {
            let par = Parallelism::Rayon(threads);
            for (pp, cp) in poison
                .iter()
                .zip(clean.iter().cycle())
                .chain(poison.iter().zip(clean.iter().skip(2)))
            {
                let q = vec![f32::NAN; pp.q.required_len().unwrap()];
                let k: Vec<f32> = rng.vec(pp.k.required_len().unwrap(), 1.0);
                let v: Vec<f32> = rng.vec(pp.v.required_len().unwrap(), 1.0);
                let mut out = vec![0.0; q.len()];
                attention(
                    pp,
                    AttentionInputs::new(&q, &k, &v),
                    &mut out,
                    None,
                    Exec::new(isa, par),
                )
                .unwrap();
                let q: Vec<f32> = rng.vec(cp.q.required_len().unwrap(), 1.0);
                let k: Vec<f32> = rng.vec(cp.k.required_len().unwrap(), 1.0);
                let v: Vec<f32> = rng.vec(cp.v.required_len().unwrap(), 1.0);
                let mut out = vec![0.0; q.len()];
                let mut lse = vec![0.0; cp.q.batch * cp.q.heads * cp.q.seq];
                attention(
                    cp,
                    AttentionInputs::new(&q, &k, &v),
                    &mut out,
                    Some(&mut lse),
                    Exec::new(isa, par),
                )
                .unwrap();
                let what = format!("{isa:?}, {threads} threads, after a poisoned call");
                check_against_reference(&what, cp, &q, &k, &v, &out, &lse, None);
            }
        }
    }
}

/// The dense constructors are also the runtime's (`knpu::ops::AttnTensor`): a shape whose
/// strides overflow used to panic in `bshd`/`bhsd`/`dense`; they saturate now and the length
/// check refuses the view.
#[test]
fn dense_layouts_with_overflowing_strides_are_refused_not_a_panic() {
    let huge = usize::MAX / 2;
    for t in [
        AttnTensor::bshd(1, huge, 4, 64),
        AttnTensor::bhsd(1, huge, 4, 64),
    ] {
        assert!(
            matches!(t.required_len(), Err(KernelError::BadStride { .. })),
            "{t:?}"
        );
    }
    let cache = PagedKvCache::dense(2, huge, 4, 64);
    assert!(matches!(
        cache.required_len(),
        Err(KernelError::BadStride { .. })
    ));
}
