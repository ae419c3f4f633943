//! `knpu.Tensor`: a dtype and a strided layout over shared device storage.
//!
//! Views (`reshape`, `view`, `transpose`, `permute`, `.T`, slicing) share storage and never
//! copy; `.contiguous()`, `.numpy()` of a view and `copy_` between layouts move data with
//! device copies. Shapes are in values; for the quantised block types the layout counts
//! blocks and the last dimension must stay whole blocks.

use crate::device::{current_stream, resolve, Device};
use crate::dtype::{self, DType};
use crate::errors::{invalid, not_supported, to_py, wrong_dtype, IntoPyResult};
use crate::ops::Arith;
use crate::storage::{Buf, Storage};
use crate::with_buf;
use knpu::tensor::{copy_strided, fill_strided};
use knpu::{DataType, Layout};
use pyo3::exceptions::{PyIndexError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyEllipsis, PySlice, PyTuple};
use std::sync::Arc;

/// A tensor in device memory.
#[pyclass(module = "knpu._knpu", frozen)]
pub struct Tensor {
    pub storage: Arc<Storage>,
    pub layout: Layout,
    pub dtype: DataType,
}

impl Tensor {
    /// A new tensor over fresh storage, contiguous, with `shape` in values.
    pub fn empty_on(stream: &knpu::Stream, shape: &[usize], dtype: DataType) -> PyResult<Tensor> {
        Ok(crate::ops::Fresh::new(stream, shape, dtype)?.finish())
    }

    /// A view of the same storage with another layout.
    pub fn with_layout(&self, layout: Layout) -> Tensor {
        Tensor {
            storage: self.storage.clone(),
            layout,
            dtype: self.dtype,
        }
    }

    /// The runtime device of the storage.
    pub fn rt_device(&self) -> &knpu::Device {
        self.storage.device()
    }

    /// This thread's current stream on the tensor's device.
    pub fn stream(&self) -> PyResult<knpu::Stream> {
        current_stream(self.rt_device())
    }

    /// Shape in values.
    pub fn values_shape(&self) -> Vec<usize> {
        self.layout.values_shape(self.dtype)
    }

    /// A contiguous copy in fresh storage, queued on the current stream.
    pub fn copied(&self) -> PyResult<Tensor> {
        let stream = self.stream()?;
        let out = Tensor::empty_on(&stream, &self.values_shape(), self.dtype)?;
        out.copy_from(&stream, self)?;
        Ok(out)
    }

    /// This tensor if contiguous, else a contiguous copy.
    pub fn contiguous_tensor(&self) -> PyResult<Tensor> {
        if self.layout.is_contiguous() {
            Ok(self.with_layout(self.layout.clone()))
        } else {
            self.copied()
        }
    }

    /// Queues a copy of `src` (same dtype, broadcastable shape) into this tensor's units.
    pub fn copy_from(&self, stream: &knpu::Stream, src: &Tensor) -> PyResult<()> {
        if src.dtype != self.dtype {
            return Err(wrong_dtype("src", self.dtype.name(), src.dtype.name()));
        }
        if src.rt_device() != self.rt_device() {
            return Err(to_py(knpu::Error::DeviceMismatch {
                operand: "src",
                expected: self.rt_device().ordinal(),
                actual: src.rt_device().ordinal(),
            }));
        }
        let src_layout = src.layout.broadcast_to(self.layout.shape()).py()?;
        // Copies run as ordered runs, so a source that overlaps the destination is staged.
        if Arc::ptr_eq(&self.storage, &src.storage) {
            let (a, b) = (self.layout.span().py()?, src_layout.span().py()?);
            if a.start < b.end && b.start < a.end {
                let staged = src.copied()?;
                let staged_layout = staged.layout.broadcast_to(self.layout.shape()).py()?;
                return staged.copy_runs(stream, self, &staged_layout);
            }
        }
        src.copy_runs(stream, self, &src_layout)
    }

    fn copy_runs(&self, stream: &knpu::Stream, dst: &Tensor, src_layout: &Layout) -> PyResult<()> {
        let unit = self.dtype.unit_bytes();
        with_buf!(&dst.storage.buf, d => with_buf!(&self.storage.buf, s =>
            copy_strided(stream, d, &dst.layout, s, src_layout, unit)))
        .py()
    }

