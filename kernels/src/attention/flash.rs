//! The tile engine: blocks of query rows (all query heads of one key/value head together)
//! stream over tiles of keys with an online softmax.
//!
//! Work is cut into units `(sequence, kv heads, query block)`: one kv head per unit when a
//! block has many query rows; all kv heads of a sequence together when it has a few (decode),
//! so a task streams through whole positions of the cache instead of one head's slice of
//! each. When there are too few units to keep every thread busy (decode), each unit's key
//! range is split into parts whose partial results `decode.rs` merges. Tasks are handed out
//! dynamically, longest first, to at most `threads` workers (`par::for_each_with`), each
//! with its own scratch tiles.

use super::decode;
use super::simd::{prefetch_rows, Ahead, Pv, QkDot, Rows, Running, TileKernels, LANES};
use super::{AttnElement, ElemSlice, KvSource, Problem};
use crate::isa::Isa;
use crate::par::Parallelism;
use std::cell::RefCell;

/// Keys per tile of a many-row block (prefill): enough work per tile to amortise the softmax.
pub(crate) const BC: usize = 64;
/// Keys per tile of a few-row block (decode): small enough that the prefetches of K and V
/// issued per tile and head spread over the work instead of coming in bursts that stall the
/// load queue, large enough to amortise each tile's softmax reductions and output update.
const BC_FEW_ROWS: usize = 32;
/// Query rows (over all heads of a group) a block aims for.
const ROWS_TARGET: usize = 128;
/// Few-row problems reading less K/V than this run on one thread.
const SERIAL_BELOW_BYTES: usize = 128 << 10;

/// How a problem is cut into tasks, and the tile sizes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Query heads per kv head.
    pub group: usize,
    /// Query positions per block.
    pub nb: usize,
    /// Query blocks per (sequence, kv head).
    pub q_blocks: usize,
    /// Kv heads one unit processes (1, or all of them for few-row blocks).
    pub heads: usize,
    /// Kv-head groups per sequence (`kv_heads / heads`).
    pub head_groups: usize,
    /// `batch * head_groups * q_blocks`.
    pub units: usize,
    /// Parts each unit's key range is split into (1: no split).
    pub splits: usize,
    /// Padded rows of a block (`group * nb` rounded up to [`LANES`]).
    pub rp: usize,
    /// Padded head dimension of the output accumulator.
    pub dp: usize,
    /// Head dimension.
    pub d: usize,
    /// Keys per tile ([`BC`] or, for few-row blocks, `BC_FEW_ROWS`).
    pub bc: usize,
}

impl Plan {
    /// Plans a problem; `kv_len` is the longest key range a unit may see.
    pub fn new(
        batch: usize,
        group: usize,
        kv_heads: usize,
        d: usize,
        q_len: usize,
        kv_len: usize,
        threads: usize,
    ) -> Plan {
        let nb_max = (ROWS_TARGET / group.max(1)).max(1);
        let q_blocks = q_len.div_ceil(nb_max).max(1);
        let nb = q_len.div_ceil(q_blocks).max(1);
        let rp = (group * nb).div_ceil(LANES) * LANES;
        let heads = if rp == LANES { kv_heads.max(1) } else { 1 };
        let head_groups = kv_heads / heads;
        let units = batch * head_groups * q_blocks;
        let splits = split_count(units, threads, kv_len);
        Plan {
            group,
            nb,
            q_blocks,
            heads,
            head_groups,
            units,
            splits,
            rp,
            dp: d.div_ceil(LANES).max(1) * LANES,
            d,
            bc: if rp == LANES { BC_FEW_ROWS } else { BC },
        }
    }

    /// The sequence, first kv head and query block of `unit`.
    pub fn unit(&self, unit: usize) -> (usize, usize, usize) {
        let qb = unit % self.q_blocks;
        let bh = unit / self.q_blocks;
        (
            bh / self.head_groups,
            (bh % self.head_groups) * self.heads,
            qb,
        )
    }

