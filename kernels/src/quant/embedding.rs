//! Embedding lookup from quantised tables: dequantise the selected rows.
//!
//! f32/f16 tables are plain gathers and live with the other LLM operations; this covers
//! tables stored as GGUF Q8_0, Q4_0 or Q4_1 (and any other
//! [`QuantFormat`](super::QuantFormat): the row decode is shared with
//! [`dequantize`](super::dequantize)).

use super::{
    check_len, check_row_scales, dequantize_row, mul_checked, row_bytes, ActElem, QWeights,
};
use crate::KernelError;

/// Gathers rows `ids` of a quantised table (`vocab = table.n` rows of `dim = table.k` values)
/// into `out` (`ids.len() x dim`).
///
/// An id at or past `vocab` is a [`KernelError::BadShape`] naming its position; nothing is
/// written in that case. `table.scales` follows the format's rule (see
/// [`QuantFormat::row_scales`](super::QuantFormat::row_scales)).
pub fn embedding<T: ActElem>(
    table: &QWeights<'_>,
    ids: &[u32],
    out: &mut [T],
) -> Result<(), KernelError> {
    // The row decode is scalar on every instruction-set path, bound by the bytes it reads.
    let QWeights {
        format,
        data: table,
        scales,
        n: vocab,
        k: dim,
    } = *table;
    let rb = row_bytes(format, dim)?;
    check_len("table", mul_checked(vocab, rb, "table")?, table.len())?;
    check_len("out", mul_checked(ids.len(), dim, "out")?, out.len())?;
    let scales = check_row_scales(format, scales, vocab)?;
    if let Some((pos, &id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= vocab) {
        return Err(KernelError::BadShape {
            detail: format!("token id {id} at position {pos} is outside the vocabulary of {vocab}"),
        });
    }
    if dim == 0 {
        return Ok(());
    }
    let mut row = vec![0.0f32; dim];
    for (&id, o) in ids.iter().zip(out.chunks_exact_mut(dim)) {
        let id = id as usize;
        dequantize_row(
            format,
            &table[id * rb..(id + 1) * rb],
            scales.map(|s| s[id]),
            &mut row,
        );
        for (d, &v) in o.iter_mut().zip(&row) {
            *d = T::from_f32(v);
        }
    }
    Ok(())
}