    /// A copy in host memory as a new numpy array (waits for the copy).
    pub fn numpy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.numpy_py(py, None, true)
    }

    /// The host shape of [`Self::numpy`]: values, or for block types units with the last
    /// dimension in bytes.
    fn host_shape(&self) -> Vec<usize> {
        if !self.dtype.is_block() {
            return self.values_shape();
        }
        let mut shape = self.layout.shape().to_vec();
        if let Some(last) = shape.last_mut() {
            *last *= self.dtype.unit_bytes();
        }
        shape
    }

    /// A new, uninitialised numpy array of the host shape and dtype.
    fn host_array<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let np = py.import("numpy")?;
        np.call_method1(
            "empty",
            (
                PyTuple::new(py, self.host_shape())?,
                dtype::numpy_name(self.dtype),
            ),
        )
    }

    /// Checks that `out` can receive [`Self::numpy`]'s copy.
    fn check_host_out(&self, out: &Bound<'_, PyAny>) -> PyResult<()> {
        let np = out.py().import("numpy")?;
        if !out.is_instance(&np.getattr("ndarray")?)? {
            return Err(PyTypeError::new_err(format!(
                "out must be a numpy array, got {}",
                out.get_type().name()?
            )));
        }
        let want = np.call_method1("dtype", (dtype::numpy_name(self.dtype),))?;
        let got = out.getattr("dtype")?;
        if !got.eq(&want)? {
            return Err(PyTypeError::new_err(format!(
                "out has dtype {got}, a {} tensor copies into {want}",
                self.dtype
            )));
        }
        let shape: Vec<usize> = out.getattr("shape")?.extract()?;
        if shape != self.host_shape() {
            return Err(invalid(format!(
                "out has shape {shape:?}, the tensor's host shape is {:?}",
                self.host_shape()
            )));
        }
        let flags = out.getattr("flags")?;
        if !flags.getattr("c_contiguous")?.extract::<bool>()?
            || !flags.getattr("writeable")?.extract::<bool>()?
        {
            return Err(invalid("out must be a C-contiguous, writeable array"));
        }
        Ok(())
    }

    /// Copies the values into `len` bytes of host memory at `ptr`: waiting for the copy
    /// (with the GIL released) when `keep` is `None`; otherwise queued, with `keep` (the
    /// array that owns the memory) held by the stream until the copy is done.
    fn copy_to_host(
        &self,
        py: Python<'_>,
        ptr: usize,
        len: usize,
        keep: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let t = self.contiguous_tensor()?;
        let stream = t.stream()?;
        let (off, n) = (t.layout.offset(), t.layout.numel());
        let unit = t.dtype.unit_bytes();
        let storage = t.storage.clone();
        let blocking = keep.is_none();
        let copy = move || {
            with_buf!(&storage.buf, b => {
                // Raw buffers count bytes; typed ones count units.
                let k = unit / elem_bytes(b);
                let src = b.slice(off * k..(off + n) * k)?;
                let dst = host_slice(ptr, len, b)?;
                match keep {
                    None => stream.memcpy_dtoh(dst, &src),
                    // SAFETY: `dst` lies in the array `keep` holds, which the stream keeps
                    // alive until the copy is done.
                    Some(arr) => unsafe {
                        stream.memcpy_dtoh_async_keep(dst, &src, Box::new(arr))
                    }
                    .map(|_| ()),
                }
            })
        };
        if blocking {
            py.detach(copy).py()
        } else {
            copy().py()
        }
    }

    fn fill_value(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let pattern = encode(self.dtype, value)?;
        let stream = self.stream()?;
        let unit = self.dtype.unit_bytes();
        with_buf!(&self.storage.buf, b => fill_strided(&stream, b, &self.layout, unit, pattern))
            .py()
    }

    /// Shape in units from a user shape in values (one entry may be -1).
    fn units_shape(&self, shape: &[isize]) -> PyResult<Vec<isize>> {
        let be = self.dtype.block_elems();
        if be == 1 {
            return Ok(shape.to_vec());
        }
        let values: usize = self.values_shape().iter().product();
        let resolved = Layout::infer_shape(values, shape).py()?;
        match resolved.split_last() {
            Some((&last, lead)) if last % be == 0 => {
                let mut s: Vec<isize> = lead.iter().map(|&d| d as isize).collect();
                s.push((last / be) as isize);
                Ok(s)
            }
            _ => Err(to_py(knpu::Error::Shape {
                operand: "shape",
                expected: format!("a last dimension of whole {} blocks of {be}", self.dtype),
                actual: format!("{resolved:?}"),
            })),
        }
    }

    fn check_block_last_dim_kept(&self, dims: &[isize]) -> PyResult<()> {
        let n = self.layout.ndim() as isize;
        if self.dtype.is_block()
            && dims.last().map(|&d| if d < 0 { d + n } else { d }) != Some(n - 1)
        {
            return Err(not_supported(format!(
                "moving the last dimension of a {} tensor (its blocks)",
                self.dtype
            )));
        }
        Ok(())
    }
}

fn elem_bytes<T>(_: &knpu::DeviceBuffer<T>) -> usize {
    std::mem::size_of::<T>()
}

/// The data address of a numpy array.
fn array_address(arr: &Bound<'_, PyAny>) -> PyResult<usize> {
    arr.getattr("__array_interface__")?
        .get_item("data")?
        .get_item(0)?
        .extract()
}

/// A host slice of `T` over `len` bytes at `ptr`, for one device copy.
fn host_slice<'a, T: bytemuck::Pod>(
    ptr: usize,
    len: usize,
    _like: &knpu::DeviceBuffer<T>,
) -> knpu::Result<&'a mut [T]> {
    let size = std::mem::size_of::<T>();
    if len == 0 {
        return Ok(&mut []);
    }
    if !ptr.is_multiple_of(std::mem::align_of::<T>()) || !len.is_multiple_of(size) {
        return Err(knpu::Error::InvalidValue {
            detail: format!("host memory at {ptr:#x} is not aligned for {size}-byte elements"),
        });
    }
    // SAFETY: the caller keeps the host array alive and unshared for the copy (by waiting
    // for it, or through the stream's keep-alive); the pointer is aligned and covers `len`
    // bytes.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr as *mut T, len / size) })
}