    /// Floats of one worker's scratch.
    fn worker_floats(&self) -> usize {
        let (rp, d, dp) = (self.rp, self.d, self.dp);
        let qoff = rp * std::mem::size_of::<usize>() / 4;
        self.heads * (rp * dp.max(d) + rp * dp + 2 * rp + BC * rp + rp) + qoff + 2 * BC * d
    }

    /// Floats of one split-KV partial result.
    pub fn partial_floats(&self) -> usize {
        self.heads * (self.rp * self.dp + 2 * self.rp)
    }

    /// Bytes of working memory with `threads` workers.
    pub fn scratch_bytes(&self, threads: usize) -> usize {
        let partials = if self.splits > 1 {
            self.units * self.splits * self.partial_floats()
        } else {
            0
        };
        4 * (threads.min(self.units * self.splits).max(1) * self.worker_floats() + partials)
    }
}

/// Splits each unit's keys when units alone cannot fill `threads`: enough parts for one task
/// per thread (longer streams and fewer partials to merge than two per thread, which measured
/// about 15% slower at kv_len 512), a multiple of `threads` in total when possible, each part
/// at least two tiles long.
fn split_count(units: usize, threads: usize, kv_len: usize) -> usize {
    if threads <= 1 || units == 0 || units >= 2 * threads {
        return 1;
    }
    let max_by_len = (kv_len / (2 * BC)).max(1);
    let want = threads.div_ceil(units);
    let mut s = want;
    while s < want + threads && !(units * s).is_multiple_of(threads) {
        s += 1;
    }
    if !(units * s).is_multiple_of(threads) {
        s = want;
    }
    s.min(max_by_len).max(1)
}

/// The query, key and value arrays of a problem (keys and values: contiguous, or a paged
/// cache).
#[derive(Clone, Copy)]
pub(crate) struct Inputs<'a, T> {
    /// Queries.
    pub q: &'a [T],
    /// Keys.
    pub k: &'a [T],
    /// Values.
    pub v: &'a [T],
}

/// Where results go: the output and, when asked for, each row's log-sum-exp.
pub(crate) struct Outputs<T> {
    out: SharedOut<T>,
    lse: Option<SharedOut<f32>>,
}

/// A block of query rows: positions `qb * nb ..` (`n` of them) of sequence `b`, for the query
/// heads of kv head `kvh`.
#[derive(Clone, Copy)]
pub(crate) struct BlockAt {
    pub b: usize,
    pub kvh: usize,
    pub qb: usize,
    pub n: usize,
}

/// A block's unnormalised output rows `o` (`dp` apart), with each row's running maximum `m`
/// and sum `l`.
#[derive(Clone, Copy)]
pub(crate) struct Acc<'a> {
    pub o: &'a [f32],
    pub m: &'a [f32],
    pub l: &'a [f32],
}

/// One task: part `split` of unit `(b, kv heads from kvh0, query block qb)`.
#[derive(Clone, Copy)]
struct UnitPart {
    b: usize,
    kvh0: usize,
    qb: usize,
    split: usize,
}

/// A raw view of an output slice that parallel tasks write at disjoint indices.
pub(crate) struct SharedOut<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: `SharedOut` is only a pointer and a length; writes through it go to indices that
// the engine hands to exactly one task (disjoint rows of a validated, non-overlapping layout).
unsafe impl<T: Send> Send for SharedOut<T> {}
// SAFETY: as above; no two tasks write the same index and nothing reads through it.
unsafe impl<T: Send> Sync for SharedOut<T> {}

impl<T> SharedOut<T> {
    /// Views `s` for the duration of its borrow.
    pub fn new(s: &mut [T]) -> SharedOut<T> {
        SharedOut {
            ptr: s.as_mut_ptr(),
            len: s.len(),
        }
    }

    /// Writes `v` at `i`.
    ///
    /// # Safety
    /// - The slice this was made from must still be mutably borrowed by the caller.
    /// - No other thread may access index `i` during the write.
    pub unsafe fn write(&self, i: usize, v: T) {
        assert!(i < self.len, "output index {i} out of bounds {}", self.len);
        // SAFETY: `i` is in bounds (checked above) and exclusive to this task (caller).
        unsafe { self.ptr.add(i).write(v) }
    }

