//! Byte extents of an op's operands, as validation returns them.

use super::OpError;

/// The most operands any op has.
pub const MAX_OPERANDS: usize = 8;

/// The device range one operand occupies: `bytes` bytes from `addr`, holding elements of
/// `elem_size` bytes. `bytes == 0` for an operand the op does not touch (its address may
/// then be anything, 0 included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// The operand's name as the header spells its field (`"a"`, `"w_scales"`, ...).
    pub operand: &'static str,
    /// Its device address.
    pub addr: u64,
    /// Bytes it spans.
    pub bytes: u64,
    /// Bytes per element (1 for quantised data).
    pub elem_size: u64,
    /// Whether the op writes it.
    pub output: bool,
}

impl Extent {
    /// The extent of `elems` elements of `elem_size` bytes at `addr`: [`OpError::Overflow`]
    /// when the byte count or its end overflows, [`OpError::Address`] when a non-empty
    /// extent starts at 0 or at an address that is not a multiple of `elem_size`.
    #[inline]
    pub fn new(
        operand: &'static str,
        addr: u64,
        elems: u64,
        elem_size: u64,
        output: bool,
    ) -> Result<Extent, OpError> {
        let bytes = elems
            .checked_mul(elem_size)
            .ok_or(OpError::Overflow { operand })?;
        if bytes > 0 {
            if addr == 0 || !addr.is_multiple_of(elem_size) {
                return Err(OpError::Address { operand, addr });
            }
            if addr.checked_add(bytes).is_none() {
                return Err(OpError::Overflow { operand });
            }
        }
        Ok(Extent {
            operand,
            addr,
            bytes,
            elem_size,
            output,
        })
    }

    /// An operand the op reads: [`Extent::new`] with `output` false.
    #[inline]
    pub fn input(name: &'static str, addr: u64, elems: u64, size: u64) -> Result<Self, OpError> {
        Extent::new(name, addr, elems, size, false)
    }

    /// An operand the op writes: [`Extent::new`] with `output` true.
    #[inline]
    pub fn output(name: &'static str, addr: u64, elems: u64, size: u64) -> Result<Self, OpError> {
        Extent::new(name, addr, elems, size, true)
    }

    /// Elements it spans.
    pub fn elems(&self) -> u64 {
        self.bytes.checked_div(self.elem_size).unwrap_or(0)
    }

    /// Whether the two ranges share a byte (empty ranges share none).
    pub fn overlaps(&self, other: &Extent) -> bool {
        self.bytes > 0
            && other.bytes > 0
            && self.addr < other.addr.saturating_add(other.bytes)
            && other.addr < self.addr.saturating_add(self.bytes)
    }
}

/// `n` when the op has work, else 0: an op that writes nothing reads nothing.
#[inline]
pub(super) fn live(work: bool, n: u64) -> u64 {
    if work {
        n
    } else {
        0
    }
}

/// The extents of every operand of one validated op, in the order of the parameter struct
/// (an optional operand that was not given is left out). Fixed capacity, no allocation.
#[derive(Debug, Clone, Copy)]
pub struct Extents {
    len: usize,
    items: [Extent; MAX_OPERANDS],
}

const EMPTY: Extent = Extent {
    operand: "",
    addr: 0,
    bytes: 0,
    elem_size: 1,
    output: false,
};

impl Default for Extents {
    fn default() -> Self {
        Extents {
            len: 0,
            items: [EMPTY; MAX_OPERANDS],
        }
    }
}

impl Extents {
    /// Appends `e`.
    ///
    /// # Panics
    /// When more than [`MAX_OPERANDS`] are pushed (a bug in an op definition).
    pub(crate) fn push(&mut self, e: Extent) {
        self.items[self.len] = e;
        self.len += 1;
    }

    /// Appends `e` when it is `Some`.
    pub(crate) fn push_opt(&mut self, e: Option<Extent>) {
        if let Some(e) = e {
            self.push(e);
        }
    }

    /// The extents, in parameter-struct order.
    pub fn as_slice(&self) -> &[Extent] {
        &self.items[..self.len]
    }

    /// The extent of operand `name`, if the op has it (and it was given).
    pub fn get(&self, name: &str) -> Option<&Extent> {
        self.as_slice().iter().find(|e| e.operand == name)
    }

    /// Total bytes over every operand, saturating (for timing models).
    pub fn total_bytes(&self) -> u64 {
        self.as_slice()
            .iter()
            .fold(0u64, |acc, e| acc.saturating_add(e.bytes))
    }

    /// [`OpError::Overlap`] when an output overlaps any other operand.
    pub fn outputs_disjoint_from_all(&self) -> Result<(), OpError> {
        for (i, o) in self.as_slice().iter().enumerate() {
            if !o.output {
                continue;
            }
            for (j, x) in self.as_slice().iter().enumerate() {
                if i != j && o.overlaps(x) {
                    return Err(OpError::Overlap {
                        output: o.operand,
                        other: x.operand,
                    });
                }
            }
        }
        Ok(())
    }
}