/// The fill pattern of `value` as one unit of `dtype`.
pub fn encode(dtype: DataType, value: &Bound<'_, PyAny>) -> PyResult<u64> {
    let int = |lo: i128, hi: i128| -> PyResult<u64> {
        let v: i128 = value
            .extract()
            .map_err(|_| PyTypeError::new_err(format!("a {dtype} tensor is filled with an int")))?;
        if v < lo || v > hi {
            return Err(invalid(format!("{v} is out of range for {dtype}")));
        }
        Ok(v as i64 as u64)
    };
    let float = || -> PyResult<f64> {
        value
            .extract::<f64>()
            .map_err(|_| PyTypeError::new_err(format!("a {dtype} tensor is filled with a number")))
    };
    Ok(match dtype {
        DataType::F32 => (float()? as f32).to_bits() as u64,
        DataType::F16 => half::f16::from_f64(float()?).to_bits() as u64,
        DataType::BF16 => half::bf16::from_f64(float()?).to_bits() as u64,
        DataType::F64 => float()?.to_bits(),
        DataType::I8 => int(i8::MIN as i128, i8::MAX as i128)? & 0xff,
        DataType::U8 => int(0, u8::MAX as i128)?,
        DataType::I32 => int(i32::MIN as i128, i32::MAX as i128)? & 0xffff_ffff,
        DataType::U32 => int(0, u32::MAX as i128)?,
        DataType::I64 => int(i64::MIN as i128, i64::MAX as i128)?,
        DataType::F8E4M3 | DataType::F8E5M2 if float()? == 0.0 => 0,
        other => {
            return Err(not_supported(format!(
                "filling a {other} tensor with a value (zero fills work; upload other bits \
                 with knpu.asarray)"
            )))
        }
    })
}

/// Parses a shape given as ints or as one sequence of ints.
pub fn parse_shape(args: &Bound<'_, PyTuple>) -> PyResult<Vec<isize>> {
    let seq = if args.len() == 1 && !args.get_item(0)?.is_instance_of::<pyo3::types::PyInt>() {
        args.get_item(0)?
    } else {
        args.clone().into_any()
    };
    seq.try_iter()?
        .map(|d| {
            let d = d?;
            if !d.is_instance_of::<pyo3::types::PyInt>() {
                return Err(PyTypeError::new_err("shape entries must be ints"));
            }
            d.extract::<isize>()
        })
        .collect()
}

/// A shape of sizes, refusing negatives.
pub fn sizes(shape: &[isize]) -> PyResult<Vec<usize>> {
    shape
        .iter()
        .map(|&d| {
            usize::try_from(d)
                .map_err(|_| invalid(format!("negative dimension {d} in shape {shape:?}")))
        })
        .collect()
}

fn dims_arg(args: &Bound<'_, PyTuple>) -> PyResult<Vec<isize>> {
    parse_shape(args)
}

enum Index {
    Int(isize),
    Slice(Option<isize>, Option<isize>, isize),
    NewAxis,
    Ellipsis,
}

fn parse_index(key: &Bound<'_, PyAny>) -> PyResult<Vec<Index>> {
    let items: Vec<Bound<'_, PyAny>> = match key.cast::<PyTuple>() {
        Ok(t) => t.iter().collect(),
        Err(_) => vec![key.clone()],
    };
    items
        .into_iter()
        .map(|it| {
            if it.is_none() {
                Ok(Index::NewAxis)
            } else if it.is_instance_of::<PyEllipsis>() {
                Ok(Index::Ellipsis)
            } else if let Ok(s) = it.cast::<PySlice>() {
                let get = |name: &str| -> PyResult<Option<isize>> {
                    let v = s.getattr(name)?;
                    if v.is_none() {
                        Ok(None)
                    } else {
                        v.extract::<isize>()
                            .map(Some)
                            .map_err(|_| PyTypeError::new_err("slice bounds must be ints or None"))
                    }
                };
                Ok(Index::Slice(
                    get("start")?,
                    get("stop")?,
                    get("step")?.unwrap_or(1),
                ))
            } else if let Ok(i) = it.extract::<isize>() {
                Ok(Index::Int(i))
            } else {
                Err(PyTypeError::new_err(format!(
                    "knpu tensors take ints, slices, None and ... as indices, not {} \
                     (advanced indexing is not supported)",
                    it.get_type()
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                )))
            }
        })
        .collect()
}

