//! Tensor metadata shared by every front end: dtypes, strided layouts, views, DLPack.
//!
//! Python's `knpu.Tensor` and the C API's DLPack functions describe device memory with the
//! types of this module, so a rule about shapes, strides or dtypes is written once. Nothing
//! here owns device memory: a front end pairs a [`Layout`] with a buffer it keeps alive.
//!
//! - [`DataType`]: every element type a tensor can hold, with its element or block size,
//!   its names, its driver-ABI number and its DLPack code.
//! - [`Layout`]: shape, strides and offset in storage units (elements, or blocks for the
//!   quantised block types), and the view operations that never copy: [`Layout::view`],
//!   [`Layout::permute`], [`Layout::transpose`], [`Layout::slice`], [`Layout::select`].
//! - [`copy_strided`] and [`fill_strided`]: device copies and fills between arbitrary layouts,
//!   queued as one device copy or fill command per contiguous run.
//! - [`dlpack`]: the DLPack 1.x ABI structs and the export and import helpers.
//!
//! It must never read device memory on the host: device memory is not host-addressable.

use crate::buffer::DeviceBuffer;
use crate::error::{Error, Result};
use crate::stream::{Ends, Stream, Submit};
use knpu_driver_abi::{self as abi, SizedStruct};

/// Every element type a tensor can hold.
///
/// The quantised block types hold GGUF blocks as they are: a row of `k` values is
/// `k / block_elems` blocks of `block_bytes` bytes, and layouts of them count blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DataType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE binary64.
    F64,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 32-bit integer.
    U32,
    /// Signed 64-bit integer.
    I64,
    /// OCP FP8 E4M3FN (no infinities, largest finite 448).
    F8E4M3,
    /// FP8 E5M2.
    F8E5M2,
    /// GGUF Q4_0 blocks (32 values in 18 bytes).
    Q4_0,
    /// GGUF Q4_1 blocks (32 values in 20 bytes).
    Q4_1,
    /// GGUF Q8_0 blocks (32 values in 34 bytes).
    Q8_0,
    /// GGUF Q4_K blocks (256 values in 144 bytes).
    Q4K,
    /// GGUF Q6_K blocks (256 values in 210 bytes).
    Q6K,
}

impl DataType {
    /// Every data type, in a stable order.
    pub const ALL: [DataType; 16] = [
        DataType::F32,
        DataType::F16,
        DataType::BF16,
        DataType::F64,
        DataType::I8,
        DataType::U8,
        DataType::I32,
        DataType::U32,
        DataType::I64,
        DataType::F8E4M3,
        DataType::F8E5M2,
        DataType::Q4_0,
        DataType::Q4_1,
        DataType::Q8_0,
        DataType::Q4K,
        DataType::Q6K,
    ];

    /// The name a user writes, as PyTorch spells it: `"float32"`, `"bfloat16"`, `"q4_k"`.
    pub fn name(self) -> &'static str {
        match self {
            DataType::F32 => "float32",
            DataType::F16 => "float16",
            DataType::BF16 => "bfloat16",
            DataType::F64 => "float64",
            DataType::I8 => "int8",
            DataType::U8 => "uint8",
            DataType::I32 => "int32",
            DataType::U32 => "uint32",
            DataType::I64 => "int64",
            DataType::F8E4M3 => "float8_e4m3",
            DataType::F8E5M2 => "float8_e5m2",
            DataType::Q4_0 => "q4_0",
            DataType::Q4_1 => "q4_1",
            DataType::Q8_0 => "q8_0",
            DataType::Q4K => "q4_k",
            DataType::Q6K => "q6_k",
        }
    }

    /// The data type of a name: [`DataType::name`] or the short form (`"f32"`, `"bf16"`,
    /// `"i64"`, `"f8e4m3"`).
    pub fn from_name(name: &str) -> Option<DataType> {
        let short = match name {
            "f32" => Some(DataType::F32),
            "f16" | "half" => Some(DataType::F16),
            "bf16" => Some(DataType::BF16),
            "f64" | "double" => Some(DataType::F64),
            "i8" => Some(DataType::I8),
            "u8" => Some(DataType::U8),
            "i32" => Some(DataType::I32),
            "u32" => Some(DataType::U32),
            "i64" => Some(DataType::I64),
            "f8e4m3" => Some(DataType::F8E4M3),
            "f8e5m2" => Some(DataType::F8E5M2),
            _ => None,
        };
        short.or_else(|| DataType::ALL.into_iter().find(|d| d.name() == name))
    }

    /// The quantised format of a block type (or an 8-bit float), as the quantised kernels
    /// number it; `None` for the other types.
    pub fn quant_format(self) -> Option<crate::ops::QuantFormat> {
        use crate::ops::QuantFormat as Q;
        match self {
            DataType::Q4_0 => Some(Q::Q4_0),
            DataType::Q4_1 => Some(Q::Q4_1),
            DataType::Q8_0 => Some(Q::Q8_0),
            DataType::Q4K => Some(Q::Q4_K),
            DataType::Q6K => Some(Q::Q6_K),
            DataType::F8E4M3 => Some(Q::F8E4M3),
            DataType::F8E5M2 => Some(Q::F8E5M2),
            _ => None,
        }
    }

    /// Whether this is a quantised block type (a storage unit holds several values).
    pub fn is_block(self) -> bool {
        self.block_elems() > 1
    }

    /// Values per storage unit: 1, or the block length of a block type.
    pub fn block_elems(self) -> usize {
        self.quant_format().map_or(1, |q| q.block_elems())
    }

    /// Bytes per storage unit: the element size, or a block type's block size.
    pub fn unit_bytes(self) -> usize {
        match self {
            DataType::F32 | DataType::I32 | DataType::U32 => 4,
            DataType::F16 | DataType::BF16 => 2,
            DataType::F64 | DataType::I64 => 8,
            DataType::I8 | DataType::U8 => 1,
            _ => self.quant_format().map_or(1, |q| q.block_bytes()),
        }
    }

    /// Whether this is a floating-point type with one value per unit.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            DataType::F32
                | DataType::F16
                | DataType::BF16
                | DataType::F64
                | DataType::F8E4M3
                | DataType::F8E5M2
        )
    }

    /// The driver ABI's `KnpuDtype` number, for the types kernels compute on.
    pub fn abi(self) -> Option<u32> {
        Some(match self {
            DataType::F32 => abi::KNPU_DTYPE_F32,
            DataType::F16 => abi::KNPU_DTYPE_F16,
            DataType::BF16 => abi::KNPU_DTYPE_BF16,
            DataType::F64 => abi::KNPU_DTYPE_F64,
            DataType::I8 => abi::KNPU_DTYPE_I8,
            DataType::U8 => abi::KNPU_DTYPE_U8,
            DataType::I32 => abi::KNPU_DTYPE_I32,
            DataType::U32 => abi::KNPU_DTYPE_U32,
            DataType::I64 => abi::KNPU_DTYPE_I64,
            _ => return None,
        })
    }

    /// The DLPack type of one element; `None` for the block types, which DLPack cannot
    /// describe.
    pub fn to_dlpack(self) -> Option<dlpack::DLDataType> {
        use dlpack::code;
        let (c, bits) = match self {
            DataType::F32 => (code::FLOAT, 32),
            DataType::F16 => (code::FLOAT, 16),
            DataType::BF16 => (code::BFLOAT, 16),
            DataType::F64 => (code::FLOAT, 64),
            DataType::I8 => (code::INT, 8),
            DataType::U8 => (code::UINT, 8),
            DataType::I32 => (code::INT, 32),
            DataType::U32 => (code::UINT, 32),
            DataType::I64 => (code::INT, 64),
            DataType::F8E4M3 => (code::FLOAT8_E4M3FN, 8),
            DataType::F8E5M2 => (code::FLOAT8_E5M2, 8),
            _ => return None,
        };
        Some(dlpack::DLDataType {
            code: c,
            bits,
            lanes: 1,
        })
    }

    /// The data type of a DLPack type; an error names a type knpu does not hold.
    pub fn from_dlpack(t: dlpack::DLDataType) -> Result<DataType> {
        let found = DataType::ALL.into_iter().find(|d| d.to_dlpack() == Some(t));
        found.ok_or_else(|| Error::NotSupported {
            detail: format!(
                "DLPack dtype (code {}, bits {}, lanes {}) has no knpu dtype",
                t.code, t.bits, t.lanes
            ),
        })
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a tensor's units sit in its storage: `shape`, `strides` (in units, may be negative
/// or zero) and the `offset` of the first unit.
///
/// A unit is one element, or one block of a block type; [`Layout::from_values`] and
/// [`Layout::values_shape`] convert a shape of values to one of units and back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Layout {
    shape: Vec<usize>,
    strides: Vec<isize>,
    offset: usize,
}

