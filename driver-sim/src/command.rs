//! Validation of submitted commands and their owned, driver-side form.
//!
//! `queue_submit` turns the caller's `KnpuSubmitInfo` into a [`Submission`] before it
//! returns: every handle is looked up, every malformed command is refused with
//! `INVALID_VALUE` (an unknown kernel with `NOT_SUPPORTED`, an unknown handle with
//! `INVALID_HANDLE`), and kernel parameter structs are copied, so the caller may free all of
//! it at once. Device addresses are not checked here: the allocation table may change before
//! the command runs, so they are resolved when it executes.

use std::ffi::c_void;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, LazyLock};

use crossbeam::queue::ArrayQueue;

use knpu_driver_abi::*;

use crate::device::Device;
use crate::driver::Driver;
use crate::kernels::{self, KernelDef};
use crate::semaphore::Semaphore;

/// A host address named by a command.
#[derive(Debug, Clone, Copy)]
pub struct HostPtr(pub *mut u8);

/// Kernel parameter bytes, copied at submit; small structs are kept inline so a launch
/// does not allocate for them.
#[derive(Clone)]
pub enum ParamBytes {
    /// Up to [`INLINE_PARAMS`] bytes.
    Inline {
        /// Bytes used.
        len: usize,
        /// The bytes, 8-byte aligned.
        words: [u64; INLINE_PARAMS / 8],
    },
    /// Larger parameter structs.
    Heap(Box<[u8]>),
}

/// Parameter structs up to this size are stored without a heap allocation.
pub const INLINE_PARAMS: usize = 192;

impl ParamBytes {
    fn copy_from(bytes: &[u8]) -> ParamBytes {
        if bytes.len() <= INLINE_PARAMS {
            let mut words = [0u64; INLINE_PARAMS / 8];
            bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
            ParamBytes::Inline {
                len: bytes.len(),
                words,
            }
        } else {
            ParamBytes::Heap(bytes.into())
        }
    }

    /// The parameter bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            ParamBytes::Inline { len, words } => &bytemuck::cast_slice::<u64, u8>(words)[..*len],
            ParamBytes::Heap(b) => b,
        }
    }
}

/// One validated command.
#[derive(Clone)]
pub enum Command {
    /// Host to device.
    CopyHostToDevice {
        /// Host source.
        src: HostPtr,
        /// Device destination.
        dst: u64,
        /// Bytes.
        size: u64,
    },
    /// Device to host.
    CopyDeviceToHost {
        /// Device source.
        src: u64,
        /// Host destination.
        dst: HostPtr,
        /// Bytes.
        size: u64,
    },
    /// Device to device on the queue's device (memmove semantics).
    CopyDeviceToDevice {
        /// Device source.
        src: u64,
        /// Device destination.
        dst: u64,
        /// Bytes.
        size: u64,
    },
    /// From another device of this driver to the queue's device.
    CopyPeer {
        /// The source device.
        peer: Arc<Device>,
        /// Source address on `peer`.
        src: u64,
        /// Destination on the queue's device.
        dst: u64,
        /// Bytes.
        size: u64,
    },
    /// Pattern fill.
    Fill {
        /// Device destination.
        dst: u64,
        /// Bytes, a multiple of `pattern_size`.
        size: u64,
        /// The pattern in its low `pattern_size` bytes, stored little-endian.
        pattern: u64,
        /// 1, 2, 4 or 8.
        pattern_size: u32,
    },
    /// A kernel launch.
    Kernel {
        /// The kernel.
        kernel: &'static KernelDef,
        /// Its parameter struct.
        params: ParamBytes,
    },
    /// A host callback.
    HostFunction {
        /// The function.
        func: unsafe extern "C" fn(*mut c_void, KnpuStatus),
        /// Its argument.
        user_data: *mut c_void,
    },
    /// Device clock to host memory.
    Timestamp {
        /// 8-aligned host destination.
        dst: *mut u64,
    },
}