    /// A mutable view of `range`.
    ///
    /// # Safety
    /// - The slice this was made from must still be mutably borrowed by the caller.
    /// - No other thread may access `range` while the returned slice lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start + len <= self.len, "output range out of bounds");
        // SAFETY: in bounds (checked above) and exclusive to this task (caller).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

/// One worker's tiles.
#[derive(Default)]
pub(crate) struct Scratch {
    qt: Vec<f32>,
    st: Vec<f32>,
    pub o: Vec<f32>,
    pub m: Vec<f32>,
    pub l: Vec<f32>,
    alpha: Vec<f32>,
    /// Where each query row of a block starts in `q`.
    qoff: Vec<usize>,
    kbuf: Vec<f32>,
    vbuf: Vec<f32>,
}

thread_local! {
    /// The buffers of the last [`Kept`] scratch this thread let go of. A decode step lasts tens of
    /// microseconds, and allocating and zeroing its workers' tiles (tens of KB each) took
    /// about a microsecond of it; reusing them costs nothing, since every tile is written
    /// before it is read. A thread keeps at most one set, as large as the largest it needed.
    static SPARE: RefCell<Scratch> = RefCell::new(Scratch::default());
    /// The split-KV partial results of this thread's last call, kept for the same reason.
    static SPARE_PARTIALS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `v` with exactly `n` elements: shortened in place, or extended with zeros.
fn sized<T: Copy + Default>(mut v: Vec<T>, n: usize) -> Vec<T> {
    v.resize(n, T::default());
    v
}

/// A worker's [`Scratch`], handed back to its thread's spare when the worker is done.
struct Kept(Scratch);

impl Kept {
    /// Tiles for `plan`, in the buffers this thread kept from its last call when it has
    /// them (their contents are stale: every tile is written before it is read); the
    /// widening buffers only when K and V are 16-bit (`widen`).
    fn new(plan: &Plan, widen: bool) -> Kept {
        let wide = if widen { BC * plan.d } else { 0 };
        let (rp, d, dp, h) = (plan.rp, plan.d, plan.dp, plan.heads);
        let b = SPARE.try_with(RefCell::take).unwrap_or_default();
        let mut qoff = b.qoff;
        qoff.clear();
        qoff.reserve(rp);
        Kept(Scratch {
            qt: sized(b.qt, h * rp * dp.max(d)),
            st: sized(b.st, h * BC * rp),
            o: sized(b.o, h * rp * dp),
            m: sized(b.m, h * rp),
            l: sized(b.l, h * rp),
            alpha: sized(b.alpha, h * rp),
            qoff,
            kbuf: sized(b.kbuf, wide),
            vbuf: sized(b.vbuf, wide),
        })
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        // A thread that is exiting drops the buffers instead.
        let _ = SPARE.try_with(|c| c.replace(std::mem::take(&mut self.0)));
    }
}

/// The query position of row `i` of sequence `b`: `kv_len - q_len + i` (may be negative).
fn position(kv_len: usize, q_len: usize, i: usize) -> i64 {
    kv_len as i64 - q_len as i64 + i as i64
}

/// Whether a query at `pos` sees key `j` (of a sequence with at least `j + 1` keys).
fn visible(p: &Problem, pos: i64, j: usize) -> bool {
    let j = j as i64;
    if p.causal && j > pos {
        return false;
    }
    if let Some(w) = p.window {
        let w = w as i64;
        if j <= pos - w || (!p.causal && j >= pos + w) {
            return false;
        }
    }
    true
}

/// The keys `[lo, hi)` any row with positions `pos_min..=pos_max` may see.
fn key_range(p: &Problem, kv_len: usize, pos_min: i64, pos_max: i64) -> (usize, usize) {
    let mut lo = 0i64;
    let mut hi = kv_len as i64;
    if p.causal {
        hi = hi.min(pos_max + 1);
    }
    if let Some(w) = p.window {
        let w = w as i64;
        lo = lo.max(pos_min - w + 1);
        if !p.causal {
            hi = hi.min(pos_max + w);
        }
    }
    let lo = lo.clamp(0, kv_len as i64) as usize;
    let hi = hi.clamp(0, kv_len as i64) as usize;
    (lo, hi.max(lo))
}

/// Where rows of keys (or values) start for `(b, kv head, j)`: offset, row stride, and how
/// many rows follow at that stride.
fn rows_at(src: &KvSource, is_v: bool, b: usize, h: usize, j: usize) -> (usize, usize, usize) {
    match src {
        KvSource::Contiguous { k, v } => {
            let t = if is_v { v } else { k };
            (t.offset(b, j, h), t.seq_stride, usize::MAX)
        }
        KvSource::Paged {
            cache,
            table,
            max_blocks,
        } => {
            let blk = table[b * max_blocks + j / cache.block_size] as usize;
            let slot = j % cache.block_size;
            (
                blk * cache.block_stride + slot * cache.slot_stride + h * cache.head_stride,
                cache.slot_stride,
                cache.block_size - slot,
            )
        }
    }
}

/// A tile of rows as f32: in place when `T` is f32, else widened (`d` values a row) into
/// `buf`.
fn tile_f32<'a, T: AttnElement>(
    kern: &TileKernels,
    rows: Rows<&'a [T]>,
    d: usize,
    buf: &'a mut [f32],
) -> Rows<&'a [f32]> {
    let view = T::view(rows.data);
    match view {
        ElemSlice::F32(f) => rows.over(f),
        ElemSlice::F16(bits) | ElemSlice::Bf16(bits) => {
            kern.widen(rows.over(bits), matches!(view, ElemSlice::Bf16(_)), d, buf);
            Rows {
                data: buf,
                off: 0,
                stride: d,
                n: rows.n,
            }
        }
    }
}