#[pymethods]
impl Tensor {
    /// Shape in values.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.values_shape())
    }

    /// The element type.
    #[getter]
    fn dtype(&self, py: Python<'_>) -> PyResult<Py<DType>> {
        dtype::object(py, self.dtype)
    }

    /// The device the tensor lives on.
    #[getter]
    fn device(&self) -> Device {
        Device::wrap(self.storage.device().clone())
    }

    /// Strides in bytes, as numpy and CuPy give them (`stride()` gives elements).
    #[getter]
    fn strides<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let unit = self.dtype.unit_bytes() as isize;
        PyTuple::new(py, self.layout.strides().iter().map(|s| s * unit))
    }

    /// Strides in storage units (elements, or blocks), as PyTorch's `stride()`.
    #[pyo3(signature = (dim=None))]
    fn stride<'py>(&self, py: Python<'py>, dim: Option<isize>) -> PyResult<Bound<'py, PyAny>> {
        match dim {
            None => Ok(PyTuple::new(py, self.layout.strides())?.into_any()),
            Some(d) => {
                let n = self.layout.ndim() as isize;
                let i = if d < 0 { d + n } else { d };
                if i < 0 || i >= n {
                    return Err(PyIndexError::new_err(format!("dimension {d} out of range")));
                }
                Ok(self.layout.strides()[i as usize]
                    .into_pyobject(py)?
                    .into_any())
            }
        }
    }

    /// Bytes the tensor's units take.
    #[getter]
    fn nbytes(&self) -> usize {
        self.layout.numel() * self.dtype.unit_bytes()
    }

    /// Bytes per storage unit.
    #[getter]
    fn itemsize(&self) -> usize {
        self.dtype.unit_bytes()
    }

    /// Number of dimensions.
    #[getter]
    fn ndim(&self) -> usize {
        self.layout.ndim()
    }

    /// Number of values.
    #[getter]
    fn size(&self) -> usize {
        self.values_shape().iter().product()
    }

    /// Number of values.
    fn numel(&self) -> usize {
        self.size()
    }

    /// Whether the units are dense and row-major.
    fn is_contiguous(&self) -> bool {
        self.layout.is_contiguous()
    }

    /// The offset of the first unit in the storage, in units.
    fn storage_offset(&self) -> usize {
        self.layout.offset()
    }

    /// The device address of the first unit.
    fn data_ptr(&self) -> u64 {
        self.storage.address() + (self.layout.offset() * self.dtype.unit_bytes()) as u64
    }

    fn __len__(&self) -> PyResult<usize> {
        self.values_shape()
            .first()
            .copied()
            .ok_or_else(|| PyTypeError::new_err("len() of a 0-d tensor"))
    }

    fn __repr__(&self) -> String {
        let shape = self.values_shape();
        let shape = match shape.len() {
            1 => format!("({},)", shape[0]),
            _ => format!(
                "({})",
                shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        format!(
            "knpu.Tensor(shape={shape}, dtype=knpu.{}, device='knpu:{}')",
            self.dtype,
            self.storage.device().ordinal()
        )
    }

    /// Refuses implicit conversion, as PyTorch does for device tensors.
    #[pyo3(signature = (dtype=None, copy=None))]
    fn __array__(&self, dtype: Option<&Bound<'_, PyAny>>, copy: Option<bool>) -> PyResult<()> {
        let _ = (dtype, copy);
        Err(PyTypeError::new_err(
            "can't convert a knpu tensor in device memory to a numpy array implicitly; \
             call .numpy() to copy it to host memory first",
        ))
    }

    /// A copy in host memory as a numpy array (waits for the copy; releases the GIL).
    /// Types numpy lacks come back as raw bits: bfloat16 as uint16, 8-bit floats as uint8,
    /// block types as uint8 with the last dimension in bytes.
    ///
    /// `out`: a C-contiguous, writeable array of that shape and dtype to copy into (and
    /// return) instead of a new one. `blocking=False` queues the copy on the current stream
    /// and returns at once: the array's values are only set once that stream (or an event
    /// recorded on it afterwards) has been synchronized; the stream keeps the array alive
    /// until then.
    #[pyo3(name = "numpy", signature = (*, out=None, blocking=true))]
    fn numpy_py<'py>(
        &self,
        py: Python<'py>,
        out: Option<Bound<'py, PyAny>>,
        blocking: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let arr = match out {
            None => self.host_array(py)?,
            Some(o) => {
                self.check_host_out(&o)?;
                o
            }
        };
        let (ptr, nbytes) = (array_address(&arr)?, self.nbytes());
        // Blocking, this frame keeps `arr` alive through the copy; otherwise the stream does.
        let keep = (!blocking).then(|| arr.clone().unbind());
        self.copy_to_host(py, ptr, nbytes, keep)?;
        Ok(arr)
    }

    /// The value of a one-value tensor as a Python number.
    fn item<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if self.size() != 1 {
            return Err(invalid(format!(
                "item() needs a tensor of one value, this one has {}",
                self.size()
            )));
        }
        self.numpy(py)?.call_method0("item")
    }

    /// The values as nested Python lists (through `numpy()`).
    fn tolist<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.numpy(py)?.call_method0("tolist")
    }

    /// This tensor if contiguous, else a contiguous copy made on the device.
    fn contiguous(&self) -> PyResult<Tensor> {
        self.contiguous_tensor()
    }

    /// A contiguous copy in new storage.
    fn clone(&self) -> PyResult<Tensor> {
        self.copied()
    }

    /// The same values with `shape` (one entry may be -1): a view when the strides allow it,
    /// else a contiguous copy.
    #[pyo3(signature = (*shape))]
    fn reshape(&self, shape: &Bound<'_, PyTuple>) -> PyResult<Tensor> {
        let units = self.units_shape(&parse_shape(shape)?)?;
        match self.layout.view(&units) {
            Ok(l) => Ok(self.with_layout(l)),
            Err(knpu::Error::InvalidValue { .. }) => {
                let c = self.copied()?;
                let l = c.layout.view(&units).py()?;
                Ok(c.with_layout(l))
            }
            Err(e) => Err(to_py(e)),
        }
    }

    /// A view with `shape` (one entry may be -1); fails when the strides cannot express it.
    #[pyo3(signature = (*shape))]
    fn view(&self, shape: &Bound<'_, PyTuple>) -> PyResult<Tensor> {
        let units = self.units_shape(&parse_shape(shape)?)?;
        Ok(self.with_layout(self.layout.view(&units).py()?))
    }

    /// A view with dimensions `dim0` and `dim1` swapped.
    fn transpose(&self, dim0: isize, dim1: isize) -> PyResult<Tensor> {
        let n = self.layout.ndim() as isize;
        let mut dims: Vec<isize> = (0..n).collect();
        let w = |d: isize| if d < 0 { d + n } else { d };
        if (0..n).contains(&w(dim0)) && (0..n).contains(&w(dim1)) {
            dims.swap(w(dim0) as usize, w(dim1) as usize);
        }
        self.check_block_last_dim_kept(&dims)?;
        Ok(self.with_layout(self.layout.transpose(dim0, dim1).py()?))
    }

    /// A view with the dimensions reordered.
    #[pyo3(signature = (*dims))]
    fn permute(&self, dims: &Bound<'_, PyTuple>) -> PyResult<Tensor> {
        let dims = dims_arg(dims)?;
        self.check_block_last_dim_kept(&dims)?;
        Ok(self.with_layout(self.layout.permute(&dims).py()?))
    }

    /// A view with the dimensions reversed.
    #[getter(T)]
    fn t_reversed(&self) -> PyResult<Tensor> {
        let dims: Vec<isize> = (0..self.layout.ndim() as isize).rev().collect();
        self.check_block_last_dim_kept(&dims)?;
        Ok(self.with_layout(self.layout.permute(&dims).py()?))
    }

    /// A view with the last two dimensions swapped.
    #[getter(mT)]
    fn m_t(&self) -> PyResult<Tensor> {
        if self.layout.ndim() < 2 {
            return Err(invalid("mT needs at least 2 dimensions"));
        }
        self.transpose(-2, -1)
    }

    fn __getitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<Tensor> {
        let items = parse_index(key)?;
        let ndim = self.layout.ndim();
        let consuming = items
            .iter()
            .filter(|i| matches!(i, Index::Int(_) | Index::Slice(..)))
            .count();
        if items
            .iter()
            .filter(|i| matches!(i, Index::Ellipsis))
            .count()
            > 1
        {
            return Err(PyIndexError::new_err(
                "an index can only have a single ellipsis",
            ));
        }
        if consuming > ndim {
            return Err(PyIndexError::new_err(format!(
                "too many indices: {consuming} for a tensor of {ndim} dimensions"
            )));
        }
        let mut layout = self.layout.clone();
        let (mut dim, mut orig) = (0usize, 0usize);
        for it in &items {
            let last = orig + 1 == ndim;
            match *it {
                Index::NewAxis => {
                    layout = layout.unsqueeze(dim).py()?;
                    dim += 1;
                }
                Index::Ellipsis => {
                    dim += ndim - consuming;
                    orig += ndim - consuming;
                }
                Index::Int(i) => {
                    if self.dtype.is_block() && last {
                        return Err(not_supported(format!(
                            "indexing the last dimension of a {} tensor (its blocks)",
                            self.dtype
                        )));
                    }
                    let size = layout.shape()[dim] as isize;
                    if i < -size || i >= size {
                        return Err(PyIndexError::new_err(format!(
                            "index {i} is out of bounds for dimension {orig} with size {size}"
                        )));
                    }
                    layout = layout.select(dim as isize, i).py()?;
                    orig += 1;
                }
                Index::Slice(start, stop, step) => {
                    let whole = start.is_none() && stop.is_none() && step == 1;
                    if self.dtype.is_block() && last && !whole {
                        return Err(not_supported(format!(
                            "slicing the last dimension of a {} tensor (its blocks)",
                            self.dtype
                        )));
                    }
                    layout = layout.slice(dim as isize, start, stop, step).py()?;
                    dim += 1;
                    orig += 1;
                }
            }
        }
        Ok(self.with_layout(layout))
    }

    fn __setitem__(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let view = self.__getitem__(key)?;
        view.copy_any(value)
    }

    /// Copies `src` (a tensor, numpy array or number) into this tensor, broadcasting it;
    /// float32, float16 and bfloat16 convert on the device. Returns self.
    fn copy_<'py>(slf: Bound<'py, Self>, src: &Bound<'py, PyAny>) -> PyResult<Bound<'py, Self>> {
        slf.get().copy_any(src)?;
        Ok(slf)
    }

    /// Sets every value to `value`, queued on the current stream. Returns self.
    fn fill_<'py>(slf: Bound<'py, Self>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, Self>> {
        slf.get().fill_value(value)?;
        Ok(slf)
    }

    /// Sets every value to zero (zero bits, which is zero in every dtype). Returns self.
    fn zero_(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        let me = slf.get();
        let stream = me.stream()?;
        let unit = me.dtype.unit_bytes();
        // The same units seen as bytes: one more dimension of `unit` bytes.
        let mut shape = me.layout.shape().to_vec();
        let mut strides: Vec<isize> = me
            .layout
            .strides()
            .iter()
            .map(|s| s * unit as isize)
            .collect();
        shape.push(unit);
        strides.push(1);
        let bytes = Layout::new(shape, strides, me.layout.offset() * unit).py()?;
        with_buf!(&me.storage.buf, b => fill_strided(&stream, b, &bytes, 1, 0)).py()?;
        Ok(slf)
    }

    /// This tensor converted to `dtype` (itself when it already has it). Conversions run on
    /// the device's cast kernel: float32, float16 and bfloat16 among each other.
    #[pyo3(signature = (dtype=None, *, device=None))]
    fn to(
        &self,
        py: Python<'_>,
        dtype: Option<&Bound<'_, PyAny>>,
        device: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Tensor> {
        let _ = py;
        let mut dtype = dtype;
        let mut device = device;
        if let Some(d) = dtype {
            if d.cast::<Device>().is_ok()
                || d.extract::<String>().is_ok_and(|s| s.starts_with("knpu"))
            {
                device = Some(d);
                dtype = None;
            }
        }
        if let Some(dev) = device {
            let target = resolve(Some(dev))?;
            if &target != self.rt_device() {
                return Err(not_supported(format!(
                    "moving a tensor from device {} to device {}; copy through .numpy() and \
                     knpu.asarray",
                    self.rt_device().ordinal(),
                    target.ordinal()
                )));
            }
        }
        let target = match dtype {
            None => return Ok(self.with_layout(self.layout.clone())),
            Some(d) => dtype::resolve(d)?,
        };
        if target == self.dtype {
            return Ok(self.with_layout(self.layout.clone()));
        }
        self.cast(target)
    }

    /// Whether `other` has the same storage, dtype and layout.
    fn is_same_view(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
            && self.dtype == other.dtype
            && self.layout == other.layout
    }

    /// Shares storage with `other`.
    fn shares_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }

    /// Exports the tensor through DLPack (see `knpu.from_dlpack`).
    #[pyo3(signature = (*, stream=None, max_version=None, dl_device=None, copy=None))]
    fn __dlpack__<'py>(
        &self,
        py: Python<'py>,
        stream: Option<&Bound<'py, PyAny>>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        crate::dlpack::export(py, self, stream, max_version, dl_device, copy)
    }

    /// `(kDLExtDev, device index)`.
    fn __dlpack_device__(&self) -> (i32, i32) {
        (
            knpu::tensor::dlpack::device_type::EXT_DEV,
            self.rt_device().ordinal() as i32,
        )
    }

    fn __matmul__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        match other.cast::<Tensor>() {
            Ok(b) => Ok(crate::ops::matmul(py, slf.get(), b.get(), None, None, None)?.into_any()),
            Err(_) => Ok(py.NotImplemented()),
        }
    }

    fn __rmatmul__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        match other.cast::<Tensor>() {
            Ok(a) => Ok(crate::ops::matmul(py, a.get(), slf.get(), None, None, None)?.into_any()),
            Err(_) => Ok(py.NotImplemented()),
        }
    }

    fn __add__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        arith(slf, other, Arith::Add, false)
    }

    fn __radd__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        arith(slf, other, Arith::Add, true)
    }

    fn __sub__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        arith(slf, other, Arith::Sub, false)
    }

    fn __rsub__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        arith(slf, other, Arith::Sub, true)
    }

    fn __mul__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        arith(slf, other, Arith::Mul, false)
    }

    fn __rmul__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        arith(slf, other, Arith::Mul, true)
    }

    fn __truediv__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        arith(slf, other, Arith::Div, false)
    }

    fn __rtruediv__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        arith(slf, other, Arith::Div, true)
    }

    fn __neg__(&self) -> PyResult<Tensor> {
        Python::attach(|py| {
            crate::ops::arith_scalar(
                self,
                (-1.0f64).into_pyobject(py)?.as_any(),
                Arith::Mul,
                false,
            )
        })
    }
}

