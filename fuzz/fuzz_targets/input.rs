//! The fuzz targets' reader of fuzzer bytes.
// Each target compiles this module and uses only part of it.
#![allow(dead_code)]

/// Reads fuzzer bytes as numbers; zeros once they run out.
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    /// The next byte.
    pub fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// The next four bytes, little-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// The next eight bytes, as two `u32`s (high half first).
    pub fn u64(&mut self) -> u64 {
        (u64::from(self.u32()) << 32) | u64::from(self.u32())
    }

    /// Mostly small sizes, sometimes huge ones.
    pub fn size(&mut self) -> usize {
        match self.u8() % 8 {
            0 => {
                let mut v = 0usize;
                for _ in 0..8 {
                    v = (v << 8) | self.u8() as usize;
                }
                v
            }
            1 => 1usize << (self.u8() % 64),
            _ => self.u8() as usize % 40,
        }
    }
}