/// A tile of rows as the kernels read it: in place when `in_place` (always so for f32), else
/// widened into `buf` by [`tile_f32`].
fn tile_rows<'a, T: AttnElement>(
    kern: &TileKernels,
    rows: Rows<&'a [T]>,
    d: usize,
    buf: &'a mut [f32],
    in_place: bool,
) -> Rows<ElemSlice<'a>> {
    if in_place {
        return rows.over(T::view(rows.data));
    }
    let f = tile_f32(kern, rows, d, buf);
    f.over(ElemSlice::F32(f.data))
}

/// How far ahead of the rows being computed keys and values are prefetched (positions).
const PREFETCH_AHEAD: usize = 32;

/// Prefetches the rows of positions `from..to` of `(b, kv head)` of the keys (`is_v`
/// false, `data` = K) or the values (`is_v` true, `data` = V).
fn prefetch_keys<T>(
    p: &Problem,
    b: usize,
    heads: std::ops::Range<usize>,
    is_v: bool,
    data: &[T],
    from: usize,
    to: usize,
) {
    let row_bytes = p.head_dim * std::mem::size_of::<T>();
    let mut j = from;
    while j < to {
        let mut n = to - j;
        for kvh in heads.clone() {
            let (off, stride, run) = rows_at(&p.kv, is_v, b, kvh, j);
            n = n.min(run);
            prefetch_rows(data, off, stride, n, row_bytes);
        }
        j += n;
    }
}