/// A binary operator: a tensor and a tensor or a number; anything else is left to Python.
fn arith(
    slf: &Bound<'_, Tensor>,
    other: &Bound<'_, PyAny>,
    op: Arith,
    reflected: bool,
) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    let t = if let Ok(b) = other.cast::<Tensor>() {
        if reflected {
            crate::ops::arith_tensors(b.get(), slf.get(), op)?
        } else {
            crate::ops::arith_tensors(slf.get(), b.get(), op)?
        }
    } else if other.is_instance_of::<pyo3::types::PyFloat>()
        || other.is_instance_of::<pyo3::types::PyInt>()
    {
        crate::ops::arith_scalar(slf.get(), other, op, reflected)?
    } else {
        return Ok(py.NotImplemented());
    };
    Ok(Py::new(py, t)?.into_any())
}

impl Tensor {
    /// Copies any source a user may pass to `copy_` or `__setitem__` into this tensor.
    pub fn copy_any(&self, src: &Bound<'_, PyAny>) -> PyResult<()> {
        let stream = self.stream()?;
        if let Ok(t) = src.cast::<Tensor>() {
            let t = t.get();
            if t.dtype == self.dtype {
                return self.copy_from(&stream, t);
            }
            let converted = t.cast(self.dtype)?;
            return self.copy_from(&stream, &converted);
        }
        if src.extract::<f64>().is_ok() && src.cast::<pyo3::types::PySequence>().is_err() {
            let np_scalar = src.hasattr("shape")? && src.getattr("shape")?.len()? > 0;
            if !np_scalar {
                return self.fill_value(src);
            }
        }
        let dt = dtype::object(src.py(), self.dtype)?;
        let host = upload(
            src.py(),
            src,
            Some(dt.bind(src.py()).as_any()),
            self.rt_device(),
        )?;
        self.copy_from(&stream, &host)
    }

