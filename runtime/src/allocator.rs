//! The caching device allocator, in the spirit of PyTorch's CUDA caching allocator.
//!
//! Device memory comes from the driver in segments; buffers are blocks carved out of them.
//! A freed block goes back to a cache, not to the driver, so the next allocation of a
//! similar size costs a few hundred nanoseconds of bookkeeping instead of a driver call.
//!
//! - Sizes round up to 512 bytes. Requests up to 1 MiB come from 2 MiB "small" segments;
//!   larger ones from 20 MiB segments (up to 10 MiB) or from a segment of their own size
//!   rounded to 2 MiB. Blocks split when the rest is worth keeping and coalesce with free
//!   neighbours of the same segment when freed.
//! - Stream-ordered reuse: a block freed while its stream still has work queued may be
//!   reused at once by that same stream (its queue is in order), but by another stream only
//!   after the freeing stream's work up to the free — and every other stream that used the
//!   block — has finished. The allocator never waits for that on the hot path; it skips
//!   blocks that are not ready yet.
//! - On exhaustion it releases every cached segment it can and retries once, then reports
//!   what was requested and what is allocated, reserved and free.
//!
//! It never touches memory contents: device memory is not host-addressable.

use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::semaphore::Semaphore;
use knpu_driver_abi as abi;
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const ROUND: u64 = 512;
const SMALL_REQUEST: u64 = 1 << 20;
const SMALL_SEGMENT: u64 = 2 << 20;
const MEDIUM_REQUEST: u64 = 10 << 20;
const MEDIUM_SEGMENT: u64 = 20 << 20;
const LARGE_ROUND: u64 = 2 << 20;
/// A large-pool block splits only when the rest is at least this big.
const LARGE_MIN_SPLIT: u64 = 1 << 20;
/// How many free candidates an allocation examines before making a new segment.
const SCAN_LIMIT: usize = 32;

/// Work that must finish before a freed block may be reused by another stream.
#[derive(Clone)]
pub(crate) struct Pending {
    pub(crate) stream: u64,
    pub(crate) sem: Arc<Semaphore>,
    pub(crate) value: u64,
}

/// What the caller of [`Allocator::alloc`] gets: a block's address and rounded size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Allocation {
    pub(crate) addr: u64,
    pub(crate) size: u64,
}

struct Block {
    size: u64,
    requested: u64,
    segment: u64,
    small: bool,
    free: bool,
    /// For a free block: work other streams must see finished before reusing it.
    pending: Vec<Pending>,
}

/// Allocator statistics, like PyTorch's `torch.cuda.memory_stats()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes in live buffers (rounded block sizes).
    pub allocated_bytes: u64,
    /// Highest `allocated_bytes` since the last peak reset.
    pub peak_allocated_bytes: u64,
    /// Bytes asked for by live buffers (before rounding).
    pub requested_bytes: u64,
    /// Bytes held from the driver: live plus cached.
    pub reserved_bytes: u64,
    /// Highest `reserved_bytes` since the last peak reset.
    pub peak_reserved_bytes: u64,
    /// Live buffers.
    pub active_blocks: u64,
    /// Free blocks held in the cache.
    pub cached_blocks: u64,
    /// Segments obtained from the driver and still held.
    pub segments: u64,
    /// Allocations served so far.
    pub num_allocs: u64,
    /// Frees so far.
    pub num_frees: u64,
    /// Driver allocations made (segments created).
    pub num_segment_allocs: u64,
    /// Segments returned to the driver.
    pub num_segment_frees: u64,
    /// Times the cache was released to retry an allocation the driver refused.
    pub num_alloc_retries: u64,
    /// Allocations that failed for lack of memory after the retry.
    pub num_ooms: u64,
}

impl MemoryStats {
    /// Bytes cached: reserved but not allocated.
    pub fn cached_bytes(&self) -> u64 {
        self.reserved_bytes - self.allocated_bytes
    }
}

struct State {
    blocks: BTreeMap<u64, Block>,
    free_small: BTreeSet<(u64, u64)>,
    free_large: BTreeSet<(u64, u64)>,
    segments: BTreeMap<u64, u64>,
    /// Segments returned to the driver, `(base, size)`, newest last.
    released: std::collections::VecDeque<(u64, u64)>,
    stats: MemoryStats,
}

/// The caching allocator of one device.
pub(crate) struct Allocator {
    driver: Arc<Driver>,
    device: abi::KnpuDriverDevice,
    ordinal: usize,
    state: Mutex<State>,
}

