//! Activations quantised on the fly for the integer dot-product paths.
//!
//! Each row of `x` is quantised to 8-bit blocks of 32 (`d = max|x| / 127`,
//! `q = round(x / d)`, as ggml's Q8_0), then laid out in the order the weight decoder
//! produces bytes, so one 64-byte load of activations meets one 64-byte vector of weights.
//! Beside the bytes, per 4-byte lane (the unit `vpdpbusd` sums): the block scale `dx`, the
//! integer correction `-offset * sum(q)` for formats whose codes are stored with an offset
//! (Q4_0: 8, Q6_K: 32, Q8_0/I8 on the AVX-512 path: 128), and `dx * sum(q)` for formats
//! with a per-block minimum (Q4_1, Q4_K). Rows are padded with zeros to a multiple of 64.

use super::{split_rows, ActElem, QuantFormat};

/// Values per group: one 512-bit vector of weight bytes.
pub(crate) const GROUP: usize = 64;
/// 4-byte lanes per group.
pub(crate) const LANES: usize = 16;

/// Quantised activations for `m` rows of length `k`, in the weight format's order.
pub(crate) struct XPrep {
    /// Padded row length (a multiple of [`GROUP`]).
    pub kp: usize,
    /// `m x kp` bytes.
    pub qx: Vec<i8>,
    /// `m x kp/4` block scales per lane.
    pub dx: Vec<f32>,
    /// `m x kp/4`: `-offset * lane sum` (offset formats) or unused.
    pub corr: Vec<i32>,
    /// `m x kp/4`: `dx * lane sum` (formats with a minimum) or unused.
    pub msum: Vec<f32>,
}

/// The stored-code offset the AVX-512 path corrects for (codes are fed to `vpdpbusd` as
/// unsigned bytes).
pub(crate) fn code_offset(format: QuantFormat) -> i32 {
    match format {
        QuantFormat::Q4_0 => 8,
        QuantFormat::Q6_K => 32,
        QuantFormat::Q8_0 | QuantFormat::I8 => 128,
        _ => 0,
    }
}

pub(crate) fn has_mins(format: QuantFormat) -> bool {
    matches!(format, QuantFormat::Q4_1 | QuantFormat::Q4_K)
}

/// How activations are ordered against the weight decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Groups of 64 values, one 4-byte lane per slot (every path).
    Pair,
    /// As `Pair`, except that Q4_0/Q4_1 rows start with quads of blocks: 128 values in two
    /// vectors (low nibbles, then high nibbles, of 4 blocks) whose lane `L` both belong to block
    /// `L / 4`, so their dot products add in the integer domain and share one lane of scales
    /// (slots `32q..32q + 16` of quad `q`). The AVX-512 path.
    Wide,
}

/// Whole quads of Q4 blocks at the start of a row in [`Layout::Wide`].
pub(crate) fn quads(format: QuantFormat, layout: Layout, k: usize) -> usize {
    match (layout, format) {
        (Layout::Wide, QuantFormat::Q4_0 | QuantFormat::Q4_1) => k / 128,
        _ => 0,
    }
}

/// The natural index (within a row) of the value at position `p` of the weight order.
fn natural_index(format: QuantFormat, layout: Layout, k: usize, p: usize) -> usize {
    if p < 128 * quads(format, layout, k) {
        let (q, r) = (p / 128, p % 128);
        let (half, blk, e) = (r / 64, (r % 64) / 16, r % 16);
        return 128 * q + 32 * blk + 16 * half + e;
    }
    match format {
        QuantFormat::Q4_0 | QuantFormat::Q4_1 => {
            // Pairs of blocks: [b0 lo, b1 lo, b0 hi, b1 hi]; a lone last block stays natural.
            let pair = p / 64;
            if 64 * pair + 64 > k {
                return p;
            }
            let r = p % 64;
            let (blk, e) = match r / 16 {
                0 => (0, r),
                1 => (1, r - 16),
                2 => (0, r - 16),
                _ => (1, r - 32),
            };
            64 * pair + 32 * blk + e
        }
        QuantFormat::Q4_K => {
            // Groups of 64 pair sub-blocks (0,2), (1,3), (4,6), (5,7) of each super-block.
            let sb = p / 256;
            let r = p % 256;
            let gi = r / 64;
            let half = (r % 64) / 32;
            let sub = (gi / 2) * 4 + (gi % 2) + 2 * half;
            256 * sb + 32 * sub + r % 32
        }
        _ => p,
    }
}