    /// This tensor's values converted to `to` on the device's cast kernel.
    pub fn cast(&self, to: DataType) -> PyResult<Tensor> {
        use knpu::ops::cast;
        let src = self.contiguous_tensor()?;
        let stream = src.stream()?;
        let (off, n) = (src.layout.offset(), src.layout.numel());
        let shape = src.values_shape();
        let out = Tensor::empty_on(&stream, &shape, to)?;
        // The new storage is not shared yet, so it can be written through a unique borrow.
        let mut storage = match Arc::try_unwrap(out.storage) {
            Ok(s) => s,
            Err(_) => return Err(invalid("fresh storage is shared")),
        };
        macro_rules! run {
            ($s:expr, $d:expr) => {
                cast(&stream, &$s.slice(off..off + n).py()?, $d).py()?
            };
        }
        match (&src.storage.buf, &mut storage.buf) {
            (Buf::F32(s), Buf::F16(d)) => run!(s, d),
            (Buf::F32(s), Buf::BF16(d)) => run!(s, d),
            (Buf::F16(s), Buf::F32(d)) => run!(s, d),
            (Buf::F16(s), Buf::BF16(d)) => run!(s, d),
            (Buf::BF16(s), Buf::F32(d)) => run!(s, d),
            (Buf::BF16(s), Buf::F16(d)) => run!(s, d),
            _ => {
                return Err(not_supported(format!(
                    "converting {} to {} on the device (the cast kernel converts between \
                     float32, float16 and bfloat16)",
                    self.dtype, to
                )))
            }
        }
        Ok(Tensor {
            storage: Arc::new(storage),
            layout: out.layout,
            dtype: to,
        })
    }
}