// SAFETY: the raw device handle may be used from any thread (driver ABI); all mutable state
// is behind the mutex.
unsafe impl Send for Allocator {}
// SAFETY: as above.
unsafe impl Sync for Allocator {}

/// `v` rounded up to a multiple of `to`; `None` when that does not fit in 64 bits.
fn round_up(v: u64, to: u64) -> Option<u64> {
    v.div_ceil(to).checked_mul(to)
}

/// How many segments returned to the driver are remembered, to tell a freed address from one
/// that was never allocated.
const RELEASED_HISTORY: usize = 256;

/// The live allocation that holds a device address range, from [`crate::Device::resolve_range`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocationRange {
    /// The allocation's first device address (what the allocating call returned).
    pub base: u64,
    /// The bytes the allocation was asked for (its usable size; the block may be larger).
    pub size: u64,
    /// The range's offset from `base`.
    pub offset: u64,
}

impl State {
    fn new() -> State {
        State {
            blocks: BTreeMap::new(),
            free_small: BTreeSet::new(),
            free_large: BTreeSet::new(),
            segments: BTreeMap::new(),
            released: std::collections::VecDeque::new(),
            stats: MemoryStats::default(),
        }
    }

    fn free_set(&mut self, small: bool) -> &mut BTreeSet<(u64, u64)> {
        if small {
            &mut self.free_small
        } else {
            &mut self.free_large
        }
    }

    /// Finds a free block of at least `size` in the pool that `stream` may use now.
    fn find(&mut self, size: u64, small: bool, stream: u64) -> Option<u64> {
        let set = if small {
            &self.free_small
        } else {
            &self.free_large
        };
        let mut found = None;
        for &(_, addr) in set.range((size, 0)..).take(SCAN_LIMIT) {
            let b = self
                .blocks
                .get_mut(&addr)
                .expect("free set names a live block");
            // Work that finished no longer matters; work of the allocating stream itself is
            // ordered before anything it queues next.
            if !b.pending.iter().all(|p| p.stream == stream) {
                b.pending.retain(|p| !p.sem.reached(p.value));
            }
            if b.pending.iter().all(|p| p.stream == stream) {
                found = Some(addr);
                break;
            }
        }
        found
    }

    fn resolve(&self, dev: usize, addr: u64, len: u64) -> Result<AllocationRange> {
        let st = self;
        let Some((&base, b)) = st.blocks.range(..=addr).next_back() else {
            return Err(st.unknown_address(dev, addr));
        };
        if addr >= base + b.size {
            return Err(st.unknown_address(dev, addr));
        }
        if b.free {
            return Err(Error::invalid(format!(
                "device address {addr:#x} on device {dev} is in memory that was freed (a block \
                 of {} bytes at {base:#x} cached by the allocator)",
                b.size
            )));
        }
        let offset = addr - base;
        let in_bounds = offset <= b.requested && len <= b.requested - offset;
        if !in_bounds {
            return Err(Error::invalid(format!(
                "device range {addr:#x}..+{len} on device {dev} runs past the end of the \
                 {}-byte allocation at {base:#x} (offset {offset})",
                b.requested
            )));
        }
        Ok(AllocationRange {
            base,
            size: b.requested,
            offset,
        })
    }

    /// Adds a segment obtained from the driver and takes a `size`-byte block from it.
    fn add_segment(
        &mut self,
        base: u64,
        segment_size: u64,
        small: bool,
        size: u64,
        requested: u64,
    ) -> Allocation {
        self.segments.insert(base, segment_size);
        let end = base.saturating_add(segment_size);
        self.released
            .retain(|&(b, s)| b.saturating_add(s) <= base || b >= end);
        let stats = &mut self.stats;
        stats.reserved_bytes += segment_size;
        stats.peak_reserved_bytes = stats.peak_reserved_bytes.max(stats.reserved_bytes);
        stats.segments += 1;
        stats.num_segment_allocs += 1;
        self.blocks.insert(
            base,
            Block {
                size: segment_size,
                requested: 0,
                segment: base,
                small,
                free: true,
                pending: Vec::new(),
            },
        );
        self.free_set(small).insert((segment_size, base));
        self.take_allocation(base, size, requested)
    }

    /// Segments whose one block is free: `(base, size)`.
    fn wholly_free(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.segments
            .iter()
            .filter(|(&base, &size)| {
                self.blocks
                    .get(&base)
                    .is_some_and(|b| b.free && b.size == size)
            })
            .map(|(&b, &s)| (b, s))
    }

