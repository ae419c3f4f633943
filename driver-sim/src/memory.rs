//! A device's memory: its own address space and the table of live allocations.
//!
//! Device addresses are plain numbers in a range of the 64-bit space reserved per device
//! (device `i` starts at `(i + 1) << 44`), never host pointers. Each allocation is backed by
//! its own 64-byte aligned host block, allocated lazily (zeroed pages from the host cost
//! nothing until touched) and never moved until it is freed; blocks of 2 MiB and more are
//! mappings of their own in transparent huge pages where the host has them (see
//! `HUGE_PAGE`). Addresses are handed out upward
//! with an unmapped guard gap after every allocation and are not reused until the range is
//! exhausted, so an off-by-one or a use after free resolves to no allocation and becomes a
//! device fault, never an access to a neighbour.
//!
//! Every command resolves `(address, length)` through [`AddressSpace::resolve`]; the whole
//! range must lie in one live allocation. The table is guarded by a lock, but the host
//! pointer it returns is used after the lock is released: as on real hardware, freeing memory
//! that pending work still uses is the caller's bug (the ABI's `mem_free` contract).

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::ptr::NonNull;

use parking_lot::RwLock;

/// Alignment of every allocation's device address, in bytes.
pub const ALLOCATION_ALIGNMENT: u64 = 256;
/// Alignment of every allocation's host backing, in bytes.
pub const HOST_ALIGNMENT: usize = 64;
/// Unmapped bytes left after each allocation.
pub const GUARD_BYTES: u64 = 64 * 1024;
/// Size of the address range reserved for each device.
pub const DEVICE_SPAN: u64 = 1 << 44;
/// How many freed ranges are remembered to explain use-after-free faults.
const FREED_HISTORY: usize = 4096;

/// Host blocks at least this large are mapped on their own, aligned to it, and marked for
/// transparent huge pages (Linux). The runtime's allocator asks for segments of 2 MiB and
/// more, so every tensor it hands out lives in such a block: a decode step streams ~100 MB of
/// weights, and with 4 KiB pages the page walks cost it a third of its time (SmolLM2, one
/// thread: 9.6-10.8 ms a step on 4 KiB pages, 6.4-7.3 ms on huge pages, AMD EPYC Zen 4).
#[cfg(all(target_os = "linux", not(miri)))]
const HUGE_PAGE: usize = 2 << 20;

/// How a [`HostBlock`]'s memory was obtained.
enum Backing {
    /// From the global allocator with this layout.
    Heap(Layout),
    /// An anonymous mapping of this many bytes (a whole number of host pages) of its own.
    #[cfg(all(target_os = "linux", not(miri)))]
    Mapped(usize),
}

/// A 64-byte aligned, zero-initialised host block that never moves.
struct HostBlock {
    ptr: NonNull<u8>,
    backing: Backing,
}

// SAFETY: HostBlock owns its allocation exclusively (like Box<[u8]>); the raw pointer is only
// a handle to that memory, and concurrent access to the bytes is governed by the users of
// `AddressSpace::resolve`, not by the block.
unsafe impl Send for HostBlock {}
// SAFETY: as above; &HostBlock exposes only the pointer value.
unsafe impl Sync for HostBlock {}

impl HostBlock {
    fn new(size: u64) -> Option<HostBlock> {
        let size = usize::try_from(size).ok()?;
        #[cfg(all(target_os = "linux", not(miri)))]
        if size >= HUGE_PAGE {
            return HostBlock::mapped(size);
        }
        let layout = Layout::from_size_align(size, HOST_ALIGNMENT).ok()?;
        // SAFETY: layout has a non-zero size (callers reject size 0).
        let ptr = unsafe { alloc_zeroed(layout) };
        Some(HostBlock {
            ptr: NonNull::new(ptr)?,
            backing: Backing::Heap(layout),
        })
    }