/// Copies a host object (numpy array, buffer, nested sequence or number) to a new tensor on
/// `device`, converted on the host to `dtype`.
pub fn upload(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    dtype: Option<&Bound<'_, PyAny>>,
    device: &knpu::Device,
) -> PyResult<Tensor> {
    let np = py.import("numpy")?;
    let mut arr = np.call_method1("asarray", (obj,))?;
    let np_name: String = arr.getattr("dtype")?.getattr("name")?.extract()?;
    let target = match dtype {
        Some(d) if !d.is_none() => dtype::resolve(d)?,
        _ => DataType::from_name(&np_name)
            .ok_or_else(|| not_supported(format!("numpy dtype {np_name} has no knpu dtype")))?,
    };
    let raw_name = dtype::numpy_name(target);
    let raw_bits = raw_name != target.name();
    let mut bf16_from_f32 = false;
    if target == DataType::BF16 && np_name != "uint16" {
        arr = arr.call_method1("astype", ("float32",))?;
        bf16_from_f32 = true;
    } else if raw_bits {
        if np_name != raw_name {
            return Err(not_supported(format!(
                "converting numpy {np_name} to {target} on the host: pass the raw bits as a \
                 {raw_name} array"
            )));
        }
    } else if np_name != raw_name {
        arr = arr.call_method1("astype", (raw_name,))?;
    }
    // The shape first: ascontiguousarray makes a 0-d array 1-d.
    let mut shape: Vec<usize> = arr.getattr("shape")?.extract()?;
    arr = np.call_method1("ascontiguousarray", (arr,))?;
    if target.is_block() {
        let unit = target.unit_bytes();
        match shape.last_mut() {
            Some(last) if *last % unit == 0 => *last = *last / unit * target.block_elems(),
            _ => {
                return Err(to_py(knpu::Error::Shape {
                    operand: "obj",
                    expected: format!(
                    "uint8 {target} blocks: a last dimension that is a multiple of {unit} bytes"
                ),
                    actual: format!("{shape:?}"),
                }))
            }
        }
    }
    let ptr = array_address(&arr)?;
    let nbytes: usize = arr.getattr("nbytes")?.extract()?;
    let stream = current_stream(device)?;
    let layout = Layout::from_values(&shape, target).py()?;
    let mut storage = Storage::alloc(&stream, target, layout.numel()).py()?;
    let s2 = stream.clone();
    let storage = py
        .detach(move || -> knpu::Result<Storage> {
            if nbytes == 0 {
                return Ok(storage);
            }
            // SAFETY: `arr` is a contiguous array of `nbytes` bytes kept alive by the caller's
            // frame while this runs; it is only read.
            let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, nbytes) };
            if bf16_from_f32 {
                let f: &[f32] =
                    bytemuck::try_cast_slice(bytes).map_err(|e| knpu::Error::InvalidValue {
                        detail: format!("float32 host data: {e}"),
                    })?;
                let v: Vec<u16> = f
                    .iter()
                    .map(|&x| half::bf16::from_f32(x).to_bits())
                    .collect();
                storage.upload(&s2, 0, bytemuck::cast_slice(&v))?;
            } else {
                storage.upload(&s2, 0, bytes)?;
            }
            Ok(storage)
        })
        .py()?;
    drop(arr);
    Ok(Tensor {
        storage: Arc::new(storage),
        layout,
        dtype: target,
    })
}

/// A tensor of the values of `obj` on `device`: the tensor itself when it already fits,
/// else a copy (from host data, or converted on the device).
#[pyfunction]
#[pyo3(signature = (obj, dtype=None, device=None))]
pub fn asarray(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    dtype: Option<&Bound<'_, PyAny>>,
    device: Option<&Bound<'_, PyAny>>,
) -> PyResult<Tensor> {
    if let Ok(t) = obj.cast::<Tensor>() {
        return t.get().to(py, dtype, device);
    }
    let dev = resolve(device)?;
    upload(py, obj, dtype, &dev)
}

fn new_tensor(
    shape: &Bound<'_, PyTuple>,
    dtype: Option<&Bound<'_, PyAny>>,
    device: Option<&Bound<'_, PyAny>>,
    default: DataType,
) -> PyResult<Tensor> {
    let shape = sizes(&parse_shape(shape)?)?;
    let dt = match dtype {
        Some(d) if !d.is_none() => dtype::resolve(d)?,
        _ => default,
    };
    let dev = resolve(device)?;
    Tensor::empty_on(&current_stream(&dev)?, &shape, dt)
}