fn numel_of(shape: &[usize]) -> Result<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d)
            .ok_or_else(|| Error::invalid(format!("shape {shape:?} has too many elements")))
    })
}

fn wrap_dim(dim: isize, ndim: usize) -> Result<usize> {
    let n = ndim as isize;
    let d = if dim < 0 { dim + n } else { dim };
    if d < 0 || d >= n {
        return Err(Error::invalid(format!(
            "dimension {dim} is out of range for a tensor of {ndim} dimensions"
        )));
    }
    Ok(d as usize)
}

impl Layout {
    /// A row-major contiguous layout of `shape` at offset 0. Fails when the element count
    /// overflows.
    pub fn contiguous(shape: &[usize]) -> Result<Layout> {
        numel_of(shape)?;
        Ok(Layout {
            shape: shape.to_vec(),
            strides: Self::contiguous_strides(shape),
            offset: 0,
        })
    }

    /// Row-major strides of `shape`.
    pub fn contiguous_strides(shape: &[usize]) -> Vec<isize> {
        let mut strides = vec![0isize; shape.len()];
        let mut s = 1isize;
        for (i, &d) in shape.iter().enumerate().rev() {
            strides[i] = s;
            s = s.wrapping_mul(d.max(1) as isize);
        }
        strides
    }

    /// A layout from its parts; fails when the lengths differ, the element count overflows or
    /// a unit would sit before the start of storage.
    pub fn new(shape: Vec<usize>, strides: Vec<isize>, offset: usize) -> Result<Layout> {
        if shape.len() != strides.len() {
            return Err(Error::invalid(format!(
                "shape {shape:?} and strides {strides:?} differ in length"
            )));
        }
        numel_of(&shape)?;
        let l = Layout {
            shape,
            strides,
            offset,
        };
        l.span()?;
        Ok(l)
    }

    /// The contiguous layout of a tensor of `dtype` whose shape counts values: a block type's
    /// last dimension must be a whole number of blocks.
    pub fn from_values(shape: &[usize], dtype: DataType) -> Result<Layout> {
        let be = dtype.block_elems();
        if be == 1 {
            return Layout::contiguous(shape);
        }
        let Some((&last, lead)) = shape.split_last() else {
            return Err(Error::invalid(format!(
                "a {dtype} tensor needs at least one dimension"
            )));
        };
        if last % be != 0 {
            return Err(Error::Shape {
                operand: "shape",
                expected: format!("a last dimension that is a multiple of {be} ({dtype} blocks)"),
                actual: format!("{shape:?}"),
            });
        }
        let mut units = lead.to_vec();
        units.push(last / be);
        Layout::contiguous(&units)
    }

    /// The shape in values of a tensor of `dtype` with this layout (the last dimension
    /// times the block length for a block type).
    pub fn values_shape(&self, dtype: DataType) -> Vec<usize> {
        let mut s = self.shape.clone();
        if let Some(last) = s.last_mut() {
            *last *= dtype.block_elems();
        }
        s
    }

    /// Sizes of the dimensions, in units.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Strides of the dimensions, in units.
    pub fn strides(&self) -> &[isize] {
        &self.strides
    }