impl Command {
    /// The `KnpuCommandType` of the command.
    pub fn type_id(&self) -> u32 {
        match self {
            Command::CopyHostToDevice { .. } => KNPU_COMMAND_COPY_HOST_TO_DEVICE,
            Command::CopyDeviceToHost { .. } => KNPU_COMMAND_COPY_DEVICE_TO_HOST,
            Command::CopyDeviceToDevice { .. } => KNPU_COMMAND_COPY_DEVICE_TO_DEVICE,
            Command::CopyPeer { .. } => KNPU_COMMAND_COPY_PEER,
            Command::Fill { .. } => KNPU_COMMAND_FILL,
            Command::Kernel { .. } => KNPU_COMMAND_KERNEL,
            Command::HostFunction { .. } => KNPU_COMMAND_HOST_FUNCTION,
            Command::Timestamp { .. } => KNPU_COMMAND_TIMESTAMP,
        }
    }

    /// A short description for messages, e.g. `copy host to device`, `kernel elementwise`.
    pub fn kind(&self) -> String {
        match self {
            Command::CopyHostToDevice { .. } => "copy host to device".into(),
            Command::CopyDeviceToHost { .. } => "copy device to host".into(),
            Command::CopyDeviceToDevice { .. } => "copy device to device".into(),
            Command::CopyPeer { .. } => "copy peer".into(),
            Command::Fill { .. } => "fill".into(),
            Command::Kernel { kernel, .. } => format!("kernel {}", kernel.name),
            Command::HostFunction { .. } => "host function".into(),
            Command::Timestamp { .. } => "timestamp".into(),
        }
    }
}

/// Semaphores named by a submission, with their values. The first few are stored inline, so
/// a typical launch (one wait, one signal) allocates nothing for them.
#[derive(Default)]
pub struct SemaphoreList {
    inline: [Option<(Arc<Semaphore>, u64)>; INLINE_SEMAPHORES],
    more: Vec<(Arc<Semaphore>, u64)>,
    len: usize,
}

/// Semaphores per submission stored without a heap allocation.
pub const INLINE_SEMAPHORES: usize = 4;

impl SemaphoreList {
    /// Appends a semaphore and its value.
    pub fn push(&mut self, item: (Arc<Semaphore>, u64)) {
        match self.inline.get_mut(self.len) {
            Some(slot) => *slot = Some(item),
            None => self.more.push(item),
        }
        self.len += 1;
    }

    /// Removes every semaphore, keeping the storage.
    fn clear(&mut self) {
        self.inline.iter_mut().for_each(|slot| *slot = None);
        self.more.clear();
        self.len = 0;
    }

    /// The semaphores in the order they were pushed.
    pub fn iter(&self) -> impl Iterator<Item = &(Arc<Semaphore>, u64)> {
        self.inline.iter().flatten().chain(&self.more)
    }
}

/// A validated submission, owned by the queue until it completes.
///
/// Its body is recycled: when the worker drops a finished submission, the body goes back to
/// a bounded pool with its command vector's storage, and the next `queue_submit` takes it
/// from there. A launch therefore neither allocates nor zeroes memory for its commands once
/// the pool is warm, and the queue's channel moves one pointer per submission.
pub struct Submission(Option<Box<SubmissionBody>>);

/// What a submission holds.
#[derive(Default)]
pub struct SubmissionBody {
    /// Semaphores to wait on, then semaphores to signal, with their values.
    pub semaphores: SemaphoreList,
    /// How many of `semaphores` are waits.
    pub wait_count: usize,
    /// The commands, in order.
    pub commands: Vec<Command>,
    /// A command list's commands (as they were at submit), run after `commands`.
    pub list: Option<Arc<ListBody>>,
    /// The device the command list belongs to.
    pub list_device: Option<u32>,
}

/// Finished submission bodies kept for reuse: enough for every queue of a busy process to
/// keep a few submissions in flight; beyond it, a finished body is freed.
const POOLED_BODIES: usize = 256;

/// A recycled body keeps at most this many command slots; a larger vector is freed, so a
/// single long submission does not pin its memory in the pool.
const POOLED_COMMANDS: usize = 64;

static POOL: LazyLock<ArrayQueue<Box<SubmissionBody>>> =
    LazyLock::new(|| ArrayQueue::new(POOLED_BODIES));