/// Runs the problem; arguments were validated by the caller.
pub(crate) fn run<T: AttnElement>(
    isa: Isa,
    p: &Problem,
    io: Inputs<'_, T>,
    out: &mut [T],
    lse: Option<&mut [f32]>,
    par: Parallelism,
) {
    let k = io.k;
    if p.batch == 0 || p.q_len == 0 || p.q_heads == 0 {
        return;
    }
    let max_kv = (0..p.batch).map(|b| p.kv_len(b)).max().unwrap_or(0);
    // A few query rows over a short cache is a step of a few microseconds, less than handing
    // half of it to another thread saves: run it on the calling thread.
    let kv_bytes = 2 * p.batch * p.kv_heads * max_kv * p.head_dim * std::mem::size_of::<T>();
    let few_rows = p.group() * p.q_len.min(ROWS_TARGET) <= LANES;
    let threads = if few_rows && kv_bytes < SERIAL_BELOW_BYTES {
        1
    } else {
        par.threads()
    };
    let plan = Plan::new(
        p.batch,
        p.group(),
        p.kv_heads,
        p.head_dim,
        p.q_len,
        max_kv,
        threads,
    );
    let kern = TileKernels::for_isa(isa);
    let dst = Outputs {
        out: SharedOut::new(out),
        lse: lse.map(SharedOut::new),
    };
    let n_tasks = plan.units * plan.splits;
    // Every part writes its whole slot (the rows `merge` reads) before the merge.
    let mut partials = if plan.splits > 1 {
        let kept = SPARE_PARTIALS.try_with(RefCell::take).unwrap_or_default();
        sized(kept, n_tasks * plan.partial_floats())
    } else {
        Vec::new()
    };
    let part_w = SharedOut::new(&mut partials);
    crate::par::for_each_with(
        n_tasks,
        threads,
        || Kept::new(&plan, !matches!(T::view(k), ElemSlice::F32(_))),
        |t, s| {
            // Longest units (last query blocks under a causal mask) first.
            let unit = plan.units - 1 - t / plan.splits;
            let split = t % plan.splits;
            let (b, kvh0, qb) = plan.unit(unit);
            let s = &mut s.0;
            let at = UnitPart { b, kvh0, qb, split };
            let rows = run_unit(&kern, p, &plan, at, io, s);
            if plan.splits == 1 {
                let (od, rp) = (plan.rp * plan.dp, plan.rp);
                for hi in 0..plan.heads {
                    let (o, m, l) = (
                        &s.o[hi * od..(hi + 1) * od],
                        &s.m[hi * rp..(hi + 1) * rp],
                        &s.l[hi * rp..(hi + 1) * rp],
                    );
                    // SAFETY: unit `(b, kvh0.., qb)` is this task's alone, and `out`/`lse`
                    // are mutably borrowed for the whole of `run`.
                    unsafe {
                        let at = BlockAt {
                            b,
                            kvh: kvh0 + hi,
                            qb,
                            n: rows,
                        };
                        write_rows(p, &plan, at, Acc { o, m, l }, &dst)
                    };
                }
            } else {
                let pf = plan.partial_floats();
                // SAFETY: slot `unit * splits + split` belongs to this task alone, and
                // `partials` lives until after `for_each_task` returns.
                let slot = unsafe { part_w.slice((unit * plan.splits + split) * pf, pf) };
                decode::store_partial(&plan, rows * plan.group, slot, &s.o, &s.m, &s.l);
            }
        },
    );
    if plan.splits > 1 {
        decode::merge(p, &plan, &partials, &dst);
        let _ = SPARE_PARTIALS.try_with(|c| c.replace(partials));
    }
}

