//! Split-KV: when a problem has fewer (sequence, kv head, query block) units than threads,
//! as decode with one or a few query positions does, each unit's keys are cut into parts that
//! run as separate tasks. Each part leaves an unnormalised output, its running maximum `m`
//! and sum `l`; this module merges the parts by log-sum-exp:
//! `M = max m_s`, `L = sum exp(m_s - M) l_s`, `o = sum exp(m_s - M) o_s / L`, `lse = M + ln L`.

use super::flash::{write_rows, Plan, SharedOut};
use super::{AttnElement, Problem};

/// Saves one part's accumulator, maxima and sums into its slot.
pub(crate) fn store_partial(plan: &Plan, slot: &mut [f32], o: &[f32], m: &[f32], l: &[f32]) {
    let od = plan.rp * plan.dp;
    slot[..od].copy_from_slice(&o[..od]);
    slot[od..od + plan.rp].copy_from_slice(&m[..plan.rp]);
    slot[od + plan.rp..od + 2 * plan.rp].copy_from_slice(&l[..plan.rp]);
}

/// Merges every unit's parts and writes the results.
pub(crate) fn merge<T: AttnElement>(
    p: &Problem,
    plan: &Plan,
    partials: &[f32],
    out: &SharedOut<T>,
    lse: &Option<SharedOut<f32>>,
) {
    let (rp, dp, pf) = (plan.rp, plan.dp, plan.partial_floats());
    let od = rp * dp;
    let mut o = vec![0.0f32; od];
    let mut m = vec![f32::NEG_INFINITY; rp];
    let mut l = vec![0.0f32; rp];
    for unit in 0..plan.units {
        let qb = unit % plan.q_blocks;
        let bh = unit / plan.q_blocks;
        let (b, kvh) = (bh / p.kv_heads, bh % p.kv_heads);
        let n = plan.nb.min(p.q_len - qb * plan.nb);
        let parts = &partials[unit * plan.splits * pf..(unit + 1) * plan.splits * pf];
        for r in 0..plan.group * n {
            let big_m = parts
                .chunks_exact(pf)
                .map(|s| s[od + r])
                .fold(f32::NEG_INFINITY, f32::max);
            m[r] = big_m;
            let orow = &mut o[r * dp..(r + 1) * dp];
            orow.fill(0.0);
            if big_m == f32::NEG_INFINITY {
                l[r] = 0.0;
                continue;
            }
            let mut big_l = 0.0f32;
            for s in parts.chunks_exact(pf) {
                let (ms, ls) = (s[od + r], s[od + rp + r]);
                if ls == 0.0 {
                    continue;
                }
                let w = (ms - big_m).exp();
                big_l += w * ls;
                for (x, &y) in orow.iter_mut().zip(&s[r * dp..(r + 1) * dp]) {
                    *x += w * y;
                }
            }
            l[r] = big_l;
        }
        // SAFETY: the merge runs after every task has finished, on one thread, while `run`
        // still holds the mutable borrows of `out` and `lse`.
        unsafe { write_rows(p, plan, b, kvh, qb, n, &o, &m, &l, out, lse) };
    }
}