    /// `size` bytes of fresh anonymous memory (zero until written, committed page by page as
    /// it is touched) starting on a [`HUGE_PAGE`] boundary, advised for huge pages. `None`
    /// when the host refuses the mapping.
    #[cfg(all(target_os = "linux", not(miri)))]
    fn mapped(size: usize) -> Option<HostBlock> {
        // SAFETY: sysconf only reads a configuration value.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
        let len = size.checked_next_multiple_of(page)?;
        // Map one huge page more than needed and unmap what lies outside the aligned part.
        let reserve = len.checked_add(HUGE_PAGE)?;
        // SAFETY: a new private anonymous mapping; no existing memory is affected.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserve,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let start = (raw as usize).next_multiple_of(HUGE_PAGE);
        let head = start - raw as usize;
        let tail = reserve - head - len;
        // SAFETY: [raw, start) and [start + len, raw + reserve) are page-aligned parts of the
        // mapping just made, outside the part kept; unmapping them touches nothing else.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap((start + len) as *mut libc::c_void, tail);
            }
            // Advice only: without transparent huge pages (or with them off) it fails and
            // the block keeps its 4 KiB pages.
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
        Some(HostBlock {
            ptr: NonNull::new(start as *mut u8)?,
            backing: Backing::Mapped(len),
        })
    }
}

impl Drop for HostBlock {
    fn drop(&mut self) {
        match self.backing {
            // SAFETY: ptr was returned by alloc_zeroed with this exact layout and is freed once.
            Backing::Heap(layout) => unsafe { dealloc(self.ptr.as_ptr(), layout) },
            #[cfg(all(target_os = "linux", not(miri)))]
            // SAFETY: ptr and len are exactly the mapping `mapped` kept, unmapped once.
            Backing::Mapped(len) => unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), len);
            },
        }
    }
}

struct Allocation {
    size: u64,
    backing: HostBlock,
}

struct Table {
    allocations: BTreeMap<u64, Allocation>,
    /// The next address handed out while the range is not exhausted.
    next: u64,
    used: u64,
    /// Recently freed `(base, size)`, newest last.
    freed: VecDeque<(u64, u64)>,
}

/// Why an allocation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocError {
    /// The request exceeds the device memory left.
    OutOfMemory {
        /// Bytes asked for.
        requested: u64,
        /// Bytes allocated now.
        allocated: u64,
        /// Bytes of device memory.
        total: u64,
    },
    /// The host could not back the allocation, or the address range is exhausted.
    HostExhausted {
        /// Bytes asked for.
        requested: u64,
    },
}

/// An address range that is not inside one live allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressFault {
    /// The first device address of the range.
    pub address: u64,
    /// The range's length in bytes.
    pub length: u64,
    /// What the address hit instead.
    pub kind: AddressFaultKind,
}

/// What an illegal range hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressFaultKind {
    /// No allocation, live or recently freed, contains the address.
    Unmapped,
    /// The address is inside an allocation that was freed.
    Freed {
        /// The freed allocation's base address.
        base: u64,
        /// Its size.
        size: u64,
    },
    /// The range starts inside a live allocation but runs past its end.
    PastEnd {
        /// The allocation's base address.
        base: u64,
        /// Its size.
        size: u64,
    },
}

impl fmt::Display for AddressFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "illegal address {:#x} (+{} bytes): ",
            self.address, self.length
        )?;
        match self.kind {
            AddressFaultKind::Unmapped => write!(f, "not inside any live allocation"),
            AddressFaultKind::Freed { base, size } => write!(
                f,
                "inside freed allocation {base:#x} ({size} bytes); not inside any live allocation"
            ),
            AddressFaultKind::PastEnd { base, size } => write!(
                f,
                "runs {} bytes past the end of allocation {base:#x} ({size} bytes)",
                (self.address - base + self.length) - size
            ),
        }
    }
}

/// One device's address space and allocation table.
pub struct AddressSpace {
    base: u64,
    end: u64,
    total: u64,
    table: RwLock<Table>,
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    Some(v.checked_add(a - 1)? & !(a - 1))
}

impl AddressSpace {
    /// The address space of device `index` with `total` bytes of memory.
    pub fn new(index: u32, total: u64) -> AddressSpace {
        let base = (index as u64 + 1) * DEVICE_SPAN;
        AddressSpace {
            base,
            end: base + DEVICE_SPAN,
            total,
            table: RwLock::new(Table {
                allocations: BTreeMap::new(),
                next: base,
                used: 0,
                freed: VecDeque::new(),
            }),
        }
    }