/// Quantises one row of `k` values into natural-order codes and per-block scales.
///
/// Written so that it vectorises: the largest magnitude is an integer maximum over the
/// magnitude bits (a NaN's bits exceed infinity's), finiteness a compare on it.
#[inline(always)]
pub(crate) fn quantize_row<TX: ActElem>(
    row: &[TX],
    block: usize,
    xf: &mut [f32],
    q: &mut [i8],
    d_out: &mut [f32],
) {
    for (f, &v) in xf.iter_mut().zip(row) {
        *f = v.to_f32();
    }
    for ((blk, qb), d_o) in xf
        .chunks_exact(block)
        .zip(q.chunks_exact_mut(block))
        .zip(d_out)
    {
        // A non-finite activation cannot be coded: its block's scale becomes NaN, so every
        // output it touches is NaN rather than silently finite.
        let mut abits = 0u32;
        for &v in blk {
            abits = abits.max(v.to_bits() & 0x7FFF_FFFF);
        }
        let finite = abits < 0x7F80_0000;
        let d = f32::from_bits(abits) / 127.0;
        let id = if d == 0.0 || !finite { 0.0 } else { 1.0 / d };
        *d_o = if finite { d } else { f32::NAN };
        for (o, &v) in qb.iter_mut().zip(blk) {
            *o = round_small_bits(v * id).clamp(-127, 127) as i8;
        }
    }
}

/// Rounds to nearest, ties to even, for |v| < 2^22 (here |v| <= 127): adding 1.5 * 2^23 leaves
/// the integer part in the low mantissa bits, read off as an integer. Plain arithmetic, so it
/// vectorises (`f32::round` is a library call on baseline x86-64 and `f32 as i8` does not
/// vectorise). NaN gives an arbitrary value; blocks that produce one have a NaN scale.
#[inline(always)]
fn round_small_bits(v: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    ((v + MAGIC).to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32)
}

/// Copies natural-order codes into the weight order of `format`.
fn permute(format: QuantFormat, layout: Layout, k: usize, nat: &[i8], dst: &mut [i8]) {
    match format {
        QuantFormat::Q4_0 | QuantFormat::Q4_1 => {
            let nq = quads(format, layout, k);
            for q in 0..nq {
                for half in 0..2 {
                    for blk in 0..4 {
                        let o = 128 * q + 64 * half + 16 * blk;
                        let i = 128 * q + 32 * blk + 16 * half;
                        dst[o..o + 16].copy_from_slice(&nat[i..i + 16]);
                    }
                }
            }
            let pairs = k / 64;
            for p in 2 * nq..pairs {
                let (s, o) = (&nat[64 * p..64 * p + 64], &mut dst[64 * p..64 * p + 64]);
                o[..16].copy_from_slice(&s[..16]);
                o[16..32].copy_from_slice(&s[32..48]);
                o[32..48].copy_from_slice(&s[16..32]);
                o[48..].copy_from_slice(&s[48..]);
            }
            dst[64 * pairs..k].copy_from_slice(&nat[64 * pairs..k]);
        }
        QuantFormat::Q4_K => {
            for sb in 0..k / 256 {
                for gi in 0..4 {
                    for half in 0..2 {
                        let sub = (gi / 2) * 4 + gi % 2 + 2 * half;
                        let o = 256 * sb + 64 * gi + 32 * half;
                        dst[o..o + 32]
                            .copy_from_slice(&nat[256 * sb + 32 * sub..256 * sb + 32 * sub + 32]);
                    }
                }
            }
        }
        _ => dst[..k].copy_from_slice(&nat[..k]),
    }
}

