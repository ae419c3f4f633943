//! Embedding lookup: gathers rows of an f32/f16/bf16 table by token id, converting to the
//! output type on the way. (Quantised tables are looked up by the quantised-format kernels.)

use super::cast::convert_row;
use super::{check_len, elements, for_row_blocks, Element};
use crate::{Exec, KernelError};

/// `out[t, :] = table[ids[t], :]` for `t < tokens`: `table` is `[vocab, dim]` row-major,
/// `out` is `[tokens, dim]`, converted from `T` to `O` (round to nearest even when narrowing).
///
/// Every id is checked before anything is written: an id `>= vocab` is a
/// [`KernelError::BadShape`] naming the id and its position.
pub fn embedding<T: Element, O: Element>(
    table: &[T],
    vocab: usize,
    dim: usize,
    ids: &[u32],
    tokens: usize,
    out: &mut [O],
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    let Exec { isa, par } = exec.into();
    isa.require()?;
    check_len("table", elements(vocab, dim)?, table.len())?;
    check_len("ids", tokens, ids.len())?;
    let n = elements(tokens, dim)?;
    check_len("out", n, out.len())?;
    let ids = &ids[..tokens];
    if let Some((pos, &id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= vocab) {
        return Err(KernelError::BadShape {
            detail: format!(
                "token id {id} at position {pos} is out of range for a vocabulary of {vocab}"
            ),
        });
    }
    for_row_blocks(par, tokens, dim, &mut out[..n], |first, block| {
        for (t, o) in block.chunks_exact_mut(dim).enumerate() {
            let row = ids[first + t] as usize * dim;
            convert_row(isa, &table[row..row + dim], o);
        }
    });
    Ok(())
}