/// Computes one part of one unit into `s.o`, `s.m`, `s.l` (unnormalised output, running max
/// and sum per padded row). Returns the number of query positions in the block.
fn run_unit<T: AttnElement>(
    kern: &TileKernels,
    p: &Problem,
    plan: &Plan,
    at: UnitPart,
    io: Inputs<'_, T>,
    s: &mut Scratch,
) -> usize {
    let UnitPart { b, kvh0, qb, split } = at;
    let Inputs { q, k, v } = io;
    let (d, rp, dp, g, hp) = (p.head_dim, plan.rp, plan.dp, plan.group, plan.heads);
    let i0 = qb * plan.nb;
    let n = plan.nb.min(p.q_len - i0);
    let nr = g * n;
    let kv_len = p.kv_len(b);
    let (qsz, od) = (rp * dp.max(d), rp * dp);

    // The scaled query block of each head: row-major (`qt[r * dp + c]`) for the dot-product
    // form that serves a few rows (decode), else transposed (`qt[c * rp + r]`); r = gi * n + il.
    let dot = rp == LANES;
    // The dot-product form reads only the block's `nr` rows (zero past `d`); the transposed
    // form reads every padded row.
    let used = if dot { nr } else { rp };
    for hi in 0..hp {
        s.qt[hi * qsz..hi * qsz + used * dp.max(d)].fill(0.0);
    }
    for hi in 0..hp {
        let qt = &mut s.qt[hi * qsz..(hi + 1) * qsz];
        s.qoff.clear();
        for gi in 0..g {
            for il in 0..n {
                s.qoff.push(p.q.offset(b, i0 + il, (kvh0 + hi) * g + gi));
            }
        }
        if dot {
            for (r, &off) in s.qoff.iter().enumerate() {
                for (x, &y) in qt[r * dp..r * dp + d].iter_mut().zip(&q[off..off + d]) {
                    *x = y.to_f32() * p.scale;
                }
            }
        } else {
            // Column by column: the writes run along a row of `qt`, the reads hop between
            // query rows that stay in cache.
            for c in 0..d {
                for (x, &off) in qt[c * rp..c * rp + nr].iter_mut().zip(&s.qoff) {
                    *x = q[off + c].to_f32() * p.scale;
                }
            }
        }
    }
    for hi in 0..hp {
        s.o[hi * od..hi * od + used * dp].fill(0.0);
    }
    s.m.fill(f32::NEG_INFINITY);
    s.l.fill(0.0);

    let pos_min = position(kv_len, p.q_len, i0);
    let pos_max = position(kv_len, p.q_len, i0 + n - 1);
    let (lo, hi) = key_range(p, kv_len, pos_min, pos_max);
    let bc = plan.bc;
    let part = (hi - lo).div_ceil(plan.splits).div_ceil(bc) * bc;
    let start = (lo + split * part).min(hi);
    let end = (start + part).min(hi);
    let heads = kvh0..kvh0 + hp;
    // f32 tiles are read in place, and so are 16-bit tiles of few-row blocks where the
    // path converts them as it loads (AVX-512); the kernels then request later rows
    // themselves. Other 16-bit tiles are widened first and prefetched a head at a time here.
    let in_place = match T::view(k) {
        ElemSlice::F32(_) => true,
        ElemSlice::F16(_) | ElemSlice::Bf16(_) => dot && kern.reads_16bit_in_place(),
    };

    let mut j = start;
    while j < end {
        let mut nk = bc.min(end - j);
        for kvh in heads.clone() {
            nk = nk.min(rows_at(&p.kv, false, b, kvh, j).2);
            nk = nk.min(rows_at(&p.kv, true, b, kvh, j).2);
        }
        // Few-row blocks stream K and V once from memory: the first rows are requested
        // here, and each kernel then requests the rows `PREFETCH_AHEAD` positions past those
        // it reads (within the part, and within a block of a paged cache). Many-row blocks
        // reuse each tile enough for the hardware prefetchers to keep up.
        if dot && j == start {
            let first = (j + PREFETCH_AHEAD).min(end);
            prefetch_keys(p, b, heads.clone(), false, k, j, first);
            prefetch_keys(p, b, heads.clone(), true, v, j, first);
        }
        let j_last = (j + nk - 1) as i64;
        let needs_mask = (p.causal && j_last > pos_min)
            || p.window.is_some_and(|w| {
                let w = w as i64;
                (j as i64) <= pos_max - w || (!p.causal && j_last >= pos_min + w)
            });
        let tile = TileAt {
            j,
            nk,
            i0,
            n,
            g,
            kv_len,
            pos_min,
            dot,
            rp,
            bc,
        };
        if dot {
            // The scores of every head first, then each head's softmax and output update:
            // the tile's key rows are read close together in time, then its value rows,
            // which streams better than alternating between them head by head.
            let sh = rp * bc;
            // Rows read in place: the kernels request the rows `PREFETCH_AHEAD` positions
            // on as they go, as far as those rows follow at the same stride; the rest (past
            // the end of a paged cache's block, or all of them for rows widened first) are
            // requested here, a head at a time, through the block table.
            let ahead = |stride: usize, run: usize| match in_place {
                true => Ahead {
                    off: PREFETCH_AHEAD * stride,
                    rows: (end.saturating_sub(j + PREFETCH_AHEAD))
                        .min(nk)
                        .min(run.saturating_sub(PREFETCH_AHEAD)),
                },
                false => Ahead::default(),
            };
            let (later, upto) = (
                (j + PREFETCH_AHEAD).min(end),
                (j + nk + PREFETCH_AHEAD).min(end),
            );
            // The key (`is_v` false) or value rows of kv head `kvh` in this tile, and how far
            // ahead of them the kernel requests rows; the rows it will not request are
            // requested here.
            let kv_tile = |is_v: bool, kvh: usize| {
                let data = if is_v { v } else { k };
                let (off, stride, run) = rows_at(&p.kv, is_v, b, kvh, j);
                let rows_ahead = ahead(stride, run);
                prefetch_keys(
                    p,
                    b,
                    kvh..kvh + 1,
                    is_v,
                    data,
                    later + rows_ahead.rows,
                    upto,
                );
                let rows = Rows {
                    data,
                    off,
                    stride,
                    n: nk,
                };
                (rows, rows_ahead)
            };
            for hi in 0..hp {
                let (keys, k_ahead) = kv_tile(false, kvh0 + hi);
                let qt = &s.qt[hi * qsz..(hi + 1) * qsz];
                let st = &mut s.st[hi * sh..(hi + 1) * sh];
                let keys = tile_rows(kern, keys, d, &mut s.kbuf, in_place);
                let args = QkDot {
                    q: qt,
                    nr,
                    d,
                    dp,
                    keys,
                    ss: bc,
                    ahead: k_ahead,
                };
                kern.qk_dot(args, st);
                if needs_mask {
                    mask_tile(p, st, tile);
                }
            }
            for hi in 0..hp {
                let (values, v_ahead) = kv_tile(true, kvh0 + hi);
                let st = &mut s.st[hi * sh..(hi + 1) * sh];
                let (m, l) = (&mut s.m[hi * rp..], &mut s.l[hi * rp..]);
                let alpha = &mut s.alpha[hi * rp..(hi + 1) * rp];
                let alpha = &mut *alpha;
                kern.softmax_rows(st, bc, nr, nk, Running { m, l, alpha });
                let o = &mut s.o[hi * od..(hi + 1) * od];
                let values = tile_rows(kern, values, d, &mut s.vbuf, in_place);
                let args = Pv {
                    pt: st,
                    pj: 1,
                    pr: bc,
                    nr,
                    values,
                    d,
                    dp,
                    alpha,
                    ahead: v_ahead,
                };
                kern.pv(args, o);
            }
        } else {
            for hi in 0..hp {
                let kvh = kvh0 + hi;
                let (koff, ks, _) = rows_at(&p.kv, false, b, kvh, j);
                let (voff, vs, _) = rows_at(&p.kv, true, b, kvh, j);
                let keys = Rows {
                    data: k,
                    off: koff,
                    stride: ks,
                    n: nk,
                };
                let values = Rows {
                    data: v,
                    off: voff,
                    stride: vs,
                    n: nk,
                };
                let keys = tile_f32(kern, keys, d, &mut s.kbuf);
                let values = tile_f32(kern, values, d, &mut s.vbuf);
                let qt = &s.qt[hi * qsz..(hi + 1) * qsz];
                let o = &mut s.o[hi * od..(hi + 1) * od];
                let m = &mut s.m[hi * rp..(hi + 1) * rp];
                let l = &mut s.l[hi * rp..(hi + 1) * rp];
                kern.qk(qt, rp, d, keys, &mut s.st);
                if needs_mask {
                    mask_tile(p, &mut s.st, tile);
                }
                let alpha = &mut s.alpha;
                kern.softmax(&mut s.st, rp, nk, Running { m, l, alpha });
                let args = Pv {
                    pt: &s.st,
                    pj: rp,
                    pr: 1,
                    nr,
                    values: values.over(ElemSlice::F32(values.data)),
                    d,
                    dp,
                    alpha: &s.alpha,
                    ahead: Ahead::default(),
                };
                kern.pv(args, o);
            }
        }
        j += nk;
    }
    n
}

