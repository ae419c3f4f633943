//! Fuzzes the software NPU's `queue_submit` through its C driver table: arbitrary commands
//! (copy, fill, kernel, host function, timestamp and unknown types), struct sizes, device
//! addresses, lengths, kernel ids and parameter structs. Host pointers, which the ABI makes
//! the caller's obligation, always point into buffers this target owns and are never
//! shorter than the length that goes with them. Every submission must be refused with a
//! status or complete (its semaphore signalled or failed) within a bounded time: a crash, a
//! panic crossing the table or a hang is a finding.
#![no_main]

use knpu_driver_abi::{self as abi, SizedStruct};
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

mod input;
use input::Input;

// The API table holds raw pointers (not `Sync`), so it is fetched per call, not kept here.
struct Env {
    queue: usize,
    sem: AtomicUsize,
    next: AtomicU64,
    buffers: Vec<(u64, u64)>,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let api = knpu_driver_sim::api();
        let mut dev: abi::KnpuDriverDevice = std::ptr::null_mut();
        let mut queue: abi::KnpuQueue = std::ptr::null_mut();
        let mut sem: abi::KnpuSemaphore = std::ptr::null_mut();
        let mut buffers = Vec::new();
        // SAFETY: valid out-pointers, table functions of the built-in driver.
        unsafe {
            assert_eq!(
                (api.device_get.unwrap())(0, &mut dev),
                abi::KNPU_STATUS_SUCCESS
            );
            assert_eq!(
                (api.queue_create.unwrap())(dev, abi::KNPU_QUEUE_PRIORITY_NORMAL, &mut queue),
                abi::KNPU_STATUS_SUCCESS
            );
            assert_eq!(
                (api.semaphore_create.unwrap())(dev, 0, &mut sem),
                abi::KNPU_STATUS_SUCCESS
            );
            for size in [256u64, 4096, 1 << 16] {
                let mut addr = 0;
                assert_eq!(
                    (api.mem_alloc.unwrap())(dev, size, &mut addr),
                    abi::KNPU_STATUS_SUCCESS
                );
                buffers.push((addr, size));
            }
        }
        Env {
            queue: queue as usize,
            sem: AtomicUsize::new(sem as usize),
            next: AtomicU64::new(0),
            buffers,
        }
    })
}

const HOST: usize = 1 << 16;

unsafe extern "C" fn host_fn(user: *mut std::os::raw::c_void, _status: abi::KnpuStatus) {
    // SAFETY: `user` is the counter this target passed; it lives in a static.
    let counter = unsafe { &*(user as *const AtomicU64) };
    counter.fetch_add(1, Ordering::Relaxed);
}

static CALLS: AtomicU64 = AtomicU64::new(0);

