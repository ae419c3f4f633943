//! Handle tables: the opaque handles C holds are numbers, never pointers the library
//! follows.
//!
//! A handle packs a type tag (bits 56..64), the slot's generation (bits 32..56) and the
//! slot index plus one (bits 0..32). Looking one up checks all three, so NULL, garbage, a
//! handle of another type and a destroyed handle (its slot's generation moved on) are each
//! `InvalidHandle`, and a handle is never dereferenced.

use crate::error::Result;
use knpu::Error;
use parking_lot::Mutex;

const GENERATION_MASK: u64 = 0xFF_FFFF;

struct Slots<T> {
    /// Each slot's current generation and value.
    slots: Vec<(u64, Option<T>)>,
    free: Vec<usize>,
}

/// A table of live objects of one kind.
pub(crate) struct Table<T> {
    tag: u64,
    what: &'static str,
    slots: Mutex<Slots<T>>,
}

impl<T: Clone> Table<T> {
    /// An empty table whose handles carry `tag` (1..=255) and are named `what` in errors.
    pub(crate) const fn new(tag: u64, what: &'static str) -> Table<T> {
        Table {
            tag,
            what,
            slots: Mutex::new(Slots {
                slots: Vec::new(),
                free: Vec::new(),
            }),
        }
    }

    /// Stores `value` and returns its new handle.
    pub(crate) fn insert(&self, value: T) -> u64 {
        let mut s = self.slots.lock();
        let index = match s.free.pop() {
            Some(i) => {
                s.slots[i].1 = Some(value);
                i
            }
            None => {
                s.slots.push((1, Some(value)));
                s.slots.len() - 1
            }
        };
        let generation = s.slots[index].0;
        (self.tag << 56) | (generation << 32) | (index as u64 + 1)
    }

    /// The slot index a handle names, if the handle is live.
    pub(crate) fn index(&self, handle: u64) -> Result<usize> {
        let s = self.slots.lock();
        self.find(&s, handle)
    }

    fn find(&self, s: &Slots<T>, handle: u64) -> Result<usize> {
        let bad = |why: &str| Error::InvalidHandle {
            detail: format!("{handle:#x} is not a live {} handle: {why}", self.what),
        };
        if handle == 0 {
            return Err(bad("it is NULL"));
        }
        if handle >> 56 != self.tag {
            return Err(bad("it is not a handle of this kind"));
        }
        let index = (handle & 0xFFFF_FFFF) as usize;
        let generation = (handle >> 32) & GENERATION_MASK;
        match index
            .checked_sub(1)
            .and_then(|i| s.slots.get(i).map(|slot| (i, slot)))
        {
            Some((i, (g, Some(_)))) if *g == generation => Ok(i),
            Some(_) => Err(bad("it was destroyed")),
            None => Err(bad("no such handle was made")),
        }
    }

    /// `f` of the object a handle names, run under the table's lock (so nothing is cloned;
    /// `f` must not use this table).
    pub(crate) fn with<R>(&self, handle: u64, f: impl FnOnce(&T) -> R) -> Result<R> {
        let s = self.slots.lock();
        let i = self.find(&s, handle)?;
        Ok(f(s.slots[i].1.as_ref().expect("live slot")))
    }

    /// The object a handle names.
    pub(crate) fn get(&self, handle: u64) -> Result<T> {
        let s = self.slots.lock();
        let i = self.find(&s, handle)?;
        Ok(s.slots[i].1.clone().expect("live slot"))
    }

    /// Removes a handle's object: the handle (and every copy of it) is dead from now on.
    pub(crate) fn remove(&self, handle: u64) -> Result<T> {
        let mut s = self.slots.lock();
        let i = self.find(&s, handle)?;
        let slot = &mut s.slots[i];
        let value = slot.1.take().expect("live slot");
        slot.0 = (slot.0 % GENERATION_MASK) + 1;
        s.free.push(i);
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_garbage_foreign_and_destroyed_handles_are_invalid() {
        let t: Table<u32> = Table::new(7, "thing");
        let other: Table<u32> = Table::new(8, "other");
        let h = t.insert(5);
        assert_eq!(t.get(h).unwrap(), 5);
        assert!(t.get(0).is_err());
        assert!(t.get(0xdead_beef).is_err());
        assert!(t.get(u64::MAX).is_err());
        let foreign = other.insert(6);
        assert!(t.get(foreign).is_err());
        assert_eq!(t.remove(h).unwrap(), 5);
        assert!(t.get(h).is_err());
        assert!(t.remove(h).is_err());
        // The slot is reused under a new generation; the old handle stays dead.
        let h2 = t.insert(9);
        assert_ne!(h, h2);
        assert!(t.get(h).is_err());
        assert_eq!(t.get(h2).unwrap(), 9);
        assert_eq!(t.with(h2, |v| v + 1).unwrap(), 10);
        assert!(t.with(h, |v| v + 1).is_err());
        assert!(t.with(foreign, |v| v + 1).is_err());
    }
}