/// A tensor with unspecified contents.
#[pyfunction]
#[pyo3(signature = (*shape, dtype=None, device=None))]
pub fn empty(
    shape: &Bound<'_, PyTuple>,
    dtype: Option<&Bound<'_, PyAny>>,
    device: Option<&Bound<'_, PyAny>>,
) -> PyResult<Tensor> {
    new_tensor(shape, dtype, device, DataType::F32)
}

/// A tensor of zeros (filled on the device).
#[pyfunction]
#[pyo3(signature = (*shape, dtype=None, device=None))]
pub fn zeros<'py>(
    py: Python<'py>,
    shape: &Bound<'py, PyTuple>,
    dtype: Option<&Bound<'py, PyAny>>,
    device: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, Tensor>> {
    let t = Bound::new(py, new_tensor(shape, dtype, device, DataType::F32)?)?;
    Tensor::zero_(t)
}

/// A tensor of ones (filled on the device).
#[pyfunction]
#[pyo3(signature = (*shape, dtype=None, device=None))]
pub fn ones(
    py: Python<'_>,
    shape: &Bound<'_, PyTuple>,
    dtype: Option<&Bound<'_, PyAny>>,
    device: Option<&Bound<'_, PyAny>>,
) -> PyResult<Tensor> {
    let t = new_tensor(shape, dtype, device, DataType::F32)?;
    t.fill_value(&1i64.into_pyobject(py)?.into_any())?;
    Ok(t)
}

/// A tensor of `fill_value` (filled on the device); the dtype defaults to int64 for an int
/// and float32 otherwise.
#[pyfunction]
#[pyo3(signature = (shape, fill_value, *, dtype=None, device=None))]
pub fn full(
    shape: &Bound<'_, PyAny>,
    fill_value: &Bound<'_, PyAny>,
    dtype: Option<&Bound<'_, PyAny>>,
    device: Option<&Bound<'_, PyAny>>,
) -> PyResult<Tensor> {
    let default = if fill_value.extract::<i64>().is_ok() && fill_value.extract::<bool>().is_err() {
        DataType::I64
    } else {
        DataType::F32
    };
    let shape = PyTuple::new(shape.py(), [shape])?;
    let t = new_tensor(&shape, dtype, device, default)?;
    t.fill_value(fill_value)?;
    Ok(t)
}

/// `start, start + step, ...` below `end` (like `numpy.arange`; the values are made on the
/// host and copied). The dtype defaults to int64 for ints and float32 otherwise.
#[pyfunction]
#[pyo3(signature = (start, end=None, step=None, *, dtype=None, device=None))]
pub fn arange<'py>(
    py: Python<'py>,
    start: &Bound<'py, PyAny>,
    end: Option<&Bound<'py, PyAny>>,
    step: Option<&Bound<'py, PyAny>>,
    dtype: Option<&Bound<'py, PyAny>>,
    device: Option<&Bound<'py, PyAny>>,
) -> PyResult<Tensor> {
    let one = 1i64.into_pyobject(py)?.into_any();
    let zero = 0i64.into_pyobject(py)?.into_any();
    let (start, end) = match end {
        Some(e) if !e.is_none() => (start.clone(), e.clone()),
        _ => (zero, start.clone()),
    };
    let step = step.filter(|s| !s.is_none()).cloned().unwrap_or(one);
    let all_int = [&start, &end, &step]
        .iter()
        .all(|v| v.extract::<i64>().is_ok());
    if step.extract::<f64>().is_ok_and(|s| s == 0.0) {
        return Err(invalid("arange step cannot be zero"));
    }
    let dt = match dtype {
        Some(d) if !d.is_none() => dtype::resolve(d)?,
        _ if all_int => DataType::I64,
        _ => DataType::F32,
    };
    let host_dtype = if dt == DataType::BF16 {
        "float32"
    } else {
        dtype::numpy_name(dt)
    };
    let np = py.import("numpy")?;
    let arr = np.call_method1("arange", (start, end, step, host_dtype))?;
    let dev = resolve(device)?;
    let dt_obj = dtype::object(py, dt)?;
    upload(py, &arr, Some(dt_obj.bind(py).as_any()), &dev)
}

/// `knpu.matmul(a, b, *, bias=None, activation=None, out=None)`: the matrix product as
/// numpy's `matmul` defines it, with an optional float32 bias of `[n]` and an activation
/// (`"relu"`, `"gelu"`, `"gelu_tanh"` or `"silu"`) fused into the epilogue.
#[pyfunction]
#[pyo3(signature = (a, b, *, bias=None, activation=None, out=None))]
pub fn matmul(
    py: Python<'_>,
    a: PyRef<'_, Tensor>,
    b: PyRef<'_, Tensor>,
    bias: Option<PyRef<'_, Tensor>>,
    activation: Option<&str>,
    out: Option<&Bound<'_, Tensor>>,
) -> PyResult<Py<Tensor>> {
    crate::ops::matmul(py, &a, &b, bias.as_deref(), activation, out)
}

/// `knpu.cast(x, dtype)`: `x` converted to `dtype` on the device (as `x.to(dtype)`).
#[pyfunction]
pub fn cast(x: PyRef<'_, Tensor>, dtype: &Bound<'_, PyAny>) -> PyResult<Tensor> {
    let target = dtype::resolve(dtype)?;
    if target == x.dtype {
        return Ok(x.with_layout(x.layout.clone()));
    }
    x.cast(target)
}
