//! Split-KV: when a problem has fewer (sequence, kv heads, query block) units than threads,
//! as decode with one or a few query positions does, each unit's keys are cut into parts that
//! run as separate tasks. Each part leaves an unnormalised output, its running maximum `m`
//! and sum `l`; this module merges the parts by log-sum-exp:
//! `M = max m_s`, `L = sum exp(m_s - M) l_s`, `o = sum exp(m_s - M) o_s / L`, `lse = M + ln L`.

use super::flash::{write_rows, Acc, BlockAt, Outputs, Plan};
use super::{AttnElement, Problem};

/// Saves one part's accumulator (its first `nr` rows per head, all that `merge` reads),
/// maxima and sums into its slot.
pub(crate) fn store_partial(
    plan: &Plan,
    nr: usize,
    slot: &mut [f32],
    o: &[f32],
    m: &[f32],
    l: &[f32],
) {
    let (od, mr) = (plan.heads * plan.rp * plan.dp, plan.heads * plan.rp);
    let (hd, used) = (plan.rp * plan.dp, nr * plan.dp);
    for h in 0..plan.heads {
        slot[h * hd..h * hd + used].copy_from_slice(&o[h * hd..h * hd + used]);
    }
    slot[od..od + mr].copy_from_slice(&m[..mr]);
    slot[od + mr..od + 2 * mr].copy_from_slice(&l[..mr]);
}

/// Merges every unit's parts and writes the results.
pub(crate) fn merge<T: AttnElement>(p: &Problem, plan: &Plan, partials: &[f32], dst: &Outputs<T>) {
    let (rp, dp, pf) = (plan.rp, plan.dp, plan.partial_floats());
    let (od, mr) = (plan.heads * rp * dp, plan.heads * rp);
    let mut o = vec![0.0f32; rp * dp];
    let mut m = vec![f32::NEG_INFINITY; rp];
    let mut l = vec![0.0f32; rp];
    for unit in 0..plan.units {
        let (b, kvh0, qb) = plan.unit(unit);
        let n = plan.nb.min(p.q_len - qb * plan.nb);
        let parts = &partials[unit * plan.splits * pf..(unit + 1) * plan.splits * pf];
        for hi in 0..plan.heads {
            for r in 0..plan.group * n {
                let (mi, oi) = (hi * rp + r, hi * rp * dp + r * dp);
                let big_m = parts
                    .chunks_exact(pf)
                    .map(|s| s[od + mi])
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
                    let (ms, ls) = (s[od + mi], s[od + mr + mi]);
                    if ls == 0.0 {
                        continue;
                    }
                    let w = (ms - big_m).exp();
                    big_l += w * ls;
                    for (x, &y) in orow.iter_mut().zip(&s[oi..oi + dp]) {
                        *x += w * y;
                    }
                }
                l[r] = big_l;
            }
            // SAFETY: the merge runs after every task has finished, on one thread, while
            // `run` still holds the mutable borrows of `out` and `lse`.
            unsafe {
                let at = BlockAt {
                    b,
                    kvh: kvh0 + hi,
                    qb,
                    n,
                };
                write_rows(
                    p,
                    plan,
                    at,
                    Acc {
                        o: &o,
                        m: &m,
                        l: &l,
                    },
                    dst,
                )
            };
        }
    }
}