    /// The unit index of the first unit in storage.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// The number of units.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the units are row-major and dense (size-1 dimensions may have any stride).
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1isize;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d == 1 {
                continue;
            }
            if d == 0 {
                return true;
            }
            if s != expected {
                return false;
            }
            expected *= d as isize;
        }
        true
    }

    /// The storage units the layout touches: `start..end` in unit indices, empty when the
    /// layout has no units. Fails when a unit would sit before the start of storage.
    pub fn span(&self) -> Result<std::ops::Range<usize>> {
        if self.numel() == 0 {
            return Ok(self.offset..self.offset);
        }
        let (mut lo, mut hi) = (self.offset as i128, self.offset as i128);
        for (&d, &s) in self.shape.iter().zip(&self.strides) {
            let reach = (d as i128 - 1) * s as i128;
            if reach < 0 {
                lo += reach;
            } else {
                hi += reach;
            }
        }
        if lo < 0 {
            return Err(Error::invalid(format!(
                "layout {self:?} reaches unit {lo}, before the start of storage"
            )));
        }
        let end = usize::try_from(hi + 1)
            .map_err(|_| Error::invalid(format!("layout {self:?} overflows the address space")))?;
        Ok(lo as usize..end)
    }

    /// Resolves a shape with at most one `-1` against `numel` units.
    pub fn infer_shape(numel: usize, shape: &[isize]) -> Result<Vec<usize>> {
        let mut infer = None;
        let mut known = 1usize;
        for (i, &d) in shape.iter().enumerate() {
            if d == -1 {
                if infer.replace(i).is_some() {
                    return Err(Error::invalid("only one dimension can be -1"));
                }
            } else if d < 0 {
                return Err(Error::invalid(format!(
                    "invalid dimension {d} in shape {shape:?}"
                )));
            } else {
                known = known.checked_mul(d as usize).ok_or_else(|| {
                    Error::invalid(format!("shape {shape:?} has too many elements"))
                })?;
            }
        }
        let mut out: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
        match infer {
            Some(i) => {
                if known == 0 || !numel.is_multiple_of(known) {
                    return Err(Error::Shape {
                        operand: "shape",
                        expected: format!("a shape of {numel} elements"),
                        actual: format!("{shape:?}"),
                    });
                }
                out[i] = numel / known;
            }
            None if known != numel => {
                return Err(Error::Shape {
                    operand: "shape",
                    expected: format!("a shape of {numel} elements"),
                    actual: format!("{shape:?}"),
                });
            }
            None => {}
        }
        Ok(out)
    }

    /// The same units seen with `shape` (one dimension may be `-1`), without moving any:
    /// fails with [`Error::Shape`] when the element count differs and with
    /// [`Error::InvalidValue`] when the strides cannot express it (copy first, as
    /// `reshape` does).
    pub fn view(&self, shape: &[isize]) -> Result<Layout> {
        let new_shape = Self::infer_shape(self.numel(), shape)?;
        let strides = self.view_strides(&new_shape).ok_or_else(|| {
            Error::invalid(format!(
                "a view of shape {new_shape:?} is not possible for shape {:?} with strides {:?}; \
                 copy with contiguous() or use reshape()",
                self.shape, self.strides
            ))
        })?;
        Ok(Layout {
            shape: new_shape,
            strides,
            offset: self.offset,
        })
    }

    /// Strides for `new_shape` over the same units, where they exist: dimensions are grouped
    /// into chunks that are contiguous among themselves, and each chunk is split anew.
    fn view_strides(&self, new_shape: &[usize]) -> Option<Vec<isize>> {
        if self.numel() == 0 {
            return Some(Self::contiguous_strides(new_shape));
        }
        let (old_shape, old_strides): (&[usize], &[isize]) = if self.shape.is_empty() {
            (&[1], &[1])
        } else {
            (&self.shape, &self.strides)
        };
        let mut new_strides = vec![0isize; new_shape.len()];
        let mut view_d = new_shape.len() as isize - 1;
        let mut chunk_base = *old_strides.last().unwrap_or(&1);
        let (mut tensor_numel, mut view_numel) = (1usize, 1usize);
        for d in (0..old_shape.len()).rev() {
            tensor_numel *= old_shape[d];
            let chunk_ends = d == 0
                || (old_shape[d - 1] != 1
                    && old_strides[d - 1] != tensor_numel as isize * chunk_base);
            if chunk_ends {
                while view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d as usize] == 1)
                {
                    new_strides[view_d as usize] = view_numel as isize * chunk_base;
                    view_numel *= new_shape[view_d as usize];
                    view_d -= 1;
                }
                if view_numel != tensor_numel {
                    return None;
                }
                if d > 0 {
                    chunk_base = old_strides[d - 1];
                    tensor_numel = 1;
                    view_numel = 1;
                }
            }
        }
        (view_d == -1).then_some(new_strides)
    }

    /// The dimensions reordered: dimension `i` of the result is dimension `dims[i]` of this
    /// layout (negative indices count from the end).
    pub fn permute(&self, dims: &[isize]) -> Result<Layout> {
        let n = self.ndim();
        if dims.len() != n {
            return Err(Error::invalid(format!(
                "permute needs {n} dimensions, got {dims:?}"
            )));
        }
        let mut seen = vec![false; n];
        let mut shape = Vec::with_capacity(n);
        let mut strides = Vec::with_capacity(n);
        for &d in dims {
            let d = wrap_dim(d, n)?;
            if std::mem::replace(&mut seen[d], true) {
                return Err(Error::invalid(format!(
                    "permute names dimension {d} twice in {dims:?}"
                )));
            }
            shape.push(self.shape[d]);
            strides.push(self.strides[d]);
        }
        Ok(Layout {
            shape,
            strides,
            offset: self.offset,
        })
    }

    /// Dimensions `a` and `b` swapped.
    pub fn transpose(&self, a: isize, b: isize) -> Result<Layout> {
        let (a, b) = (wrap_dim(a, self.ndim())?, wrap_dim(b, self.ndim())?);
        let mut l = self.clone();
        l.shape.swap(a, b);
        l.strides.swap(a, b);
        Ok(l)
    }

    /// Python's `start:stop:step` along `dim`: missing bounds default by the sign of `step`,
    /// negative bounds count from the end, and bounds past the ends are clamped. `step` must
    /// not be 0.
    pub fn slice(
        &self,
        dim: isize,
        start: Option<isize>,
        stop: Option<isize>,
        step: isize,
    ) -> Result<Layout> {
        let d = wrap_dim(dim, self.ndim())?;
        if step == 0 {
            return Err(Error::invalid("slice step cannot be zero"));
        }
        let len = self.shape[d] as isize;
        let clamp = |v: isize, lo: isize, hi: isize| v.clamp(lo, hi);
        let norm = |v: isize| if v < 0 { v + len } else { v };
        let (start, stop) = if step > 0 {
            (
                start.map_or(0, |s| clamp(norm(s), 0, len)),
                stop.map_or(len, |s| clamp(norm(s), 0, len)),
            )
        } else {
            (
                start.map_or(len - 1, |s| clamp(norm(s), -1, len - 1)),
                stop.map_or(-1, |s| clamp(norm(s), -1, len - 1)),
            )
        };
        let count = if step > 0 {
            if stop > start {
                (stop - start + step - 1) / step
            } else {
                0
            }
        } else if start > stop {
            (start - stop + (-step) - 1) / (-step)
        } else {
            0
        };
        let mut l = self.clone();
        if count > 0 {
            let moved = start as i128 * self.strides[d] as i128 + self.offset as i128;
            l.offset = usize::try_from(moved)
                .map_err(|_| Error::invalid("slice moves the offset out of storage"))?;
        }
        l.shape[d] = count as usize;
        l.strides[d] = self.strides[d] * step;
        Ok(l)
    }

    /// The layout at `index` along `dim`, with that dimension removed (negative indices
    /// count from the end).
    pub fn select(&self, dim: isize, index: isize) -> Result<Layout> {
        let d = wrap_dim(dim, self.ndim())?;
        let len = self.shape[d] as isize;
        let i = if index < 0 { index + len } else { index };
        if i < 0 || i >= len {
            return Err(Error::invalid(format!(
                "index {index} is out of range for dimension {d} of size {len}"
            )));
        }
        let moved = self.offset as i128 + i as i128 * self.strides[d] as i128;
        let mut l = self.clone();
        l.offset = usize::try_from(moved)
            .map_err(|_| Error::invalid("index moves the offset out of storage"))?;
        l.shape.remove(d);
        l.strides.remove(d);
        Ok(l)
    }

    /// A new dimension of size 1 at `dim` (`0..=ndim`).
    pub fn unsqueeze(&self, dim: usize) -> Result<Layout> {
        if dim > self.ndim() {
            return Err(Error::invalid(format!(
                "cannot insert dimension {dim} into a tensor of {} dimensions",
                self.ndim()
            )));
        }
        let mut l = self.clone();
        let stride = l.strides.get(dim).map_or(1, |&s| s * l.shape[dim] as isize);
        l.shape.insert(dim, 1);
        l.strides.insert(dim, stride);
        Ok(l)
    }

    /// This layout broadcast to `shape` as numpy broadcasts: dimensions are matched from
    /// the end, a size-1 or missing dimension repeats with stride 0, and any other size must
    /// equal the target's.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Layout> {
        let n = shape.len();
        if self.ndim() > n {
            return Err(Error::Shape {
                operand: "src",
                expected: format!("a shape that broadcasts to {shape:?}"),
                actual: format!("{:?}", self.shape),
            });
        }
        let lead = n - self.ndim();
        let mut strides = vec![0isize; n];
        for (i, &target) in shape.iter().enumerate().skip(lead) {
            let (d, s) = (self.shape[i - lead], self.strides[i - lead]);
            strides[i] = if d == target {
                s
            } else if d == 1 {
                0
            } else {
                return Err(Error::Shape {
                    operand: "src",
                    expected: format!("a shape that broadcasts to {shape:?}"),
                    actual: format!("{:?}", self.shape),
                });
            };
        }
        Layout::new(shape.to_vec(), strides, self.offset)
    }

    /// How a GEMM can read this layout as a batch of matrices (its last two dimensions, the
    /// leading ones flattened into one batch), or `None` when it cannot: a negative stride, a
    /// repeated (stride-0) row or column, or leading dimensions that do not flatten to one
    /// stride. Such operands are copied to a contiguous layout first.
    pub fn matrix_batch(&self) -> Option<MatrixBatch> {
        let n = self.ndim();
        if n < 2 {
            return None;
        }
        let (rows, cols) = (self.shape[n - 2], self.shape[n - 1]);
        let (sr, sc) = (self.strides[n - 2], self.strides[n - 1]);
        let (ld, transposed) = if (cols <= 1 || sc == 1) && (rows <= 1 || sr >= cols as isize) {
            (if rows <= 1 { cols.max(1) } else { sr as usize }, false)
        } else if (rows <= 1 || sr == 1) && (cols <= 1 || sc >= rows as isize) {
            (if cols <= 1 { rows.max(1) } else { sc as usize }, true)
        } else {
            return None;
        };
        let batch = self.shape[..n - 2].iter().product::<usize>();
        let lead: Vec<(usize, isize)> = self.shape[..n - 2]
            .iter()
            .zip(&self.strides[..n - 2])
            .filter(|(&d, _)| d != 1)
            .map(|(&d, &s)| (d, s))
            .collect();
        let batch_stride = match lead.last() {
            None => 0,
            Some(&(_, last)) => {
                if last < 0 {
                    return None;
                }
                let flat = lead.windows(2).all(|w| w[0].1 == w[1].1 * w[1].0 as isize);
                if !flat {
                    return None;
                }
                last as usize
            }
        };
        Some(MatrixBatch {
            offset: self.offset,
            ld,
            transposed,
            batch,
            batch_stride,
        })
    }

    /// This 4-D layout read as attention's `[batch, heads, seq, head_dim]` (PyTorch's
    /// `scaled_dot_product_attention` order) in place, or `None` when it cannot be: a
    /// negative stride, or a `head_dim` that is not contiguous. The view starts at
    /// [`Layout::offset`].
    pub fn attn_bhsd(&self) -> Option<crate::ops::AttnTensor> {
        if self.ndim() != 4 {
            return None;
        }
        let st = |i: usize| -> Option<usize> {
            if self.shape[i] <= 1 {
                Some(0)
            } else {
                usize::try_from(self.strides[i]).ok()
            }
        };
        if st(3)? != 0 && self.strides[3] != 1 {
            return None;
        }
        Some(crate::ops::AttnTensor {
            batch: self.shape[0],
            heads: self.shape[1],
            seq: self.shape[2],
            head_dim: self.shape[3],
            batch_stride: st(0)?,
            head_stride: st(1)?,
            seq_stride: st(2)?,
        })
    }

    /// Calls `f(dst_offset, src_offset, len)` for each contiguous run of units that copying
    /// `src` into `dst` (same shape) moves, in row-major order of the shape.
    pub fn for_each_run(
        dst: &Layout,
        src: &Layout,
        mut f: impl FnMut(usize, usize, usize) -> Result<()>,
    ) -> Result<()> {
        if dst.shape != src.shape {
            return Err(Error::Shape {
                operand: "src",
                expected: format!("{:?}", dst.shape),
                actual: format!("{:?}", src.shape),
            });
        }
        if dst.numel() == 0 {
            return Ok(());
        }
        // Merge dimensions that are contiguous with their inner neighbour in both layouts.
        let mut dims: Vec<(usize, isize, isize)> = Vec::new();
        for ((&n, &ds), &ss) in dst.shape.iter().zip(&dst.strides).zip(&src.strides) {
            if n == 1 {
                continue;
            }
            if let Some(last) = dims.last_mut() {
                if last.1 == ds * n as isize && last.2 == ss * n as isize {
                    *last = (last.0 * n, ds, ss);
                    continue;
                }
            }
            dims.push((n, ds, ss));
        }
        let run = match dims.last() {
            Some(&(n, 1, 1)) => {
                dims.pop();
                n
            }
            _ => 1,
        };
        let mut index = vec![0usize; dims.len()];
        let (mut d_off, mut s_off) = (dst.offset as isize, src.offset as isize);
        loop {
            f(d_off as usize, s_off as usize, run)?;
            // Odometer over the outer dimensions.
            let mut k = dims.len();
            loop {
                if k == 0 {
                    return Ok(());
                }
                k -= 1;
                let (n, ds, ss) = dims[k];
                index[k] += 1;
                d_off += ds;
                s_off += ss;
                if index[k] < n {
                    break;
                }
                d_off -= ds * n as isize;
                s_off -= ss * n as isize;
                index[k] = 0;
            }
        }
    }
}