    /// The error for an address in no block: freed (its segment went back to the driver)
    /// or never allocated.
    fn unknown_address(&self, dev: usize, addr: u64) -> Error {
        let freed = self
            .released
            .iter()
            .rev()
            .find(|&&(b, s)| addr >= b && addr - b < s);
        match freed {
            Some(&(b, s)) => Error::invalid(format!(
                "device address {addr:#x} on device {dev} is in memory that was freed (a \
                 {s}-byte segment at {b:#x} returned to the driver)"
            )),
            None => Error::invalid(format!(
                "device address {addr:#x} is not in any allocation of device {dev}"
            )),
        }
    }

    /// [`State::take`], returning what the caller gets.
    fn take_allocation(&mut self, addr: u64, size: u64, requested: u64) -> Allocation {
        self.take(addr, size, requested);
        Allocation {
            addr,
            size: self.blocks[&addr].size,
        }
    }

    /// Takes free block `addr` for a `size`-byte allocation, splitting off the rest.
    fn take(&mut self, addr: u64, size: u64, requested: u64) {
        let (bsize, small) = {
            let b = &self.blocks[&addr];
            (b.size, b.small)
        };
        self.free_set(small).remove(&(bsize, addr));
        let rest = bsize - size;
        let min_split = if small { ROUND } else { LARGE_MIN_SPLIT };
        let b = self.blocks.get_mut(&addr).expect("block exists");
        let keep = if rest >= min_split { size } else { bsize };
        b.size = keep;
        b.free = false;
        b.requested = requested;
        let pending = std::mem::take(&mut b.pending);
        let segment = b.segment;
        if keep < bsize {
            let raddr = addr + keep;
            self.blocks.insert(
                raddr,
                Block {
                    size: rest,
                    requested: 0,
                    segment,
                    small,
                    free: true,
                    pending,
                },
            );
            self.free_set(small).insert((rest, raddr));
        }
        let s = &mut self.stats;
        s.allocated_bytes += keep;
        s.peak_allocated_bytes = s.peak_allocated_bytes.max(s.allocated_bytes);
        s.requested_bytes += requested;
        s.active_blocks += 1;
        s.num_allocs += 1;
        s.cached_blocks = (self.free_small.len() + self.free_large.len()) as u64;
    }

    /// Returns a block to the cache and merges it with free neighbours of its segment,
    /// whichever streams freed them: the merged block carries every neighbour's pending
    /// work, so no stream reuses any part of it before that work is done.
    fn release(&mut self, addr: u64, pending: Vec<Pending>) {
        let b = self
            .blocks
            .get_mut(&addr)
            .expect("freeing a block the allocator owns");
        debug_assert!(!b.free, "double free of block {addr:#x}");
        b.free = true;
        b.pending = pending;
        let (mut start, mut size, segment, small) = (addr, b.size, b.segment, b.small);
        self.stats.allocated_bytes -= size;
        self.stats.requested_bytes -= b.requested;
        self.stats.active_blocks -= 1;
        self.stats.num_frees += 1;

        // Merge the next block into this one.
        let next_addr = start + size;
        if let Some(n) = self.blocks.get(&next_addr) {
            if n.free && n.segment == segment {
                let n = self.blocks.remove(&next_addr).expect("present");
                self.free_set(small).remove(&(n.size, next_addr));
                size += n.size;
                let b = self.blocks.get_mut(&start).expect("present");
                b.size = size;
                merge_pending(&mut b.pending, n.pending);
            }
        }
        // Merge this block into the previous one.
        let prev = self.blocks.range(..start).next_back().map(|(&a, p)| {
            (
                a,
                p.size,
                p.free && p.segment == segment && a + p.size == start,
            )
        });
        if let Some((paddr, psize, mergeable)) = prev {
            if mergeable {
                let me = self.blocks.remove(&start).expect("present");
                self.free_set(small).remove(&(psize, paddr));
                let p = self.blocks.get_mut(&paddr).expect("present");
                p.size += me.size;
                merge_pending(&mut p.pending, me.pending);
                start = paddr;
                size = p.size;
            }
        }
        self.free_set(small).insert((size, start));
        self.stats.cached_blocks = (self.free_small.len() + self.free_large.len()) as u64;
    }
}

fn merge_pending(into: &mut Vec<Pending>, from: Vec<Pending>) {
    for p in from {
        match into.iter_mut().find(|q| Arc::ptr_eq(&q.sem, &p.sem)) {
            Some(q) => q.value = q.value.max(p.value),
            None => into.push(p),
        }
    }
}