fuzz_target!(|data: &[u8]| {
    let e = env();
    let mut inp = Input(data);
    let host_src = vec![0x5au8; HOST];
    let mut host_dst = vec![0u8; HOST];
    let params: Vec<u8> = (0..256).map(|_| inp.u8()).collect();
    let stamp = Box::new(AtomicU64::new(0));
    let count = 1 + inp.u8() as usize % 8;
    let mut cmds = Vec::with_capacity(count);
    for _ in 0..count {
        let mut c = abi::KnpuCommand::sized();
        match inp.u8() % 4 {
            0 => c.struct_size = inp.u16() as usize,
            1 => c.struct_size = std::mem::size_of::<abi::KnpuCommand>() + inp.u8() as usize,
            _ => {}
        }
        let kind = inp.u8();
        c.type_ = if kind < 240 {
            u32::from(kind % 7)
        } else {
            inp.u32()
        };
        c.flags = if inp.u8() == 0 { inp.u32() } else { 0 };
        let addr = |inp: &mut Input| -> u64 {
            match inp.u8() % 4 {
                0 => inp.u64(),
                _ => {
                    let (base, size) = e.buffers[inp.u8() as usize % e.buffers.len()];
                    base.wrapping_add(u64::from(inp.u16()) % (size + 512))
                }
            }
        };
        let len = |inp: &mut Input| -> u64 {
            match inp.u8() % 8 {
                0 => inp.u64(),
                _ => u64::from(inp.u16()) % (HOST as u64 + 1),
            }
        };
        match c.type_ {
            abi::KNPU_COMMAND_COPY_HOST_TO_DEVICE
            | abi::KNPU_COMMAND_COPY_DEVICE_TO_HOST
            | abi::KNPU_COMMAND_COPY_DEVICE_TO_DEVICE
            | abi::KNPU_COMMAND_COPY_PEER => {
                let mut size = len(&mut inp);
                let host_side = matches!(
                    c.type_,
                    abi::KNPU_COMMAND_COPY_HOST_TO_DEVICE | abi::KNPU_COMMAND_COPY_DEVICE_TO_HOST
                );
                if host_side {
                    size %= HOST as u64 + 1;
                }
                c.u.copy = abi::KnpuCopyCommand {
                    src: addr(&mut inp),
                    dst: addr(&mut inp),
                    host_src: if inp.u8() % 8 == 0 {
                        std::ptr::null()
                    } else {
                        host_src.as_ptr().cast()
                    },
                    host_dst: if inp.u8() % 8 == 0 {
                        std::ptr::null_mut()
                    } else {
                        host_dst.as_mut_ptr().cast()
                    },
                    size,
                    peer_device: std::ptr::null_mut(),
                };
            }
            abi::KNPU_COMMAND_FILL => {
                c.u.fill = abi::KnpuFillCommand {
                    dst: addr(&mut inp),
                    size: len(&mut inp),
                    pattern: inp.u64(),
                    pattern_size: u32::from(inp.u8() % 10),
                };
            }
            abi::KNPU_COMMAND_KERNEL => {
                let id = inp.u8();
                c.u.kernel = abi::KnpuKernelCommand {
                    kernel_id: if id < 200 {
                        u32::from(id % 40)
                    } else {
                        inp.u32()
                    },
                    params: if inp.u8() % 16 == 0 {
                        std::ptr::null()
                    } else {
                        params.as_ptr().cast()
                    },
                    params_size: inp.u16() as usize % (params.len() + 1),
                };
            }
            abi::KNPU_COMMAND_HOST_FUNCTION => {
                c.u.host_function = abi::KnpuHostFunctionCommand {
                    fn_: if inp.u8() % 4 == 0 {
                        None
                    } else {
                        Some(host_fn)
                    },
                    user_data: &CALLS as *const AtomicU64 as *mut _,
                };
            }
            abi::KNPU_COMMAND_TIMESTAMP => {
                c.u.timestamp = abi::KnpuTimestampCommand {
                    host_dst: if inp.u8() % 4 == 0 {
                        std::ptr::null_mut()
                    } else {
                        stamp.as_ptr()
                    },
                };
            }
            _ => {}
        }
        cmds.push(c);
    }
    let value = e.next.load(Ordering::Relaxed) + 1;
    let sem = e.sem.load(Ordering::Relaxed) as abi::KnpuSemaphore;
    let wait_value = value - 1;
    let mut info = abi::KnpuSubmitInfo::sized();
    if inp.u8() % 4 == 0 {
        info.struct_size = inp.u8() as usize;
    }
    info.command_count = if inp.u8() % 16 == 0 {
        inp.u32() % 9
    } else {
        cmds.len() as u32
    };
    info.command_count = info.command_count.min(cmds.len() as u32);
    // The array's stride is the first command's struct_size (the caller's sizeof); honour the
    // ABI's obligation that `count` commands of that size are readable by laying the commands
    // out at that stride in a buffer this target owns, with zeroed tails.
    let size = std::mem::size_of::<abi::KnpuCommand>();
    let stride = cmds.first().map_or(size, |c| c.struct_size.max(size));
    let mut array = vec![0u8; stride * cmds.len().max(1)];
    for (i, c) in cmds.iter().enumerate() {
        // SAFETY: `array` holds `cmds.len()` slots of `stride >= size` bytes; the write is
        // unaligned-safe.
        unsafe {
            (array.as_mut_ptr().add(i * stride) as *mut abi::KnpuCommand).write_unaligned(*c)
        };
    }
    info.commands = array.as_ptr().cast();
    let waits = [sem];
    let wait_values = [wait_value];
    if inp.u8() % 2 == 0 {
        info.wait_count = 1;
        info.wait_semaphores = waits.as_ptr();
        info.wait_values = wait_values.as_ptr();
    }
    let signals = [sem];
    let signal_values = [value];
    info.signal_count = 1;
    info.signal_semaphores = signals.as_ptr();
    info.signal_values = signal_values.as_ptr();
    // SAFETY: every pointer above is valid for the lengths passed with it and outlives the
    // wait below, which ends only once the submission has completed.
    let status =
        unsafe { (knpu_driver_sim::api().queue_submit.unwrap())(e.queue as abi::KnpuQueue, &info) };
    if status != abi::KNPU_STATUS_SUCCESS {
        return;
    }
    e.next.store(value, Ordering::Relaxed);
    // SAFETY: the semaphore handle is live for the whole run.
    let w = unsafe { (knpu_driver_sim::api().semaphore_wait.unwrap())(sem, value, 10_000_000_000) };
    assert_ne!(
        w,
        abi::KNPU_STATUS_TIMEOUT,
        "a submission did not complete in 10 s"
    );
    if w != abi::KNPU_STATUS_SUCCESS {
        // A failed semaphore stays failed: start the timeline again on a fresh one.
        let mut dev: abi::KnpuDriverDevice = std::ptr::null_mut();
        let mut fresh: abi::KnpuSemaphore = std::ptr::null_mut();
        // SAFETY: valid out-pointers; the old semaphore is no longer used by any work.
        unsafe {
            (knpu_driver_sim::api().device_get.unwrap())(0, &mut dev);
            (knpu_driver_sim::api().semaphore_create.unwrap())(dev, 0, &mut fresh);
            (knpu_driver_sim::api().semaphore_destroy.unwrap())(sem);
        }
        e.sem.store(fresh as usize, Ordering::Relaxed);
        e.next.store(0, Ordering::Relaxed);
    }
    drop(array);
    drop(stamp);
    drop(host_src);
    drop(host_dst);
});