/// Commands per submission of a strided copy or fill.
const RUNS_PER_SUBMIT: usize = 1024;

fn check_in_bounds<T>(
    what: &str,
    buf: &DeviceBuffer<T>,
    layout: &Layout,
    unit: usize,
) -> Result<()> {
    let span = layout.span()?;
    let bytes = span.end.checked_mul(unit);
    if !span.is_empty() && bytes.is_none_or(|b| b > buf.size_bytes()) {
        return Err(Error::invalid(format!(
            "{what} layout {layout:?} of {unit}-byte units reaches past its buffer of {} bytes",
            buf.size_bytes()
        )));
    }
    Ok(())
}

fn submit_batches(stream: &Stream, cmds: &mut Vec<abi::KnpuCommand>, last: &mut u64) -> Result<()> {
    if cmds.is_empty() {
        return Ok(());
    }
    // SAFETY: the commands name device memory only.
    *last = unsafe { stream.submit(cmds, Submit::default()) }?;
    cmds.clear();
    Ok(())
}

/// A batch of matrices as a GEMM reads them from a [`Layout`] (see
/// [`Layout::matrix_batch`]): matrix `b` starts at unit `offset + b * batch_stride`, its rows
/// are `ld` units apart, or its columns are when `transposed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatrixBatch {
    /// Unit of the first element of the first matrix.
    pub offset: usize,
    /// Units between rows (columns when `transposed`).
    pub ld: usize,
    /// Whether the matrix is stored column by column.
    pub transposed: bool,
    /// Number of matrices.
    pub batch: usize,
    /// Units between matrices (0 when one matrix repeats).
    pub batch_stride: usize,
}

/// The shape numpy's broadcasting gives operands of shapes `a` and `b`: dimensions matched
/// from the end, a size-1 or missing dimension taking the other's size.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let at = |s: &[usize], i: usize| {
        if i + s.len() >= n {
            s[i + s.len() - n]
        } else {
            1
        }
    };
    (0..n)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            _ => Err(Error::Shape {
                operand: "b",
                expected: format!("a shape that broadcasts with {a:?}"),
                actual: format!("{b:?}"),
            }),
        })
        .collect()
}

/// A shape read as `[rows, cols]` over its last dimension, as row-wise ops (norms, softmax,
/// reductions) read their operand; fails on 0-D shapes.
pub fn rows_cols(shape: &[usize]) -> Result<(usize, usize)> {
    match shape.split_last() {
        Some((&cols, lead)) => Ok((numel_of(lead)?, cols)),
        None => Err(Error::Shape {
            operand: "x",
            expected: "at least 1 dimension".into(),
            actual: "a 0-D tensor".into(),
        }),
    }
}

/// The shapes of a matrix product as numpy's `matmul` defines it (see [`matmul_shapes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatmulShapes {
    /// The result's shape.
    pub out: Vec<usize>,
    /// The broadcast leading (batch) dimensions.
    pub batch: Vec<usize>,
    /// Rows of each product.
    pub m: usize,
    /// Columns of each product.
    pub n: usize,
    /// The reduced dimension.
    pub k: usize,
    /// Whether `a` was 1-D (read as one row, a dimension the result drops).
    pub a_vector: bool,
    /// Whether `b` was 1-D (read as one column, a dimension the result drops).
    pub b_vector: bool,
}