/// What one row's preparation needs besides the row itself (the same for every row).
struct Plan {
    format: QuantFormat,
    layout: Layout,
    k: usize,
    /// Activation block length (32, or 256 for Q4_K on the wide path).
    block: usize,
    per_superblock: bool,
    /// Q4_1 quads (wide layout): per-block sums for the kernel's gathered minimums.
    quad_block_sums: usize,
    offset: i32,
    mins: bool,
    /// Per lane slot: (slot, block, first natural 4-byte run, second run or `u32::MAX`).
    slots: Vec<(u32, u32, u32, u32)>,
}

/// Per-row scratch: the row in f32, its natural-order codes, block scales and 4-byte run sums.
struct Scratch {
    xf: Vec<f32>,
    q: Vec<i8>,
    d: Vec<f32>,
    runs: Vec<i32>,
}

impl Scratch {
    fn new(k: usize) -> Scratch {
        Scratch {
            xf: vec![0.0; k],
            q: vec![0; k],
            d: vec![0.0; k / 32],
            runs: vec![0; k / 4],
        }
    }

    /// Resizes the buffers for rows of `k` values (their contents are overwritten per row).
    fn fit(&mut self, k: usize) {
        self.xf.resize(k, 0.0);
        self.q.resize(k, 0);
        self.d.resize(k / 32, 0.0);
        self.runs.resize(k / 4, 0);
    }
}