impl Allocator {
    pub(crate) fn new(
        driver: Arc<Driver>,
        device: abi::KnpuDriverDevice,
        ordinal: usize,
    ) -> Allocator {
        Allocator {
            driver,
            device,
            ordinal,
            state: Mutex::new(State::new()),
        }
    }

    /// Allocates at least `bytes` (> 0) for use on `stream`.
    ///
    /// The allocator lock is never held while waiting for device work: when the driver is
    /// out of memory, the cache is released (waiting for the work pending on it outside the
    /// lock) and the allocation tried again.
    pub(crate) fn alloc(&self, bytes: u64, stream: u64) -> Result<Allocation> {
        debug_assert!(bytes > 0);
        let Some(size) = round_up(bytes, ROUND) else {
            return Err(self.oom(&mut self.state.lock(), bytes));
        };
        let small = size <= SMALL_REQUEST;
        let segment_size = if small {
            SMALL_SEGMENT
        } else if size <= MEDIUM_REQUEST {
            MEDIUM_SEGMENT
        } else {
            match round_up(size, LARGE_ROUND) {
                Some(s) => s,
                None => return Err(self.oom(&mut self.state.lock(), bytes)),
            }
        };
        {
            let mut st = self.state.lock();
            if let Some(addr) = st.find(size, small, stream) {
                return Ok(st.take_allocation(addr, size, bytes));
            }
            // A request larger than the whole device can never be served: say so without
            // emptying the cache for nothing.
            if let Ok((_, total)) = self.driver.memory_info(self.device) {
                if total > 0 && size > total {
                    return Err(self.oom(&mut st, bytes));
                }
            }
            match self.driver.mem_alloc(self.device, segment_size) {
                Ok(base) => return Ok(st.add_segment(base, segment_size, small, size, bytes)),
                Err((status, _)) if status == abi::KNPU_STATUS_OUT_OF_MEMORY => {
                    st.stats.num_alloc_retries += 1;
                }
                Err((_, e)) => return Err(e),
            }
        }
        self.release_cache();
        let mut st = self.state.lock();
        // Blocks freed while the lock was released may serve the request now.
        if let Some(addr) = st.find(size, small, stream) {
            return Ok(st.take_allocation(addr, size, bytes));
        }
        // Retry the segment, then the bare request: a big segment may not fit where the
        // request itself would.
        match self.driver.mem_alloc(self.device, segment_size) {
            Ok(base) => Ok(st.add_segment(base, segment_size, small, size, bytes)),
            Err(_) if segment_size > size => match self.driver.mem_alloc(self.device, size) {
                Ok(base) => Ok(st.add_segment(base, size, small, size, bytes)),
                Err((s, e)) => Err(self.oom_or(&mut st, s, e, bytes)),
            },
            Err((s, e)) => Err(self.oom_or(&mut st, s, e, bytes)),
        }
    }

    fn oom_or(&self, st: &mut State, status: abi::KnpuStatus, e: Error, requested: u64) -> Error {
        if status != abi::KNPU_STATUS_OUT_OF_MEMORY {
            return e;
        }
        self.oom(st, requested)
    }

    fn oom(&self, st: &mut State, requested: u64) -> Error {
        st.stats.num_ooms += 1;
        let (free, total) = self.driver.memory_info(self.device).unwrap_or((0, 0));
        Error::OutOfMemory {
            device: self.ordinal,
            requested,
            allocated: st.stats.allocated_bytes,
            reserved: st.stats.reserved_bytes,
            free,
            total,
        }
    }

    /// Returns a block to the cache. `pending` is the work that must finish before another
    /// stream reuses it. Never waits, so it is safe from host callbacks.
    pub(crate) fn free(&self, addr: u64, pending: Vec<Pending>) {
        self.state.lock().release(addr, pending);
    }

    /// Returns every wholly free segment to the driver, waiting (without the allocator
    /// lock) for work pending on them; from a host callback, where waiting for device work
    /// could deadlock, only the segments whose work is already done.
    pub(crate) fn empty_cache(&self) {
        self.release_cache();
    }

    fn release_cache(&self) {
        if !crate::stream::in_host_callback() {
            let pending: Vec<Pending> = {
                let st = self.state.lock();
                st.wholly_free()
                    .flat_map(|(base, _)| st.blocks[&base].pending.clone())
                    .collect()
            };
            for p in pending {
                // A failed wait means the work is over (and was reported to its owner).
                let _ = p.sem.wait(p.value);
            }
        }
        let mut st = self.state.lock();
        self.release_ready(&mut st);
    }