impl Submission {
    /// An empty submission, on a recycled body when the pool has one.
    fn new() -> Submission {
        Submission(Some(POOL.pop().unwrap_or_default()))
    }
}

impl Deref for Submission {
    type Target = SubmissionBody;

    fn deref(&self) -> &SubmissionBody {
        self.0
            .as_deref()
            .expect("a submission has its body until it is dropped")
    }
}

impl DerefMut for Submission {
    fn deref_mut(&mut self) -> &mut SubmissionBody {
        self.0
            .as_deref_mut()
            .expect("a submission has its body until it is dropped")
    }
}

impl Drop for Submission {
    fn drop(&mut self) {
        let Some(mut body) = self.0.take() else {
            return;
        };
        // Semaphores, command-list bodies and peer devices are released here, as before.
        body.semaphores.clear();
        body.wait_count = 0;
        body.list = None;
        body.list_device = None;
        if body.commands.capacity() > POOLED_COMMANDS {
            body.commands = Vec::new();
        } else {
            body.commands.clear();
        }
        // A full pool frees the body.
        let _ = POOL.push(body);
    }
}

/// The validated commands of a command list, shared by the list and its pending submissions.
pub struct ListBody(pub Vec<Command>);

// SAFETY: a list's raw pointers are host memory and callback arguments that the submitter
// keeps valid while submissions of the list are pending (ABI contract); the driver reads them
// only on the worker thread that runs a submission.
unsafe impl Send for ListBody {}
// SAFETY: as above: shared between the list and its submissions, never mutated in place.
unsafe impl Sync for ListBody {}

/// A command list object: which device it belongs to and its current commands.
pub struct CommandList {
    /// The device index.
    pub device: u32,
    /// The commands; an update swaps in a new body, so pending submissions keep theirs.
    pub body: parking_lot::Mutex<Arc<ListBody>>,
}

/// Validates `count` commands laid out `commands[0].struct_size` bytes apart.
///
/// # Safety
/// - `commands` must be null (with `count` 0) or point to `count` commands of the stated
///   size, whose kernel parameter pointers are readable for their sizes.
pub unsafe fn commands_from(
    driver: &Driver,
    commands: *const KnpuCommand,
    count: u32,
) -> Result<Vec<Command>, KnpuStatus> {
    let mut out = Vec::with_capacity(count as usize);
    // SAFETY: forwarded from the caller.
    unsafe { commands_into(driver, commands, count, &mut out) }?;
    Ok(out)
}

/// Validates `count` commands laid out `commands[0].struct_size` bytes apart and appends
/// them to `out`.
///
/// # Safety
/// - As for [`commands_from`].
unsafe fn commands_into(
    driver: &Driver,
    commands: *const KnpuCommand,
    count: u32,
    out: &mut Vec<Command>,
) -> Result<(), KnpuStatus> {
    if count == 0 {
        return Ok(());
    }
    if commands.is_null() {
        return Err(KNPU_STATUS_INVALID_VALUE);
    }
    // The array's stride is the caller's sizeof(KnpuCommand), which its struct_size states; a
    // later ABI minor may have appended fields this driver does not read.
    // SAFETY: non-null, and the caller guarantees at least one command.
    let stride = unsafe { std::ptr::addr_of!((*commands).struct_size).read_unaligned() };
    if stride < std::mem::size_of::<KnpuCommand>() {
        return Err(KNPU_STATUS_INVALID_VALUE);
    }
    out.reserve(count as usize);
    let base = commands as *const u8;
    for i in 0..count as usize {
        // SAFETY: the caller guarantees count commands of struct_size bytes each; each is read
        // as this version's prefix, without assuming alignment.
        let raw = unsafe { (base.add(i * stride) as *const KnpuCommand).read_unaligned() };
        if raw.struct_size != stride {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
        // SAFETY: forwarded from the caller's guarantee about kernel params.
        out.push(unsafe { command(driver, &raw) }?);
    }
    Ok(())
}

// SAFETY: a submission's body moves to the queue's worker thread. Its raw pointers are host
// memory and callback arguments that the submitter handed to the driver under the ABI's
// contract (valid until the submission completes, callbacks run on a driver thread); the
// driver only uses them on that one worker thread. A body in the recycling pool holds no
// commands, so nothing of it is used on the thread that takes it next.
unsafe impl Send for SubmissionBody {}

impl SubmissionBody {
    /// The wait semaphores.
    pub fn waits(&self) -> impl Iterator<Item = &(Arc<Semaphore>, u64)> {
        self.semaphores.iter().take(self.wait_count)
    }

    /// The signal semaphores.
    pub fn signals(&self) -> impl Iterator<Item = &(Arc<Semaphore>, u64)> {
        self.semaphores.iter().skip(self.wait_count)
    }
}

/// Reads `count` items of `T` at `ptr`; `INVALID_VALUE` when a non-empty array is null.
///
/// # Safety
/// - When `count > 0` and `ptr` is non-null, `ptr` must point to `count` readable `T`.
unsafe fn array<'a, T>(ptr: *const T, count: u32) -> Result<&'a [T], KnpuStatus> {
    if count == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(KNPU_STATUS_INVALID_VALUE);
    }
    // SAFETY: non-null and, by the caller's guarantee, `count` readable items.
    Ok(unsafe { std::slice::from_raw_parts(ptr, count as usize) })
}