/// Where a tile of scores sits: keys `j..j + nk` of the block whose first query position is
/// `i0` (`n` positions, `g` query heads per kv head), scores row-major (`dot`, row stride
/// `bc`) or transposed (key stride `rp`).
#[derive(Clone, Copy)]
struct TileAt {
    j: usize,
    nk: usize,
    i0: usize,
    n: usize,
    g: usize,
    kv_len: usize,
    pos_min: i64,
    dot: bool,
    rp: usize,
    bc: usize,
}

impl TileAt {
    /// Where the score of row `r` (head-major within the block) and key `jj` of the tile is.
    #[inline(always)]
    fn score(&self, r: usize, jj: usize) -> usize {
        if self.dot {
            r * self.bc + jj
        } else {
            jj * self.rp + r
        }
    }
}

/// Sets the scores of the keys the mask hides from each row to `-inf`.
fn mask_tile(p: &Problem, st: &mut [f32], t: TileAt) {
    let (j, n) = (t.j, t.n);
    if p.window.is_none() {
        // Causal only: key `j + jj` is hidden from the block's first `j + jj - pos_min`
        // positions, a prefix of each head's rows.
        for jj in 0..t.nk {
            let hidden = ((j + jj) as i64 - t.pos_min).clamp(0, n as i64) as usize;
            for gi in 0..t.g {
                let r0 = gi * n;
                if t.dot {
                    for r in r0..r0 + hidden {
                        st[t.score(r, jj)] = f32::NEG_INFINITY;
                    }
                } else {
                    let at = t.score(r0, jj);
                    st[at..at + hidden].fill(f32::NEG_INFINITY);
                }
            }
        }
    } else {
        for jj in 0..t.nk {
            for il in 0..n {
                if !visible(p, position(t.kv_len, p.q_len, t.i0 + il), j + jj) {
                    for gi in 0..t.g {
                        st[t.score(gi * n + il, jj)] = f32::NEG_INFINITY;
                    }
                }
            }
        }
    }
}

