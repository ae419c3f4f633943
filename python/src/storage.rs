//! Device storage of tensors: one typed runtime buffer per dtype, shared by every view.

use knpu::{DataType, DeviceBuffer, Stream};

/// A device buffer of one tensor storage, typed as the kernels will take it.
pub enum Buf {
    F32(DeviceBuffer<f32>),
    F16(DeviceBuffer<half::f16>),
    BF16(DeviceBuffer<half::bf16>),
    F64(DeviceBuffer<f64>),
    I8(DeviceBuffer<i8>),
    U8(DeviceBuffer<u8>),
    I32(DeviceBuffer<i32>),
    U32(DeviceBuffer<u32>),
    I64(DeviceBuffer<i64>),
    /// 8-bit floats and quantised blocks: raw bytes.
    Raw(DeviceBuffer<u8>),
}

/// Runs `$e` with `$x` bound to the typed buffer inside a `Buf`.
#[macro_export]
macro_rules! with_buf {
    ($b:expr, $x:ident => $e:expr) => {
        match $b {
            $crate::storage::Buf::F32($x) => $e,
            $crate::storage::Buf::F16($x) => $e,
            $crate::storage::Buf::BF16($x) => $e,
            $crate::storage::Buf::F64($x) => $e,
            $crate::storage::Buf::I8($x) => $e,
            $crate::storage::Buf::U8($x) => $e,
            $crate::storage::Buf::I32($x) => $e,
            $crate::storage::Buf::U32($x) => $e,
            $crate::storage::Buf::I64($x) => $e,
            $crate::storage::Buf::Raw($x) => $e,
        }
    };
}

/// The device memory behind one or more tensors (views share it through an `Arc`).
pub struct Storage {
    pub buf: Buf,
}

impl Storage {
    /// `units` uninitialised units of `dtype`, allocated on `stream`.
    pub fn alloc(stream: &Stream, dtype: DataType, units: usize) -> knpu::Result<Storage> {
        let buf = match dtype {
            DataType::F32 => Buf::F32(stream.alloc(units)?),
            DataType::F16 => Buf::F16(stream.alloc(units)?),
            DataType::BF16 => Buf::BF16(stream.alloc(units)?),
            DataType::F64 => Buf::F64(stream.alloc(units)?),
            DataType::I8 => Buf::I8(stream.alloc(units)?),
            DataType::U8 => Buf::U8(stream.alloc(units)?),
            DataType::I32 => Buf::I32(stream.alloc(units)?),
            DataType::U32 => Buf::U32(stream.alloc(units)?),
            DataType::I64 => Buf::I64(stream.alloc(units)?),
            other => {
                let bytes = units.checked_mul(other.unit_bytes()).ok_or_else(|| {
                    knpu::Error::InvalidValue {
                        detail: format!("{units} blocks of {other} overflow the address space"),
                    }
                })?;
                Buf::Raw(stream.alloc(bytes)?)
            }
        };
        Ok(Storage { buf })
    }

    /// The device the storage lives on.
    pub fn device(&self) -> &knpu::Device {
        with_buf!(&self.buf, b => b.device())
    }

    /// The device address of the first byte (0 when empty).
    pub fn address(&self) -> u64 {
        with_buf!(&self.buf, b => b.device_address())
    }

    /// Bytes of storage.
    pub fn size_bytes(&self) -> usize {
        with_buf!(&self.buf, b => b.size_bytes())
    }

    /// Queues a copy of `bytes` (a whole number of units) into units `offset..` of the
    /// storage. The storage must be fresh (the write goes through a unique borrow).
    pub fn upload(&mut self, stream: &Stream, offset: usize, bytes: &[u8]) -> knpu::Result<()> {
        with_buf!(&mut self.buf, b => {
            let mut v = vec![bytemuck::Zeroable::zeroed(); bytes.len() / elem_size(b)];
            bytemuck::cast_slice_mut(&mut v).copy_from_slice(bytes);
            let n = v.len();
            let mut dst = b.slice_mut(offset..offset + n)?;
            stream.memcpy_htod_owned(&mut dst, v)
        })
    }
}

fn elem_size<T>(_: &DeviceBuffer<T>) -> usize {
    std::mem::size_of::<T>()
}

/// The typed buffer of a [`Buf`] whose element type is `Self`.
pub trait Typed: knpu::DType + Sized {
    /// The buffer when `b` holds `Self` elements.
    fn of(b: &Buf) -> Option<&DeviceBuffer<Self>>;
    /// The buffer when `b` holds `Self` elements, mutably.
    fn of_mut(b: &mut Buf) -> Option<&mut DeviceBuffer<Self>>;
}

macro_rules! typed {
    ($t:ty, $v:ident) => {
        impl Typed for $t {
            fn of(b: &Buf) -> Option<&DeviceBuffer<Self>> {
                match b {
                    Buf::$v(x) => Some(x),
                    _ => None,
                }
            }
            fn of_mut(b: &mut Buf) -> Option<&mut DeviceBuffer<Self>> {
                match b {
                    Buf::$v(x) => Some(x),
                    _ => None,
                }
            }
        }
    };
}
typed!(f32, F32);
typed!(half::f16, F16);
typed!(half::bf16, BF16);
typed!(f64, F64);
typed!(i8, I8);
typed!(u8, U8);
typed!(i32, I32);
typed!(u32, U32);
typed!(i64, I64);