/// A caller's versioned ABI struct, read once its `struct_size` (the first field of every
/// versioned struct of the ABI) shows at least the fields ending at `min_end`;
/// `INVALID_VALUE` when `p` is null or the struct is older.
///
/// # Safety
/// - `p` must be null or point to a readable `T` of at least its `struct_size` bytes.
pub(crate) unsafe fn read_versioned<T>(p: *const T, min_end: usize) -> Result<T, KnpuStatus> {
    if p.is_null() {
        return Err(KNPU_STATUS_INVALID_VALUE);
    }
    // SAFETY: non-null; `struct_size` comes first and is read before the rest is trusted.
    let size = unsafe { p.cast::<usize>().read_unaligned() };
    if !has_field(size, min_end) {
        return Err(KNPU_STATUS_INVALID_VALUE);
    }
    // SAFETY: the struct holds this version's fields (the caller's contract).
    Ok(unsafe { p.read_unaligned() })
}

/// Validates `info` and builds the owned submission.
///
/// # Safety
/// - `info` must be null or point to a readable `KnpuSubmitInfo` of at least
///   `info.struct_size` bytes whose arrays hold the counts it states, each command at least
///   `struct_size` bytes, and each kernel's `params` pointing to `params_size` readable bytes.
pub unsafe fn build(
    driver: &Driver,
    info: *const KnpuSubmitInfo,
) -> Result<Submission, KnpuStatus> {
    // SAFETY: the caller's contract for `info`.
    let info = unsafe { read_versioned(info, field_end!(KnpuSubmitInfo, signal_values)) }?;
    let struct_size = info.struct_size;
    // SAFETY: the caller guarantees the arrays hold the counts stated.
    let (wait_sems, wait_values, signal_sems, signal_values) = unsafe {
        (
            array(info.wait_semaphores, info.wait_count)?,
            array(info.wait_values, info.wait_count)?,
            array(info.signal_semaphores, info.signal_count)?,
            array(info.signal_values, info.signal_count)?,
        )
    };
    let mut s = Submission::new();
    for (&sem, &v) in wait_sems
        .iter()
        .zip(wait_values)
        .chain(signal_sems.iter().zip(signal_values))
    {
        let sem = driver
            .semaphores
            .get(sem as usize)
            .ok_or(KNPU_STATUS_INVALID_HANDLE)?;
        s.semaphores.push((sem, v));
    }
    if signal_values.contains(&SEMAPHORE_FAILED) {
        return Err(KNPU_STATUS_INVALID_VALUE);
    }
    s.wait_count = wait_sems.len();
    // SAFETY: the caller guarantees the array holds command_count commands.
    unsafe { commands_into(driver, info.commands, info.command_count, &mut s.commands) }?;
    if has_field(struct_size, field_end!(KnpuSubmitInfo, command_list))
        && !info.command_list.is_null()
    {
        let l = driver
            .command_lists
            .get(info.command_list as usize)
            .ok_or(KNPU_STATUS_INVALID_HANDLE)?;
        s.list = Some(l.body.lock().clone());
        s.list_device = Some(l.device);
    }
    Ok(s)
}

