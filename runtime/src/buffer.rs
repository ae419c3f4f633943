//! Typed device buffers and views of them.
//!
//! A [`DeviceBuffer<T>`] owns `len` elements of device memory from the caching allocator.
//! Dropping it is always safe, even with work pending: the block goes back to the cache
//! tagged with the work that may still use it, and is handed out again only when that work
//! is done (or, on the buffer's own stream, right away, since the stream is in order).
//!
//! [`DeviceSlice`] and [`DeviceSliceMut`] are bounds-checked views; every copy and op takes
//! them through [`AsDeviceSlice`] and [`AsDeviceSliceMut`], so a buffer and a view work alike.

use crate::allocator::{Allocation, Pending};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::stream::Stream;
use parking_lot::Mutex;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

/// `len` elements of `T` in device memory.
// repr(C): the layout does not depend on `T` (only `PhantomData<T>` does), which
// `DeviceSlice::<u8>::cast` relies on to view a byte buffer as one of another element type.
#[repr(C)]
pub struct DeviceBuffer<T> {
    alloc: Option<Allocation>,
    len: usize,
    stream: Stream,
    /// Work on streams other than `stream` that used this buffer.
    uses: Mutex<Vec<Pending>>,
    /// Set when the buffer was allocated during a capture: the graph owns the memory.
    graph: Option<crate::graph::Graph>,
    _t: PhantomData<T>,
}

impl<T> std::fmt::Debug for DeviceBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceBuffer")
            .field("addr", &format_args!("{:#x}", self.device_address()))
            .field("len", &self.len)
            .field("elem", &std::any::type_name::<T>())
            .field("device", &self.stream.device().ordinal())
            .finish()
    }
}

impl<T: bytemuck::Pod> DeviceBuffer<T> {
    pub(crate) fn new(stream: &Stream, len: usize) -> Result<DeviceBuffer<T>> {
        let device = stream.device();
        device.check_lost()?;
        let bytes = len.checked_mul(std::mem::size_of::<T>()).ok_or_else(|| {
            Error::invalid(format!(
                "{len} elements of {} bytes overflow the address space",
                std::mem::size_of::<T>()
            ))
        })? as u64;
        if bytes > 0 {
            if let Some(b) = crate::graph::capture::alloc_node(stream, bytes, len)? {
                return Ok(b);
            }
        }
        let alloc = if bytes == 0 {
            None
        } else {
            Some(
                device
                    .inner
                    .allocator
                    .alloc(bytes, stream.id())
                    .map_err(|e| device.note(e))?,
            )
        };
        Ok(DeviceBuffer {
            alloc,
            len,
            stream: stream.clone(),
            uses: Mutex::new(Vec::new()),
            graph: None,
            _t: PhantomData,
        })
    }

    /// A buffer over memory a graph owns (allocated by a captured allocation node).
    pub(crate) fn graph_owned(
        stream: &Stream,
        alloc: Allocation,
        len: usize,
        graph: crate::graph::Graph,
    ) -> Self {
        DeviceBuffer {
            alloc: Some(alloc),
            len,
            stream: stream.clone(),
            uses: Mutex::new(Vec::new()),
            graph: Some(graph),
            _t: PhantomData,
        }
    }

    /// Copies `src` into the buffer on its stream and waits.
    pub fn copy_from_host(&mut self, src: &[T]) -> Result<()> {
        let s = self.stream.clone();
        s.memcpy_htod(self, src)
    }

    /// Copies the buffer into `dst` on its stream and waits.
    pub fn copy_to_host(&self, dst: &mut [T]) -> Result<()> {
        self.stream.memcpy_dtoh(dst, self)
    }

    /// The buffer's contents, copied to a new vector (waits for the stream).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let mut v = vec![T::zeroed(); self.len];
        self.copy_to_host(&mut v)?;
        Ok(v)
    }

    /// A view from element `offset` to the end, `None` when `offset` is past the end.
    pub(crate) fn tail(&self, offset: usize) -> Option<DeviceSlice<'_, T>> {
        (offset <= self.len).then(|| DeviceSlice {
            buf: self,
            offset,
            len: self.len - offset,
        })
    }

    /// A view of `range` (in elements).
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Result<DeviceSlice<'_, T>> {
        let (offset, len) = resolve(range, self.len)?;
        Ok(DeviceSlice {
            buf: self,
            offset,
            len,
        })
    }

    /// A mutable view of `range` (in elements).
    pub fn slice_mut(&mut self, range: impl RangeBounds<usize>) -> Result<DeviceSliceMut<'_, T>> {
        let (offset, len) = resolve(range, self.len)?;
        Ok(DeviceSliceMut {
            buf: self,
            offset,
            len,
        })
    }
}