/// The shapes of `a @ b` as numpy's `matmul` defines them: the last two dimensions are
/// multiplied, the leading ones broadcast; a 1-D `a` is a row and a 1-D `b` a column, whose
/// dimension the result drops. Fails on 0-D operands and on mismatched inner dimensions.
pub fn matmul_shapes(a: &[usize], b: &[usize]) -> Result<MatmulShapes> {
    if a.is_empty() || b.is_empty() {
        return Err(Error::Shape {
            operand: if a.is_empty() { "a" } else { "b" },
            expected: "at least 1 dimension".into(),
            actual: "a 0-D tensor".into(),
        });
    }
    let (a_vector, b_vector) = (a.len() == 1, b.len() == 1);
    let (m, ka, a_lead) = if a_vector {
        (1, a[0], &a[..0])
    } else {
        (a[a.len() - 2], a[a.len() - 1], &a[..a.len() - 2])
    };
    let (kb, n, b_lead) = if b_vector {
        (b[0], 1, &b[..0])
    } else {
        (b[b.len() - 2], b[b.len() - 1], &b[..b.len() - 2])
    };
    if ka != kb {
        return Err(Error::Shape {
            operand: "b",
            expected: format!("{ka} rows to match a's {a:?}"),
            actual: format!("{b:?}"),
        });
    }
    let batch = broadcast_shapes(a_lead, b_lead)?;
    let mut out = batch.clone();
    if !a_vector {
        out.push(m);
    }
    if !b_vector {
        out.push(n);
    }
    numel_of(&out)?;
    Ok(MatmulShapes {
        out,
        batch,
        m,
        n,
        k: ka,
        a_vector,
        b_vector,
    })
}

/// Queues on `stream` a copy of the units of `src` (laid out by `src_layout` in `src_buf`)
/// into those of `dst` (laid out by `dst_layout`), both with units of `unit_bytes` bytes:
/// one device copy command per contiguous run, in submissions of up to 1024 commands.
///
/// `dst` is written through a shared reference: tensor views share their storage, and the
/// caller orders writers and readers on streams as with any device memory. A contiguous
/// pair costs one command; the worst case (a transpose of single units) costs one per unit.
/// The two layouts must not overlap in one buffer (the runs are copied in order, not as
/// one snapshot). Both must lie inside their buffers.
pub fn copy_strided<S, D>(
    stream: &Stream,
    dst_buf: &DeviceBuffer<D>,
    dst_layout: &Layout,
    src_buf: &DeviceBuffer<S>,
    src_layout: &Layout,
    unit_bytes: usize,
) -> Result<()> {
    stream.check_device("dst", dst_buf.device())?;
    stream.check_device("src", src_buf.device())?;
    check_in_bounds("dst", dst_buf, dst_layout, unit_bytes)?;
    check_in_bounds("src", src_buf, src_layout, unit_bytes)?;
    let (d0, s0) = (dst_buf.device_address(), src_buf.device_address());
    let last = submit_runs(stream, dst_layout, src_layout, |d, s, len| {
        let ends = Ends::DeviceToDevice(s0 + (s * unit_bytes) as u64, d0 + (d * unit_bytes) as u64);
        Stream::copy_command(ends, (len * unit_bytes) as u64)
    })?;
    if let Some(v) = last {
        src_buf.note_use(stream, v);
        dst_buf.note_use(stream, v);
    }
    Ok(())
}

/// Submits one command per contiguous run of `dst` and `src` (made by `command(dst_unit,
/// src_unit, units)`), in submissions of up to [`RUNS_PER_SUBMIT`] commands; returns the
/// stream value of the last submission, if there was one.
fn submit_runs(
    stream: &Stream,
    dst: &Layout,
    src: &Layout,
    mut command: impl FnMut(usize, usize, usize) -> abi::KnpuCommand,
) -> Result<Option<u64>> {
    let mut cmds = Vec::new();
    let mut last = None::<u64>;
    let mut v = 0u64;
    Layout::for_each_run(dst, src, |d, s, len| {
        cmds.push(command(d, s, len));
        if cmds.len() == RUNS_PER_SUBMIT {
            submit_batches(stream, &mut cmds, &mut v)?;
            last = Some(v);
        }
        Ok(())
    })?;
    if !cmds.is_empty() {
        submit_batches(stream, &mut cmds, &mut v)?;
        last = Some(v);
    }
    Ok(last)
}

/// Queues on `stream` a fill of every unit of `dst_layout` in `dst_buf` with the low
/// `unit_bytes` bytes of `pattern` (little-endian); units of 1, 2, 4 or 8 bytes.
///
/// As [`copy_strided`], `dst` is written through a shared reference.
pub fn fill_strided<D>(
    stream: &Stream,
    dst_buf: &DeviceBuffer<D>,
    dst_layout: &Layout,
    unit_bytes: usize,
    pattern: u64,
) -> Result<()> {
    if !matches!(unit_bytes, 1 | 2 | 4 | 8) {
        return Err(Error::NotSupported {
            detail: format!("fill of {unit_bytes}-byte units (1, 2, 4 or 8 only)"),
        });
    }
    stream.check_device("dst", dst_buf.device())?;
    check_in_bounds("dst", dst_buf, dst_layout, unit_bytes)?;
    let d0 = dst_buf.device_address();
    let last = submit_runs(stream, dst_layout, dst_layout, |d, _, len| {
        let mut cmd = abi::KnpuCommand::sized();
        cmd.type_ = abi::KNPU_COMMAND_FILL;
        cmd.u.fill = abi::KnpuFillCommand {
            dst: d0 + (d * unit_bytes) as u64,
            size: (len * unit_bytes) as u64,
            pattern,
            pattern_size: unit_bytes as u32,
        };
        cmd
    })?;
    if let Some(v) = last {
        dst_buf.note_use(stream, v);
    }
    Ok(())
}

/// The DLPack 1.x ABI (`dlpack.h`) and helpers to export and import tensors through it.
///
/// Device tensors export as `kDLExtDev` with the knpu device ordinal as `device_id`; their
/// `data` field holds the 64-bit device address of the storage (not a host pointer) and
/// `byte_offset` the offset of the first element.
pub mod dlpack {
    use super::{DataType, Layout};
    use crate::error::{Error, Result};
    use std::any::Any;
    use std::os::raw::c_void;

    /// The DLPack major version these structs follow.
    pub const MAJOR_VERSION: u32 = 1;
    /// The DLPack minor version these structs follow.
    pub const MINOR_VERSION: u32 = 1;
    /// `DLPACK_FLAG_BITMASK_READ_ONLY`.
    pub const FLAG_READ_ONLY: u64 = 1 << 0;
    /// `DLPACK_FLAG_BITMASK_IS_COPIED`.
    pub const FLAG_IS_COPIED: u64 = 1 << 1;

    /// `DLDeviceType` values.
    pub mod device_type {
        /// Host memory.
        pub const CPU: i32 = 1;
        /// CUDA device memory.
        pub const CUDA: i32 = 2;
        /// Devices DLPack does not name; knpu's devices.
        pub const EXT_DEV: i32 = 12;
    }

    /// `DLDataTypeCode` values.
    pub mod code {
        /// Signed integer.
        pub const INT: u8 = 0;
        /// Unsigned integer.
        pub const UINT: u8 = 1;
        /// IEEE float.
        pub const FLOAT: u8 = 2;
        /// bfloat16.
        pub const BFLOAT: u8 = 4;
        /// Boolean.
        pub const BOOL: u8 = 6;
        /// OCP FP8 E4M3FN.
        pub const FLOAT8_E4M3FN: u8 = 10;
        /// FP8 E5M2.
        pub const FLOAT8_E5M2: u8 = 12;
    }