/// Validates one command.
///
/// # Safety
/// - For a kernel command, `params` must point to `params_size` readable bytes.
unsafe fn command(driver: &Driver, raw: &KnpuCommand) -> Result<Command, KnpuStatus> {
    const INVALID: KnpuStatus = KNPU_STATUS_INVALID_VALUE;
    if raw.flags != 0 {
        return Err(INVALID);
    }
    let host_needed = |null: bool, size: u64| {
        if size > 0 && null {
            Err(INVALID)
        } else {
            Ok(())
        }
    };
    // SAFETY (for every union read below): the union is plain data, and `type_` names the
    // member the caller filled; any bit pattern is a valid value of each member.
    Ok(match raw.type_ {
        KNPU_COMMAND_COPY_HOST_TO_DEVICE => {
            // SAFETY: see above.
            let c = unsafe { raw.u.copy };
            host_needed(c.host_src.is_null(), c.size)?;
            Command::CopyHostToDevice {
                src: HostPtr(c.host_src as *mut u8),
                dst: c.dst,
                size: c.size,
            }
        }
        KNPU_COMMAND_COPY_DEVICE_TO_HOST => {
            // SAFETY: see above.
            let c = unsafe { raw.u.copy };
            host_needed(c.host_dst.is_null(), c.size)?;
            Command::CopyDeviceToHost {
                src: c.src,
                dst: HostPtr(c.host_dst as *mut u8),
                size: c.size,
            }
        }
        KNPU_COMMAND_COPY_DEVICE_TO_DEVICE => {
            // SAFETY: see above.
            let c = unsafe { raw.u.copy };
            Command::CopyDeviceToDevice {
                src: c.src,
                dst: c.dst,
                size: c.size,
            }
        }
        KNPU_COMMAND_COPY_PEER => {
            // SAFETY: see above.
            let c = unsafe { raw.u.copy };
            Command::CopyPeer {
                peer: driver.device(c.peer_device as usize)?.clone(),
                src: c.src,
                dst: c.dst,
                size: c.size,
            }
        }
        KNPU_COMMAND_FILL => {
            // SAFETY: see above.
            let f = unsafe { raw.u.fill };
            if !matches!(f.pattern_size, 1 | 2 | 4 | 8) || f.size % f.pattern_size as u64 != 0 {
                return Err(INVALID);
            }
            Command::Fill {
                dst: f.dst,
                size: f.size,
                pattern: f.pattern,
                pattern_size: f.pattern_size,
            }
        }
        KNPU_COMMAND_KERNEL => {
            // SAFETY: see above.
            let k = unsafe { raw.u.kernel };
            let kernel = kernels::find(k.kernel_id).ok_or(KNPU_STATUS_NOT_SUPPORTED)?;
            if k.params.is_null() || k.params_size == 0 {
                return Err(INVALID);
            }
            // SAFETY: non-null and, by the caller's guarantee, params_size readable bytes.
            let bytes = unsafe { std::slice::from_raw_parts(k.params as *const u8, k.params_size) };
            (kernel.validate)(bytes)?;
            Command::Kernel {
                kernel,
                params: ParamBytes::copy_from(bytes),
            }
        }
        KNPU_COMMAND_HOST_FUNCTION => {
            // SAFETY: see above.
            let h = unsafe { raw.u.host_function };
            Command::HostFunction {
                func: h.fn_.ok_or(INVALID)?,
                user_data: h.user_data,
            }
        }
        KNPU_COMMAND_TIMESTAMP => {
            // SAFETY: see above.
            let t = unsafe { raw.u.timestamp };
            if t.host_dst.is_null() || !t.host_dst.is_aligned() {
                return Err(INVALID);
            }
            Command::Timestamp { dst: t.host_dst }
        }
        _ => return Err(INVALID),
    })
}