impl<T> DeviceBuffer<T> {
    /// Elements in the buffer.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the buffer's elements.
    pub fn size_bytes(&self) -> usize {
        self.len * std::mem::size_of::<T>()
    }

    /// The device the buffer lives on.
    pub fn device(&self) -> &Device {
        self.stream.device()
    }

    /// The stream the buffer was allocated on; its free is ordered on it.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// The device address of element 0 (0 for an empty buffer).
    pub fn device_address(&self) -> u64 {
        self.alloc.map_or(0, |a| a.addr)
    }

    /// Notes that `stream` queued work up to `value` that uses this buffer.
    pub(crate) fn note_use(&self, stream: &Stream, value: u64) {
        if stream.id() == self.stream.id() || self.alloc.is_none() {
            return;
        }
        let mut uses = self.uses.lock();
        match uses.iter_mut().find(|p| p.stream == stream.id()) {
            Some(p) => p.value = p.value.max(value),
            None => {
                let (sem, _) = stream.position();
                uses.push(Pending {
                    stream: stream.id(),
                    sem,
                    value,
                });
            }
        }
    }
}

impl<T> Drop for DeviceBuffer<T> {
    fn drop(&mut self) {
        let Some(a) = self.alloc.take() else {
            return;
        };
        if let Some(g) = self.graph.take() {
            crate::graph::capture::free_node(&self.stream, &g, a.addr);
            return;
        }
        let mut pending = std::mem::take(self.uses.get_mut());
        pending.push(self.stream.pending_marker());
        self.stream.device().inner.allocator.free(a.addr, pending);
    }
}

fn resolve(range: impl RangeBounds<usize>, len: usize) -> Result<(usize, usize)> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => len,
    };
    if start > end || end > len {
        return Err(Error::invalid(format!(
            "range {start}..{end} is out of bounds for a buffer of {len} elements"
        )));
    }
    Ok((start, end - start))
}

/// A read-only view of part of a [`DeviceBuffer`].
pub struct DeviceSlice<'a, T> {
    buf: &'a DeviceBuffer<T>,
    offset: usize,
    len: usize,
}

impl<T> Clone for DeviceSlice<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for DeviceSlice<'_, T> {}

/// A mutable view of part of a [`DeviceBuffer`].
pub struct DeviceSliceMut<'a, T> {
    buf: &'a mut DeviceBuffer<T>,
    offset: usize,
    len: usize,
}

impl<'a, T> DeviceSlice<'a, T> {
    /// Elements in the view.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device address of the view's first element.
    pub fn addr(&self) -> u64 {
        self.buf.device_address() + (self.offset * std::mem::size_of::<T>()) as u64
    }

    /// The device the view's buffer lives on.
    pub fn device(&self) -> &'a Device {
        self.buf.device()
    }

    pub(crate) fn buffer_stream(&self) -> &'a Stream {
        &self.buf.stream
    }

    pub(crate) fn note_use(&self, stream: &Stream, value: u64) {
        self.buf.note_use(stream, value)
    }

    /// The same memory viewed as bytes, for launchers whose checks run on untyped memory
    /// (the inverse of [`DeviceSlice::cast`]).
    pub(crate) fn as_bytes(self) -> DeviceSlice<'a, u8> {
        let size = std::mem::size_of::<T>();
        let buf: *const DeviceBuffer<T> = self.buf;
        // SAFETY: as in `cast`: DeviceBuffer is repr(C) and its layout does not depend on the
        // element type. A view reads only the buffer's address, device, stream and use list,
        // never its `len` (which stays in elements of `T`), and never drops it.
        let buf = unsafe { &*buf.cast::<DeviceBuffer<u8>>() };
        DeviceSlice {
            buf,
            offset: self.offset * size,
            len: self.len * size,
        }
    }
}