    /// `DLPackVersion`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct DLPackVersion {
        /// Major version.
        pub major: u32,
        /// Minor version.
        pub minor: u32,
    }

    /// `DLDevice`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct DLDevice {
        /// A `DLDeviceType` value.
        pub device_type: i32,
        /// The device index.
        pub device_id: i32,
    }

    /// `DLDataType`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct DLDataType {
        /// A `DLDataTypeCode` value.
        pub code: u8,
        /// Bits per lane.
        pub bits: u8,
        /// Lanes per element (1 for scalars).
        pub lanes: u16,
    }

    /// `DLTensor`.
    #[repr(C)]
    #[derive(Debug)]
    pub struct DLTensor {
        /// The base address (a device address for `kDLExtDev`).
        pub data: *mut c_void,
        /// Where the data lives.
        pub device: DLDevice,
        /// Number of dimensions.
        pub ndim: i32,
        /// Element type.
        pub dtype: DLDataType,
        /// `ndim` sizes.
        pub shape: *mut i64,
        /// `ndim` strides in elements, or null for row-major contiguous.
        pub strides: *mut i64,
        /// Bytes from `data` to the first element.
        pub byte_offset: u64,
    }

    /// `DLManagedTensor` (the unversioned form, capsule name `"dltensor"`).
    #[repr(C)]
    #[derive(Debug)]
    pub struct DLManagedTensor {
        /// The tensor.
        pub dl_tensor: DLTensor,
        /// The producer's context.
        pub manager_ctx: *mut c_void,
        /// Called by the consumer once, when done.
        pub deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
    }

    /// `DLManagedTensorVersioned` (DLPack 1.x, capsule name `"dltensor_versioned"`).
    #[repr(C)]
    #[derive(Debug)]
    pub struct DLManagedTensorVersioned {
        /// The producer's DLPack version.
        pub version: DLPackVersion,
        /// The producer's context.
        pub manager_ctx: *mut c_void,
        /// Called by the consumer once, when done.
        pub deleter: Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned)>,
        /// `FLAG_*` bits.
        pub flags: u64,
        /// The tensor.
        pub dl_tensor: DLTensor,
    }

    /// What an export owns besides the managed struct: shape and strides arrays and the
    /// producer's keep-alive.
    struct Context {
        shape: Vec<i64>,
        strides: Vec<i64>,
        owner: Box<dyn Any + Send>,
    }

    /// The box knpu leaks behind an exported managed tensor `M` (found again through its
    /// `manager_ctx`).
    struct Exported<M> {
        managed: M,
        ctx: Context,
    }

    /// The versioned form's box.
    type Versioned = Exported<DLManagedTensorVersioned>;
    /// The unversioned form's box.
    type Unversioned = Exported<DLManagedTensor>;

    /// A description of a tensor to export: what [`export_versioned`] and
    /// [`export_unversioned`] need.
    pub struct Export {
        /// Element type (not a block type).
        pub dtype: DataType,
        /// Layout in elements.
        pub layout: Layout,
        /// The device.
        pub device: DLDevice,
        /// The base address (`data`); the layout's offset becomes `byte_offset`.
        pub data: *mut c_void,
        /// Kept alive until the consumer calls the deleter.
        pub owner: Box<dyn Any + Send>,
        /// `FLAG_*` bits (versioned form only).
        pub flags: u64,
    }

    fn context(e: &Export) -> Result<(DLDataType, Vec<i64>, Vec<i64>)> {
        let dt = e.dtype.to_dlpack().ok_or_else(|| Error::NotSupported {
            detail: format!("DLPack cannot describe {} blocks", e.dtype),
        })?;
        let to_i64 = |v: usize| {
            i64::try_from(v).map_err(|_| Error::invalid(format!("{v} does not fit DLPack's i64")))
        };
        let shape = e
            .layout
            .shape()
            .iter()
            .map(|&d| to_i64(d))
            .collect::<Result<Vec<_>>>()?;
        let strides = e.layout.strides().iter().map(|&s| s as i64).collect();
        Ok((dt, shape, strides))
    }

    fn tensor(
        (data, device, byte_offset): (*mut c_void, DLDevice, u64),
        dt: DLDataType,
        ctx: &mut Context,
    ) -> DLTensor {
        DLTensor {
            data,
            device,
            ndim: ctx.shape.len() as i32,
            dtype: dt,
            shape: ctx.shape.as_mut_ptr(),
            strides: ctx.strides.as_mut_ptr(),
            byte_offset,
        }
    }

    fn place(e: &Export) -> (*mut c_void, DLDevice, u64) {
        (
            e.data,
            e.device,
            (e.layout.offset() * e.dtype.unit_bytes()) as u64,
        )
    }

    unsafe extern "C" fn delete_versioned(m: *mut DLManagedTensorVersioned) {
        if !m.is_null() {
            // SAFETY: `m` is the first field of a `Versioned` leaked by `export_versioned`
            // (repr(C) layout is not needed: the box is recovered through `manager_ctx`), and
            // the consumer calls the deleter once.
            let _ = unsafe { Box::from_raw((*m).manager_ctx as *mut Versioned) };
        }
    }

    unsafe extern "C" fn delete_unversioned(m: *mut DLManagedTensor) {
        if !m.is_null() {
            // SAFETY: as in `delete_versioned`, for `export_unversioned`.
            let _ = unsafe { Box::from_raw((*m).manager_ctx as *mut Unversioned) };
        }
    }

    /// Exports a tensor as a `DLManagedTensorVersioned` the consumer must release with its
    /// deleter. Fails for block types and sizes DLPack cannot hold.
    pub fn export_versioned(e: Export) -> Result<*mut DLManagedTensorVersioned> {
        let (dt, shape, strides) = context(&e)?;
        let at = place(&e);
        let mut b = Box::new(Versioned {
            managed: DLManagedTensorVersioned {
                version: DLPackVersion {
                    major: MAJOR_VERSION,
                    minor: MINOR_VERSION,
                },
                manager_ctx: std::ptr::null_mut(),
                deleter: Some(delete_versioned),
                flags: e.flags,
                dl_tensor: DLTensor {
                    data: std::ptr::null_mut(),
                    device: e.device,
                    ndim: 0,
                    dtype: dt,
                    shape: std::ptr::null_mut(),
                    strides: std::ptr::null_mut(),
                    byte_offset: 0,
                },
            },
            ctx: Context {
                shape,
                strides,
                owner: e.owner,
            },
        });
        b.managed.dl_tensor = tensor(at, dt, &mut b.ctx);
        let raw = Box::into_raw(b);
        // SAFETY: `raw` is a live, uniquely owned box.
        unsafe { (*raw).managed.manager_ctx = raw as *mut c_void };
        // SAFETY: as above; `managed` is a field of the leaked box.
        Ok(unsafe { std::ptr::addr_of_mut!((*raw).managed) })
    }

    /// Exports a tensor as an unversioned `DLManagedTensor` (for consumers that predate
    /// DLPack 1.0); see [`export_versioned`].
    pub fn export_unversioned(e: Export) -> Result<*mut DLManagedTensor> {
        let (dt, shape, strides) = context(&e)?;
        let at = place(&e);
        let mut ctx = Context {
            shape,
            strides,
            owner: e.owner,
        };
        let t = tensor(at, dt, &mut ctx);
        let raw = Box::into_raw(Box::new(Unversioned {
            managed: DLManagedTensor {
                dl_tensor: t,
                manager_ctx: std::ptr::null_mut(),
                deleter: Some(delete_unversioned),
            },
            ctx,
        }));
        // SAFETY: `raw` is a live, uniquely owned box.
        unsafe { (*raw).managed.manager_ctx = raw as *mut c_void };
        // SAFETY: as above.
        Ok(unsafe { std::ptr::addr_of_mut!((*raw).managed) })
    }

    /// The keep-alive of a tensor knpu exported with [`export_versioned`], or `None` when
    /// another producer made it.
    ///
    /// # Safety
    /// - `m` must point to a live `DLManagedTensorVersioned` whose deleter was not called.
    pub unsafe fn knpu_owner_versioned<'a>(
        m: *const DLManagedTensorVersioned,
    ) -> Option<&'a (dyn Any + Send)> {
        // SAFETY: the caller's promise, passed on.
        unsafe { knpu_owner(m) }
    }

    /// As [`knpu_owner_versioned`] for the unversioned form.
    ///
    /// # Safety
    /// - `m` must point to a live `DLManagedTensor` whose deleter was not called.
    pub unsafe fn knpu_owner_unversioned<'a>(
        m: *const DLManagedTensor,
    ) -> Option<&'a (dyn Any + Send)> {
        // SAFETY: the caller's promise, passed on.
        unsafe { knpu_owner(m) }
    }

    /// A managed tensor form knpu exports, with the deleter knpu gives it.
    trait Managed: Sized {
        /// knpu's deleter of this form.
        const DELETER: unsafe extern "C" fn(*mut Self);
        /// The deleter and the producer's context the tensor carries.
        fn parts(&self) -> (Option<unsafe extern "C" fn(*mut Self)>, *mut c_void);
    }

    /// Implements [`Managed`] for form `$m`, whose knpu deleter is `$deleter` (the two forms
    /// hold these fields alike, under the same names).
    macro_rules! managed {
        ($m:ty, $deleter:ident) => {
            impl Managed for $m {
                const DELETER: unsafe extern "C" fn(*mut $m) = $deleter;
                fn parts(&self) -> (Option<unsafe extern "C" fn(*mut $m)>, *mut c_void) {
                    (self.deleter, self.manager_ctx)
                }
            }
        };
    }
    managed!(DLManagedTensorVersioned, delete_versioned);
    managed!(DLManagedTensor, delete_unversioned);

    /// The keep-alive behind `m` when knpu's deleter is its deleter (then `manager_ctx` is
    /// knpu's box [`Exported`]), else `None`.
    ///
    /// # Safety
    /// - `m` must point to a live managed tensor whose deleter was not called.
    unsafe fn knpu_owner<'a, M: Managed>(m: *const M) -> Option<&'a (dyn Any + Send)> {
        // SAFETY: the caller guarantees `m` is live.
        let (deleter, ctx) = unsafe { &*m }.parts();
        if !deleter.is_some_and(|d| std::ptr::fn_addr_eq(d, M::DELETER)) {
            return None;
        }
        // SAFETY: our deleter means `manager_ctx` is our box, alive until it is called.
        Some(unsafe { &*(*(ctx as *const Exported<M>)).ctx.owner })
    }

    /// The dtype and layout (in elements) a `DLTensor` describes, and the bytes to add to
    /// `data` for the base the layout counts from: 0, or less when negative strides reach
    /// before `data + byte_offset` (the layout's offset then counts from that lower base).
    /// Fails for dtypes knpu does not hold, lanes other than 1, negative sizes and an offset
    /// that is not a whole number of elements.
    ///
    /// # Safety
    /// - `t.shape` must point to `t.ndim` values, and `t.strides` be null or point to
    ///   `t.ndim` values.
    pub unsafe fn describe(t: &DLTensor) -> Result<(DataType, Layout, i64)> {
        let dtype = DataType::from_dlpack(t.dtype)?;
        let ndim = usize::try_from(t.ndim)
            .map_err(|_| Error::invalid(format!("DLPack ndim {} is negative", t.ndim)))?;
        if ndim > 0 && t.shape.is_null() {
            return Err(Error::invalid("DLPack tensor has no shape array"));
        }
        let read = |p: *const i64| -> &[i64] {
            if ndim == 0 || p.is_null() {
                &[]
            } else {
                // SAFETY: the caller guarantees `ndim` values behind `p`.
                unsafe { std::slice::from_raw_parts(p, ndim) }
            }
        };
        let shape = read(t.shape)
            .iter()
            .map(|&d| {
                usize::try_from(d)
                    .map_err(|_| Error::invalid(format!("DLPack dimension {d} is negative")))
            })
            .collect::<Result<Vec<_>>>()?;
        let unit = dtype.unit_bytes() as u64;
        if !t.byte_offset.is_multiple_of(unit) {
            return Err(Error::invalid(format!(
                "DLPack byte_offset {} is not a multiple of the {unit}-byte element",
                t.byte_offset
            )));
        }
        let strides: Vec<isize> = if t.strides.is_null() {
            Layout::contiguous_strides(&shape)
        } else {
            read(t.strides).iter().map(|&s| s as isize).collect()
        };
        let offset = (t.byte_offset / unit) as i128;
        let empty = shape.contains(&0);
        let reach: i128 = shape
            .iter()
            .zip(&strides)
            .map(|(&d, &s)| ((d as i128 - 1) * s as i128).min(0))
            .sum();
        let start = if empty { offset } else { offset + reach };
        let (offset, shift) = if start >= 0 {
            (offset, 0)
        } else {
            (offset - start, start * unit as i128)
        };
        let offset =
            usize::try_from(offset).map_err(|_| Error::invalid("DLPack byte_offset overflows"))?;
        let shift = i64::try_from(shift).map_err(|_| Error::invalid("DLPack strides overflow"))?;
        Ok((dtype, Layout::new(shape, strides, offset)?, shift))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(shape: &[usize]) -> Layout {
        Layout::contiguous(shape).unwrap()
    }

    #[test]
    fn attn_bhsd_reads_strided_views_in_place() {
        let a = l(&[2, 3, 5, 4]).attn_bhsd().unwrap();
        assert_eq!((a.batch_stride, a.head_stride, a.seq_stride), (60, 20, 4));
        // [batch, seq, heads, head_dim] storage transposed to bhsd order.
        let t = l(&[2, 5, 3, 4])
            .transpose(1, 2)
            .unwrap()
            .attn_bhsd()
            .unwrap();
        assert_eq!((t.heads, t.seq, t.head_stride, t.seq_stride), (3, 5, 4, 12));
        assert!(l(&[2, 3, 4, 5])
            .transpose(2, 3)
            .unwrap()
            .attn_bhsd()
            .is_none());
        assert!(l(&[3, 4, 5]).attn_bhsd().is_none());
    }

    #[test]
    fn rows_cols_reads_the_last_dimension() {
        assert_eq!(rows_cols(&[2, 3, 5]).unwrap(), (6, 5));
        assert_eq!(rows_cols(&[7]).unwrap(), (1, 7));
        assert_eq!(rows_cols(&[0, 4]).unwrap(), (0, 4));
        assert!(rows_cols(&[]).is_err());
    }

    #[test]
    fn broadcast_shapes_follow_numpy() {
        assert_eq!(
            broadcast_shapes(&[2, 1, 3], &[4, 1]).unwrap(),
            vec![2, 4, 3]
        );
        assert_eq!(broadcast_shapes(&[], &[5]).unwrap(), vec![5]);
        assert_eq!(broadcast_shapes(&[0, 1], &[1, 7]).unwrap(), vec![0, 7]);
        assert!(broadcast_shapes(&[2, 3], &[4, 3]).is_err());
    }

    #[test]
    fn matmul_shapes_follow_numpy() {
        let s = matmul_shapes(&[2, 1, 3, 4], &[5, 4, 6]).unwrap();
        assert_eq!(
            (s.out, s.batch, s.m, s.n, s.k),
            (vec![2, 5, 3, 6], vec![2, 5], 3, 6, 4)
        );
        let s = matmul_shapes(&[4], &[3, 4, 6]).unwrap();
        assert_eq!((s.out.clone(), s.m, s.a_vector), (vec![3, 6], 1, true));
        let s = matmul_shapes(&[3, 4], &[4]).unwrap();
        assert_eq!((s.out.clone(), s.n, s.b_vector), (vec![3], 1, true));
        assert_eq!(matmul_shapes(&[4], &[4]).unwrap().out, Vec::<usize>::new());
        assert!(matmul_shapes(&[3, 4], &[5, 6]).is_err());
        assert!(matmul_shapes(&[], &[5]).is_err());
        assert!(matmul_shapes(&[2, 3, 4], &[3, 4, 5]).is_err());
    }

    #[test]
    fn matrix_batch_reads_rows_columns_and_flat_batches() {
        let m = l(&[2, 3, 4]).matrix_batch().unwrap();
        assert_eq!(
            (m.ld, m.transposed, m.batch, m.batch_stride),
            (4, false, 2, 12)
        );
        let t = l(&[2, 3, 4])
            .transpose(-1, -2)
            .unwrap()
            .matrix_batch()
            .unwrap();
        assert_eq!(
            (t.ld, t.transposed, t.batch, t.batch_stride),
            (4, true, 2, 12)
        );
        let b = l(&[3, 4])
            .broadcast_to(&[5, 3, 4])
            .unwrap()
            .matrix_batch()
            .unwrap();
        assert_eq!((b.batch, b.batch_stride), (5, 0));
        // Batch dimensions swapped do not flatten to one stride.
        assert!(l(&[2, 3, 4, 5])
            .permute(&[1, 0, 2, 3])
            .unwrap()
            .matrix_batch()
            .is_none());
        // A repeated row is no matrix a GEMM reads.
        assert!(l(&[1, 4])
            .broadcast_to(&[3, 4])
            .unwrap()
            .matrix_batch()
            .is_none());
        // A sliced row keeps its row stride as ld.
        let s = l(&[4, 8])
            .slice(1, Some(0), Some(5), 1)
            .unwrap()
            .matrix_batch()
            .unwrap();
        assert_eq!((s.ld, s.transposed), (8, false));
    }

    #[test]
    fn dtypes_round_trip_names_and_dlpack() {
        for d in DataType::ALL {
            assert_eq!(DataType::from_name(d.name()), Some(d));
            if let Some(t) = d.to_dlpack() {
                assert_eq!(DataType::from_dlpack(t).unwrap(), d);
                assert_eq!(t.bits as usize, d.unit_bytes() * 8);
            } else {
                assert!(d.is_block());
            }
        }
        assert_eq!(DataType::Q4K.unit_bytes(), 144);
        assert_eq!(DataType::Q4_0.block_elems(), 32);
        assert!(DataType::from_dlpack(dlpack::DLDataType {
            code: 5,
            bits: 64,
            lanes: 1
        })
        .is_err());
    }

    #[test]
    fn view_follows_strides_or_refuses() {
        let a = l(&[2, 3, 4]);
        let v = a.view(&[6, -1]).unwrap();
        assert_eq!((v.shape(), v.strides()), (&[6, 4][..], &[4, 1][..]));
        let t = a.transpose(0, 2).unwrap();
        assert!(!t.is_contiguous());
        assert!(t.view(&[24]).is_err());
        // Splitting a transposed dimension is expressible.
        let s = t.view(&[2, 2, 3, 2]).unwrap();
        assert_eq!(s.strides(), &[2, 1, 4, 12]);
        assert!(a.view(&[5, -1]).is_err());
        assert!(a.view(&[-1, -1]).is_err());
        assert_eq!(l(&[]).view(&[1, 1]).unwrap().shape(), &[1, 1]);
    }

    #[test]
    fn slices_follow_python() {
        let a = l(&[10]);
        let s = a.slice(0, Some(1), Some(8), 3).unwrap();
        assert_eq!(
            (s.shape(), s.strides(), s.offset()),
            (&[3][..], &[3][..], 1)
        );
        let r = a.slice(0, None, None, -1).unwrap();
        assert_eq!(
            (r.shape(), r.strides(), r.offset()),
            (&[10][..], &[-1][..], 9)
        );
        assert_eq!(r.span().unwrap(), 0..10);
        let e = a.slice(0, Some(5), Some(2), 1).unwrap();
        assert_eq!(e.numel(), 0);
        let c = a.slice(0, Some(-3), Some(100), 1).unwrap();
        assert_eq!((c.shape()[0], c.offset()), (3, 7));
        assert!(a.slice(0, None, None, 0).is_err());
        assert!(a.select(0, 10).is_err());
        assert_eq!(a.select(0, -1).unwrap().offset(), 9);
    }

    #[test]
    fn permute_checks_dims() {
        let a = l(&[2, 3, 4]);
        let p = a.permute(&[2, 0, 1]).unwrap();
        assert_eq!((p.shape(), p.strides()), (&[4, 2, 3][..], &[1, 12, 4][..]));
        assert!(a.permute(&[0, 0, 1]).is_err());
        assert!(a.permute(&[0, 1]).is_err());
        assert!(a.permute(&[0, 1, 3]).is_err());
    }

    #[test]
    fn runs_merge_contiguous_dimensions() {
        let a = l(&[4, 5]);
        let mut runs = Vec::new();
        Layout::for_each_run(&a, &a, |d, s, n| {
            runs.push((d, s, n));
            Ok(())
        })
        .unwrap();
        assert_eq!(runs, vec![(0, 0, 20)]);
        let t = l(&[5, 4]).transpose(0, 1).unwrap();
        runs.clear();
        Layout::for_each_run(&a, &t, |d, s, n| {
            runs.push((d, s, n));
            Ok(())
        })
        .unwrap();
        assert_eq!(runs.len(), 20);
        assert_eq!(runs[1], (1, 4, 1));
        assert_eq!(runs[5], (5, 1, 1));
    }

    #[test]
    fn block_types_count_blocks() {
        let q = Layout::from_values(&[2, 64], DataType::Q4_0).unwrap();
        assert_eq!(q.shape(), &[2, 2]);
        assert_eq!(q.values_shape(DataType::Q4_0), vec![2, 64]);
        assert!(Layout::from_values(&[2, 40], DataType::Q4_0).is_err());
        assert!(Layout::contiguous(&[usize::MAX, 2]).is_err());
    }

    #[test]
    fn broadcast_repeats_size_one_dimensions() {
        let b = l(&[3, 1]).broadcast_to(&[2, 3, 4]).unwrap();
        assert_eq!(b.strides(), &[0, 1, 0]);
        assert!(l(&[3, 2]).broadcast_to(&[3, 4]).is_err());
        assert!(l(&[2, 3]).broadcast_to(&[3]).is_err());
    }

    #[test]
    fn dlpack_export_round_trips_and_recognises_its_own() {
        let layout = l(&[2, 3]).transpose(0, 1).unwrap();
        let m = dlpack::export_versioned(dlpack::Export {
            dtype: DataType::F16,
            layout: layout.clone(),
            device: dlpack::DLDevice {
                device_type: dlpack::device_type::EXT_DEV,
                device_id: 0,
            },
            data: 0x1000 as *mut std::os::raw::c_void,
            owner: Box::new(42u32),
            flags: 0,
        })
        .unwrap();
        // SAFETY: `m` is live until its deleter runs below.
        unsafe {
            let (dt, got, shift) = dlpack::describe(&(*m).dl_tensor).unwrap();
            assert_eq!((dt, got, shift), (DataType::F16, layout, 0));
            let owner = dlpack::knpu_owner_versioned(m).unwrap();
            assert_eq!(owner.downcast_ref::<u32>(), Some(&42));
            ((*m).deleter.unwrap())(m);
        }
        let q = dlpack::export_unversioned(dlpack::Export {
            dtype: DataType::Q4_0,
            layout: l(&[1]),
            device: dlpack::DLDevice {
                device_type: dlpack::device_type::EXT_DEV,
                device_id: 0,
            },
            data: std::ptr::null_mut(),
            owner: Box::new(()),
            flags: 0,
        });
        assert!(q.is_err());
    }
}