    /// Bytes of device memory.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes allocated now.
    pub fn allocated(&self) -> u64 {
        self.table.read().used
    }

    /// Allocates `size` (> 0) bytes and returns the base address.
    pub fn alloc(&self, size: u64) -> Result<u64, AllocError> {
        debug_assert!(size > 0);
        let mut t = self.table.write();
        if size > self.total - t.used {
            return Err(AllocError::OutOfMemory {
                requested: size,
                allocated: t.used,
                total: self.total,
            });
        }
        let host_exhausted = AllocError::HostExhausted { requested: size };
        let span = align_up(size, ALLOCATION_ALIGNMENT)
            .and_then(|s| s.checked_add(GUARD_BYTES))
            .ok_or(host_exhausted.clone())?;
        let address = match t.next.checked_add(span).filter(|&e| e <= self.end) {
            Some(next) => {
                let a = t.next;
                t.next = next;
                a
            }
            None => self.first_fit(&t, span).ok_or(host_exhausted.clone())?,
        };
        let backing = HostBlock::new(size).ok_or(host_exhausted)?;
        t.allocations.insert(address, Allocation { size, backing });
        t.used += size;
        Ok(address)
    }

    /// Once the upward range is used up, the lowest gap that fits `span` bytes (which
    /// include the trailing guard) after the previous allocation's guard.
    fn first_fit(&self, t: &Table, span: u64) -> Option<u64> {
        let mut candidate = self.base;
        for (&base, a) in &t.allocations {
            if base.checked_sub(candidate)? >= span {
                return Some(candidate);
            }
            candidate = align_up(base + a.size + GUARD_BYTES, ALLOCATION_ALIGNMENT)?;
        }
        (self.end.checked_sub(candidate)? >= span).then_some(candidate)
    }

    /// Frees the allocation based at `address`; false when no live allocation starts there.
    pub fn free(&self, address: u64) -> bool {
        let mut t = self.table.write();
        let Some(a) = t.allocations.remove(&address) else {
            return false;
        };
        t.used -= a.size;
        if t.freed.len() == FREED_HISTORY {
            t.freed.pop_front();
        }
        t.freed.push_back((address, a.size));
        drop(t);
        drop(a);
        true
    }

