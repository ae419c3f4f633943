//! Opaque handles for the C ABI, validated on every call.
//!
//! A handle is never a pointer the driver dereferences. Its value encodes a kind tag, a slot
//! index and the slot's generation: `tag << 56 | generation << 32 | (index + 1)`. Looking a
//! handle up checks all three against a slot table, so a null, garbage, wrong-kind or
//! destroyed handle is refused (`INVALID_HANDLE`) and never touched. A slot's generation
//! grows each time it is freed, so a stale handle stays invalid after its slot is reused.
//! The top byte holds the tag, which also makes the value a non-canonical address on x86-64:
//! a caller that dereferences a handle by mistake faults at once.

use std::sync::Arc;

use parking_lot::RwLock;

#[cfg(not(target_pointer_width = "64"))]
compile_error!("knpu-driver-sim encodes handles in 64-bit pointer values");

const TAG_SHIFT: u32 = 56;
const GENERATION_SHIFT: u32 = 32;
const GENERATION_MASK: u64 = 0xff_ffff;
const INDEX_MASK: u64 = 0xffff_ffff;

/// The kind tag of device handles.
pub const DEVICE_TAG: u8 = 0x4e;
/// The kind tag of queue handles.
pub const QUEUE_TAG: u8 = 0x51;
/// The kind tag of semaphore handles.
pub const SEMAPHORE_TAG: u8 = 0x53;
/// The kind tag of command list handles.
pub const COMMAND_LIST_TAG: u8 = 0x4c;

/// Encodes a handle value.
pub fn encode(tag: u8, generation: u32, index: u32) -> usize {
    (((tag as u64) << TAG_SHIFT)
        | (((generation as u64) & GENERATION_MASK) << GENERATION_SHIFT)
        | (index as u64 + 1)) as usize
}

/// Decodes a handle value of kind `tag` into `(generation, index)`.
pub fn decode(tag: u8, value: usize) -> Option<(u32, u32)> {
    let v = value as u64;
    if (v >> TAG_SHIFT) as u8 != tag {
        return None;
    }
    let index = (v & INDEX_MASK).checked_sub(1)?;
    Some((
        ((v >> GENERATION_SHIFT) & GENERATION_MASK) as u32,
        index as u32,
    ))
}

struct Slot<T> {
    generation: u32,
    object: Option<Arc<T>>,
}

struct Slots<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
}

/// A table of live objects of one kind, named by handle values.
pub struct Registry<T> {
    tag: u8,
    inner: RwLock<Slots<T>>,
}

impl<T> Registry<T> {
    /// An empty registry whose handles carry `tag`.
    pub fn new(tag: u8) -> Self {
        Registry {
            tag,
            inner: RwLock::new(Slots {
                slots: Vec::new(),
                free: Vec::new(),
            }),
        }
    }

    /// Registers `object` and returns its handle value.
    pub fn insert(&self, object: Arc<T>) -> usize {
        let mut s = self.inner.write();
        let index = match s.free.pop() {
            Some(i) => i,
            None => {
                s.slots.push(Slot {
                    generation: 0,
                    object: None,
                });
                (s.slots.len() - 1) as u32
            }
        };
        let slot = &mut s.slots[index as usize];
        slot.object = Some(object);
        encode(self.tag, slot.generation, index)
    }

    /// The live object named by `handle`, if any.
    pub fn get(&self, handle: usize) -> Option<Arc<T>> {
        let (generation, index) = decode(self.tag, handle)?;
        let s = self.inner.read();
        let slot = s.slots.get(index as usize)?;
        if slot.generation & GENERATION_MASK as u32 != generation {
            return None;
        }
        slot.object.clone()
    }

    /// Unregisters the object named by `handle` and returns it; later lookups of the handle
    /// fail.
    pub fn remove(&self, handle: usize) -> Option<Arc<T>> {
        let (generation, index) = decode(self.tag, handle)?;
        let mut s = self.inner.write();
        let slot = s.slots.get_mut(index as usize)?;
        if slot.generation & GENERATION_MASK as u32 != generation {
            return None;
        }
        let object = slot.object.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        s.free.push(index);
        Some(object)
    }

    /// Every live object, for operations that sweep a kind (device loss).
    pub fn live(&self) -> Vec<Arc<T>> {
        self.inner
            .read()
            .slots
            .iter()
            .filter_map(|s| s.object.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_garbage_and_wrong_kind_handles_are_refused() {
        let r = Registry::<u32>::new(QUEUE_TAG);
        let h = r.insert(Arc::new(7));
        assert_eq!(r.get(h).as_deref(), Some(&7));
        assert!(r.get(0).is_none());
        assert!(r.get(h + 1).is_none());
        assert!(r.get(0x1234_5678).is_none());
        assert!(r.get(encode(SEMAPHORE_TAG, 0, 0)).is_none());
        assert_eq!(r.remove(h).as_deref(), Some(&7));
        assert!(r.get(h).is_none());
        assert!(r.remove(h).is_none());
        let h2 = r.insert(Arc::new(8));
        assert_ne!(h, h2, "a reused slot gets a new generation");
        assert!(r.get(h).is_none());
        assert_eq!(r.get(h2).as_deref(), Some(&8));
        assert_eq!(r.live().len(), 1);
    }
}