/// Prepares one row (see [`XPrep::new`]); inlined into per-ISA copies so the loops
/// vectorise with the host's vector width.
#[inline(always)]
fn row_body<TX: ActElem>(plan: &Plan, xrow: &[TX], out: RowOut<'_>, sc: &mut Scratch) {
    let RowOut {
        q: qrow,
        dx,
        corr,
        msum,
    } = out;
    let k = plan.k;
    quantize_row(xrow, plan.block, &mut sc.xf, &mut sc.q, &mut sc.d);
    permute(plan.format, plan.layout, k, &sc.q, qrow);
    // Every 4-byte run of the weight order is a 4-byte run of the natural order (the
    // permutations move whole runs of 16 or 32), so lane sums come from natural-order runs.
    for (r, c) in sc.runs.iter_mut().zip(sc.q.chunks_exact(4)) {
        *r = c[0] as i32 + c[1] as i32 + c[2] as i32 + c[3] as i32;
    }
    if plan.per_superblock {
        for (sb, &d) in sc.d.iter().enumerate().take(k / 256) {
            dx[64 * sb] = d;
            for j in 0..8 {
                let s: i32 = sc.runs[64 * sb + 8 * j..64 * sb + 8 * j + 8].iter().sum();
                msum[64 * sb + j] = d * s as f32;
            }
        }
        return;
    }
    // Q4_1 quads: `dx * sum(q)` of block b (< 4 quads) in slot 128 (b / 16) + 16 + b % 16,
    // the unused upper half of quad 4 (b / 16)'s slots.
    for b in 0..plan.quad_block_sums {
        let s: i32 = sc.runs[8 * b..8 * b + 8].iter().sum();
        msum[128 * (b / 16) + 16 + b % 16] = sc.d[b] * s as f32;
    }
    for &(l, b, n0, n1) in &plan.slots {
        let l = l as usize;
        let s = sc.runs[n0 as usize]
            + if n1 == u32::MAX {
                0
            } else {
                sc.runs[n1 as usize]
            };
        let d = sc.d[b as usize];
        dx[l] = d;
        corr[l] = -plan.offset * s;
        if plan.mins && l >= 32 * plan.quad_block_sums / 4 {
            msum[l] = d * s as f32;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
/// # Safety
/// - the host supports AVX-512 F/BW/DQ/VL.
unsafe fn row_avx512<TX: ActElem>(plan: &Plan, xrow: &[TX], out: RowOut<'_>, sc: &mut Scratch) {
    row_body(plan, xrow, out, sc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
/// # Safety
/// - the host supports AVX2, FMA and F16C.
unsafe fn row_avx2<TX: ActElem>(plan: &Plan, xrow: &[TX], out: RowOut<'_>, sc: &mut Scratch) {
    row_body(plan, xrow, out, sc)
}

/// Where one prepared row goes: its codes, lane scales, lane corrections and minimum sums.
struct RowOut<'a> {
    q: &'a mut [i8],
    dx: &'a mut [f32],
    corr: &'a mut [i32],
    msum: &'a mut [f32],
}

/// Prepares one row on path `isa` (see [`row_body`]).
fn prep_row<TX: ActElem>(
    isa: crate::Isa,
    plan: &Plan,
    xrow: &[TX],
    out: RowOut<'_>,
    sc: &mut Scratch,
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` is supported by the host (checked by the caller of `XPrep::new`).
        crate::Isa::Avx512 => unsafe { row_avx512(plan, xrow, out, sc) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above; `Isa::Avx2` means AVX2 with FMA and F16C.
        crate::Isa::Avx2 => unsafe { row_avx2(plan, xrow, out, sc) },
        _ => row_body(plan, xrow, out, sc),
    }
}

/// Builds the per-row plan for `format` in `layout` with rows of `k` values.
fn build_plan(format: QuantFormat, layout: Layout, k: usize) -> Plan {
    // Q4_K on the wide path takes one activation scale per 256-value super-block (as
    // ggml's Q8_K), so the sub-block scales apply to integer sums; the super-block's slots
    // hold its scale (first slot) and `dx * sum(q)` of each 32-value sub-block (8 slots).
    let per_superblock = layout == Layout::Wide && format == QuantFormat::Q4_K;
    // Which 4-byte runs of codes each lane slot sums (as natural-order run indices), and
    // the block they belong to (the same for every row).
    let nq = quads(format, layout, k);
    let mut slots = Vec::with_capacity(k / 4);
    let run = |p: usize| (natural_index(format, layout, k, p) / 4) as u32;
    for q in 0..nq {
        for l in 0..16 {
            let p = 128 * q + 4 * l;
            slots.push((
                (32 * q + l) as u32,
                (4 * q + l / 4) as u32,
                run(p),
                run(p + 64),
            ));
        }
    }
    for l in 32 * nq..k / 4 {
        let b = natural_index(format, layout, k, 4 * l) / 32;
        slots.push((l as u32, b as u32, run(4 * l), u32::MAX));
    }
    Plan {
        format,
        layout,
        k,
        block: if per_superblock { 256 } else { 32 },
        per_superblock,
        quad_block_sums: if format == QuantFormat::Q4_1 {
            4 * nq
        } else {
            0
        },
        offset: code_offset(format),
        mins: has_mins(format),
        slots,
    }
}

/// The plan for `(format, layout, k)`, from a small per-thread cache: a decode step calls the
/// same few shapes over and over, and building the slot table costs about as much as
/// preparing one row.
fn plan(format: QuantFormat, layout: Layout, k: usize) -> std::sync::Arc<Plan> {
    use std::cell::RefCell;
    use std::sync::Arc;
    const KEEP: usize = 8;
    thread_local! {
        static CACHE: RefCell<Vec<Arc<Plan>>> = const { RefCell::new(Vec::new()) };
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(i) = c
            .iter()
            .position(|p| p.format == format && p.layout == layout && p.k == k)
        {
            let p = c.remove(i);
            c.insert(0, p.clone());
            return p;
        }
        let p = Arc::new(build_plan(format, layout, k));
        c.truncate(KEEP - 1);
        c.insert(0, p.clone());
        p
    })
}

impl XPrep {
    /// Quantises `m` rows of `x` (row length `k`, a multiple of 32) for `format`'s weights,
    /// splitting rows over the granted threads when there are many. `isa` must be supported
    /// by the host; it only picks the vector width the preparation is compiled for.
    pub(crate) fn new<TX: ActElem>(
        isa: crate::Isa,
        format: QuantFormat,
        layout: Layout,
        x: &[TX],
        m: usize,
        k: usize,
        par: crate::Parallelism,
    ) -> XPrep {
        debug_assert!(k.is_multiple_of(32));
        let kp = k.div_ceil(GROUP) * GROUP;
        let lanes = kp / 4;
        // The buffers of the last preparation dropped on this thread, refilled: a decode step
        // prepares a row for every matmul, and allocating four buffers (and the scratch)
        // each time costs about as much as quantising a short row.
        let spare = SPARE.try_with(|s| s.take()).ok().flatten();
        let Buffers { qx, dx, corr, msum } = spare.unwrap_or_default();
        let mut xp = XPrep {
            kp,
            qx,
            dx,
            corr,
            msum,
        };
        refill(&mut xp.qx, m * kp, 0);
        refill(&mut xp.dx, m * lanes, 0.0);
        refill(&mut xp.corr, m * lanes, 0);
        refill(&mut xp.msum, m * lanes, 0.0);
        let plan = plan(format, layout, k);
        let xrow = |i: usize| &x[i * k..(i + 1) * k];
        if par.threads() > 1 && m > super::qmatmul::GEMV_MAX_M {
            // Rows in groups of 16 per task, on the compute team.
            const GROUP_ROWS: usize = 16;
            let bufs = (&mut *xp.qx, &mut *xp.dx, &mut *xp.corr, &mut *xp.msum);
            let mut groups: Vec<_> =
                split_rows(bufs, GROUP_ROWS * kp, GROUP_ROWS * lanes).collect();
            crate::par::for_each_mut(&mut groups, par.threads(), |g, (q, dx, corr, msum)| {
                let mut sc = Scratch::new(k);
                let rows = split_rows((q, dx, corr, msum), kp, lanes);
                for (j, (q, dx, corr, msum)) in rows.enumerate() {
                    let out = RowOut { q, dx, corr, msum };
                    prep_row(isa, &plan, xrow(g * GROUP_ROWS + j), out, &mut sc)
                }
            });
        } else {
            let spare = SCRATCH.try_with(|s| s.take()).ok().flatten();
            let mut sc = spare.unwrap_or_else(|| Scratch::new(k));
            sc.fit(k);
            let bufs = (&mut *xp.qx, &mut *xp.dx, &mut *xp.corr, &mut *xp.msum);
            for (i, (q, dx, corr, msum)) in split_rows(bufs, kp, lanes).enumerate() {
                let out = RowOut { q, dx, corr, msum };
                prep_row(isa, &plan, xrow(i), out, &mut sc);
            }
            let _ = SCRATCH.try_with(|s| s.set(Some(sc)));
        }
        xp
    }
}

impl Drop for XPrep {
    fn drop(&mut self) {
        let bufs = Buffers {
            qx: std::mem::take(&mut self.qx),
            dx: std::mem::take(&mut self.dx),
            corr: std::mem::take(&mut self.corr),
            msum: std::mem::take(&mut self.msum),
        };
        // At thread exit the slot may be gone already; the buffers are then simply freed.
        let _ = SPARE.try_with(|s| s.set(Some(bufs)));
    }
}

/// An [`XPrep`]'s allocations, kept between preparations.
#[derive(Default)]
struct Buffers {
    qx: Vec<i8>,
    dx: Vec<f32>,
    corr: Vec<i32>,
    msum: Vec<f32>,
}

thread_local! {
    /// Buffers of the last [`XPrep`] dropped on this thread.
    static SPARE: std::cell::Cell<Option<Buffers>> = const { std::cell::Cell::new(None) };
    /// The row scratch of the last single-threaded preparation on this thread.
    static SCRATCH: std::cell::Cell<Option<Scratch>> = const { std::cell::Cell::new(None) };
}

/// Sets `v` to `len` copies of `fill`, reusing its allocation.
fn refill<T: Copy>(v: &mut Vec<T>, len: usize, fill: T) {
    v.clear();
    v.resize(len, fill);
}