impl<'a> DeviceSlice<'a, u8> {
    /// The same bytes viewed as elements of `T`: the view's address must be aligned to `T`
    /// and its length a whole number of `T`s, else `Error::InvalidValue` naming both. For
    /// front ends that hold untyped memory (the C API holds every allocation as bytes).
    pub fn cast<T: bytemuck::Pod>(self) -> Result<DeviceSlice<'a, T>> {
        let (size, align) = (std::mem::size_of::<T>(), std::mem::align_of::<T>());
        if size == 0 {
            return Err(Error::invalid(
                "cannot view device bytes as a zero-sized type",
            ));
        }
        if !self.addr().is_multiple_of(align as u64) {
            return Err(Error::invalid(format!(
                "device address {:#x} is not aligned to {align} bytes for {}",
                self.addr(),
                std::any::type_name::<T>()
            )));
        }
        if !self.offset.is_multiple_of(size) || !self.len.is_multiple_of(size) {
            return Err(Error::invalid(format!(
                "{} bytes at offset {} of a buffer are not a whole number of {}-byte {}",
                self.len,
                self.offset,
                size,
                std::any::type_name::<T>()
            )));
        }
        let buf: *const DeviceBuffer<u8> = self.buf;
        // SAFETY: DeviceBuffer is repr(C) and its fields do not depend on the element type
        // (PhantomData is zero-sized with alignment 1), so both types have one layout. A
        // view reads only the buffer's address, device, stream and use list, never `len`
        // (which stays in bytes) and never drops it.
        let buf = unsafe { &*buf.cast::<DeviceBuffer<T>>() };
        Ok(DeviceSlice {
            buf,
            offset: self.offset / size,
            len: self.len / size,
        })
    }
}

/// Things that can be read as a device slice: buffers and views.
pub trait AsDeviceSlice<T> {
    /// The whole thing as a read-only view.
    fn as_device_slice(&self) -> DeviceSlice<'_, T>;
}

/// Things that can be written as a device slice: buffers and mutable views.
pub trait AsDeviceSliceMut<T>: AsDeviceSlice<T> {
    /// The whole thing as a view that work may write through.
    fn as_device_slice_mut(&mut self) -> DeviceSlice<'_, T>;
}

impl<T> AsDeviceSlice<T> for DeviceBuffer<T> {
    fn as_device_slice(&self) -> DeviceSlice<'_, T> {
        DeviceSlice {
            buf: self,
            offset: 0,
            len: self.len,
        }
    }
}

impl<T> AsDeviceSliceMut<T> for DeviceBuffer<T> {
    fn as_device_slice_mut(&mut self) -> DeviceSlice<'_, T> {
        DeviceSlice {
            buf: self,
            offset: 0,
            len: self.len,
        }
    }
}

impl<T> AsDeviceSlice<T> for DeviceSlice<'_, T> {
    fn as_device_slice(&self) -> DeviceSlice<'_, T> {
        *self
    }
}

impl<T> AsDeviceSlice<T> for DeviceSliceMut<'_, T> {
    fn as_device_slice(&self) -> DeviceSlice<'_, T> {
        DeviceSlice {
            buf: self.buf,
            offset: self.offset,
            len: self.len,
        }
    }
}

impl<T> AsDeviceSliceMut<T> for DeviceSliceMut<'_, T> {
    fn as_device_slice_mut(&mut self) -> DeviceSlice<'_, T> {
        DeviceSlice {
            buf: self.buf,
            offset: self.offset,
            len: self.len,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn byte_views_cast_to_aligned_whole_elements_only() {
        let d = crate::device(0).unwrap();
        let s = d.default_stream().unwrap().clone();
        let mut bytes = s.alloc::<u8>(64).unwrap();
        bytes.copy_from_host(&[0u8; 64]).unwrap();
        let f = bytes.slice(8..40).unwrap().cast::<f32>().unwrap();
        assert_eq!(f.len(), 8);
        assert_eq!(f.addr(), bytes.device_address() + 8);
        let one = [1.5f32; 8];
        let mut back = [0f32; 8];
        // A copy through the typed view reads the bytes the buffer holds.
        let src = bytemuck::cast_slice::<f32, u8>(&one);
        s.memcpy_htod(&mut bytes.slice_mut(8..40).unwrap(), src)
            .unwrap();
        let f = bytes.slice(8..40).unwrap().cast::<f32>().unwrap();
        s.memcpy_dtoh(&mut back, &f).unwrap();
        assert_eq!(back, one);
        let misaligned = bytes.slice(2..10).unwrap().cast::<f32>().err().unwrap();
        assert!(misaligned.to_string().contains("aligned"), "{misaligned}");
        let ragged = bytes.slice(8..14).unwrap().cast::<f32>().err().unwrap();
        assert!(ragged.to_string().contains("whole number"), "{ragged}");
    }
}