/// Normalises a block's rows and writes them (and their log-sum-exp) to the outputs.
///
/// # Safety
/// - `dst` must view slices that stay mutably borrowed during the call.
/// - No other thread may write the rows of block `at` meanwhile.
pub(crate) unsafe fn write_rows<T: AttnElement>(
    p: &Problem,
    plan: &Plan,
    at: BlockAt,
    acc: Acc<'_>,
    dst: &Outputs<T>,
) {
    let BlockAt { b, kvh, qb, n } = at;
    let Acc { o, m, l } = acc;
    let (out, lse) = (&dst.out, &dst.lse);
    let (g, d, dp) = (plan.group, p.head_dim, plan.dp);
    let i0 = qb * plan.nb;
    for gi in 0..g {
        let h = kvh * g + gi;
        for il in 0..n {
            let r = gi * n + il;
            let inv = if l[r] > 0.0 { 1.0 / l[r] } else { 0.0 };
            let off = p.out.offset(b, i0 + il, h);
            // SAFETY: row `(b, i0 + il, h)` (`d` contiguous elements) belongs to this unit
            // alone (caller), and the validated layout maps it to distinct in-bounds elements.
            let row = unsafe { out.slice(off, d) };
            for (x, &y) in row.iter_mut().zip(&o[r * dp..r * dp + d]) {
                *x = T::from_f32(y * inv);
            }
            if let Some(lw) = lse {
                let val = if l[r] > 0.0 {
                    m[r] + l[r].ln()
                } else {
                    f32::NEG_INFINITY
                };
                // SAFETY: as above; the lse array is `[batch, q_heads, q_len]`.
                unsafe { lw.write((b * p.q_heads + h) * p.q_len + i0 + il, val) };
            }
        }
    }
}