    /// The host pointer of `length` bytes at `address`, which must lie inside one live
    /// allocation. `length` 0 is checked like a 1-byte range at `address`.
    pub fn resolve(&self, address: u64, length: u64) -> Result<*mut u8, AddressFault> {
        let t = self.table.read();
        let fault = |kind| AddressFault {
            address,
            length,
            kind,
        };
        if let Some((&base, a)) = t.allocations.range(..=address).next_back() {
            let offset = address - base;
            if offset < a.size {
                if length <= a.size - offset {
                    // SAFETY: offset < size, so the result stays inside the host block.
                    return Ok(unsafe { a.backing.ptr.as_ptr().add(offset as usize) });
                }
                return Err(fault(AddressFaultKind::PastEnd { base, size: a.size }));
            }
        }
        let freed = t
            .freed
            .iter()
            .rev()
            .find(|&&(base, size)| address >= base && address - base < size);
        Err(fault(match freed {
            Some(&(base, size)) => AddressFaultKind::Freed { base, size },
            None => AddressFaultKind::Unmapped,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_aligned_separated_and_resolved() {
        let m = AddressSpace::new(0, 1 << 20);
        let a = m.alloc(100).unwrap();
        let b = m.alloc(1000).unwrap();
        assert_eq!(a % ALLOCATION_ALIGNMENT, 0);
        assert_eq!(b % ALLOCATION_ALIGNMENT, 0);
        assert!(b >= a + 100 + GUARD_BYTES);
        assert_eq!(m.allocated(), 1100);
        let p = m.resolve(a, 100).unwrap();
        assert_eq!(p as usize % HOST_ALIGNMENT, 0);
        assert!(m.resolve(a + 50, 50).is_ok());
        let e = m.resolve(a + 50, 51).unwrap_err();
        assert_eq!(e.kind, AddressFaultKind::PastEnd { base: a, size: 100 });
        assert!(e.to_string().contains("runs 1 bytes past"), "{e}");
        let e = m.resolve(a + 100, 1).unwrap_err();
        assert_eq!(e.kind, AddressFaultKind::Unmapped);
        assert!(e.to_string().contains(&format!("{:#x}", a + 100)), "{e}");
        assert!(m.free(a));
        assert!(!m.free(a));
        let e = m.resolve(a + 8, 8).unwrap_err();
        assert!(matches!(e.kind, AddressFaultKind::Freed { .. }));
        assert!(e.to_string().contains("freed"), "{e}");
        assert_eq!(m.allocated(), 1000);
    }

    #[test]
    fn out_of_memory_names_the_numbers() {
        let m = AddressSpace::new(1, 4096);
        let a = m.alloc(4000).unwrap();
        assert!(a >= 2 * DEVICE_SPAN);
        assert_eq!(
            m.alloc(100),
            Err(AllocError::OutOfMemory {
                requested: 100,
                allocated: 4000,
                total: 4096
            })
        );
        assert!(m.free(a));
        assert!(m.alloc(4096).is_ok());
    }

    #[test]
    fn large_blocks_are_zeroed_aligned_and_usable_across_reuse() {
        // Sizes around the huge-page threshold, one not a whole number of 4 KiB pages.
        let m = AddressSpace::new(0, 64 << 20);
        for round in 0..3u8 {
            for size in [(2 << 20) - 64, 2 << 20, (5 << 20) + 100] {
                let a = m.alloc(size).unwrap();
                let p = m.resolve(a, size).unwrap();
                assert_eq!(p as usize % HOST_ALIGNMENT, 0);
                #[cfg(all(target_os = "linux", not(miri)))]
                if size >= HUGE_PAGE as u64 {
                    assert_eq!(p as usize % HUGE_PAGE, 0, "{size}");
                }
                // SAFETY: resolve returned `size` bytes owned by this allocation.
                let bytes = unsafe { std::slice::from_raw_parts_mut(p, size as usize) };
                assert!(bytes.iter().all(|&b| b == 0), "round {round}, size {size}");
                bytes.fill(round + 1);
                assert_eq!(bytes[size as usize - 1], round + 1);
                assert!(m.free(a));
            }
        }
        assert_eq!(m.allocated(), 0);
    }

    #[test]
    fn a_block_the_host_cannot_back_is_host_exhausted() {
        // 8 TiB: inside the device's address range and limit, far beyond this host's memory.
        // Linux refuses such a mapping unless overcommit is unconditional (mode 1).
        if std::fs::read_to_string("/proc/sys/vm/overcommit_memory").is_ok_and(|m| m.trim() == "1")
        {
            eprintln!("skipped: vm.overcommit_memory = 1 maps any size");
            return;
        }
        let size = 1u64 << 43;
        let m = AddressSpace::new(0, u64::MAX >> 1);
        assert_eq!(
            m.alloc(size),
            Err(AllocError::HostExhausted { requested: size })
        );
        assert_eq!(m.allocated(), 0);
    }

    #[test]
    fn first_fit_reuses_gaps_when_the_range_is_exhausted() {
        let m = AddressSpace::new(0, u64::MAX / 2);
        let s = &m;
        // Consume most of the range with address space only: the table's bump pointer moves
        // without touching host memory because the allocations are tiny.
        let a = s.alloc(1).unwrap();
        s.table.write().next = s.end - 2 * GUARD_BYTES;
        let b = s.alloc(1).unwrap();
        assert_eq!(b, s.end - 2 * GUARD_BYTES);
        let c = s.alloc(GUARD_BYTES).unwrap();
        assert!(c > a && c < b, "falls back to the gap after `a`");
        assert!(s.free(a));
        let d = s.alloc(1).unwrap();
        assert_eq!(d, s.base, "reuses the lowest gap");
    }
}