    /// Returns to the driver every wholly free segment whose pending work is done.
    fn release_ready(&self, st: &mut State) {
        let whole: Vec<(u64, u64)> = st.wholly_free().collect();
        for (base, size) in whole {
            let b = st.blocks.get_mut(&base).expect("present");
            if !b.pending.iter().all(|p| p.sem.reached(p.value)) {
                continue;
            }
            if self.driver.mem_free(self.device, base).is_err() {
                continue;
            }
            let small = b.small;
            st.blocks.remove(&base);
            st.free_set(small).remove(&(size, base));
            st.segments.remove(&base);
            if st.released.len() == RELEASED_HISTORY {
                st.released.pop_front();
            }
            st.released.push_back((base, size));
            st.stats.reserved_bytes -= size;
            st.stats.segments -= 1;
            st.stats.num_segment_frees += 1;
        }
        st.stats.cached_blocks = (st.free_small.len() + st.free_large.len()) as u64;
    }

    /// The live allocation holding `[addr, addr + len)`; a clear error when the range is in
    /// no allocation, in a freed one, or runs past the end of the one it starts in.
    pub(crate) fn resolve(&self, addr: u64, len: u64) -> Result<AllocationRange> {
        self.state.lock().resolve(self.ordinal, addr, len)
    }

    pub(crate) fn stats(&self) -> MemoryStats {
        self.state.lock().stats
    }

    pub(crate) fn reset_peak_stats(&self) {
        let mut st = self.state.lock();
        st.stats.peak_allocated_bytes = st.stats.allocated_bytes;
        st.stats.peak_reserved_bytes = st.stats.reserved_bytes;
    }
}

#[cfg(test)]
mod tests {
    //! The allocator's bookkeeping without a driver: small enough for Miri.
    use super::*;

    const BASE: u64 = 1 << 44;

    #[test]
    fn sizes_that_overflow_round_to_none() {
        assert_eq!(round_up(u64::MAX, ROUND), None);
        assert_eq!(round_up(u64::MAX - 10, ROUND), None);
        assert_eq!(
            round_up(u64::MAX - ROUND, ROUND),
            Some(u64::MAX - ROUND + 1)
        );
        assert_eq!(round_up(1, ROUND), Some(ROUND));
        assert_eq!(round_up(0, ROUND), Some(0));
    }

    #[test]
    fn blocks_split_and_coalesce_whichever_streams_freed_them() {
        let mut st = State::new();
        let a = st.add_segment(BASE, SMALL_SEGMENT, true, 4096, 4000);
        assert_eq!(
            a,
            Allocation {
                addr: BASE,
                size: 4096
            }
        );
        let b_addr = st.find(4096, true, 2).expect("the rest of the segment");
        let b = st.take_allocation(b_addr, 4096, 4096);
        assert_eq!(b.addr, BASE + 4096);
        assert_eq!(st.stats.active_blocks, 2);
        st.release(a.addr, Vec::new());
        st.release(b.addr, Vec::new());
        assert_eq!(
            st.wholly_free().collect::<Vec<_>>(),
            vec![(BASE, SMALL_SEGMENT)]
        );
        assert_eq!(st.stats.allocated_bytes, 0);
        assert_eq!(st.stats.requested_bytes, 0);
        assert_eq!(st.blocks.len(), 1);
    }

    #[test]
    fn ranges_resolve_against_live_blocks_only() {
        let mut st = State::new();
        let a = st.add_segment(BASE, SMALL_SEGMENT, true, 512, 256);
        let r = st.resolve(0, a.addr + 16, 16).unwrap();
        assert_eq!((r.base, r.size, r.offset), (BASE, 256, 16));
        assert!(st.resolve(0, a.addr + 256, 0).is_ok());
        let past = st.resolve(0, a.addr + 200, 64).unwrap_err();
        assert!(past.to_string().contains("past the end"), "{past}");
        assert!(st.resolve(0, a.addr + 16, u64::MAX).is_err());
        let never = st.resolve(0, 64, 1).unwrap_err();
        assert!(
            never.to_string().contains("not in any allocation"),
            "{never}"
        );
        st.release(a.addr, Vec::new());
        let freed = st.resolve(0, a.addr, 1).unwrap_err();
        assert!(freed.to_string().contains("freed"), "{freed}");
        st.released.push_back((BASE + SMALL_SEGMENT, SMALL_SEGMENT));
        let gone = st.resolve(0, BASE + SMALL_SEGMENT + 8, 1).unwrap_err();
        assert!(
            gone.to_string().contains("returned to the driver"),
            "{gone}"
        );
    }
}
