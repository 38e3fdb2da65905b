//! Interning: each distinct source, destination and node name the matrix holds gets a small
//! integer id, so cells are keyed by integers. A result is matched to its cell by hashing its
//! names once against these small, hot tables instead of comparing strings stored with each of
//! many thousands of cells (a cache miss per string).
//!
//! Ids stay valid until [`Interner::purge`] drops the entries no cell refers to any more; a
//! dropped id is reused by a later entry.

use std::hash::{BuildHasher, Hash};

use hashbrown::{DefaultHashBuilder, Equivalent, HashTable};

/// An interned value's id.
pub(crate) type Id = u32;

/// Distinct values of `T`, each with an [`Id`].
#[derive(Debug, Clone)]
pub(crate) struct Interner<T> {
    /// Ids of the live entries, hashed by their value.
    table: HashTable<Id>,
    /// Values by id; None for a purged id waiting in `free`.
    values: Vec<Option<T>>,
    free: Vec<Id>,
    hasher: DefaultHashBuilder,
}

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            table: HashTable::new(),
            values: Vec::new(),
            free: Vec::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }
}

impl<T: Hash + Eq> Interner<T> {
    /// The id of the value `key` stands for, if interned. `Q` must hash as `T` does.
    pub(crate) fn get<Q: Hash + Equivalent<T> + ?Sized>(&self, key: &Q) -> Option<Id> {
        let hash = self.hasher.hash_one(key);
        self.table.find(hash, |&id| self.value(id).is_some_and(|v| key.equivalent(v))).copied()
    }

    /// The id of `key`'s value, interning `to_owned(key)` when it is new. None only when every
    /// `u32` id is in use.
    pub(crate) fn intern<Q: Hash + Equivalent<T> + ?Sized>(
        &mut self,
        key: &Q,
        to_owned: impl FnOnce(&Q) -> T,
    ) -> Option<Id> {
        if let Some(id) = self.get(key) {
            return Some(id);
        }
        let value = to_owned(key);
        let hash = self.hasher.hash_one(&value);
        let id = match self.free.pop() {
            Some(id) => {
                let slot = self.values.get_mut(usize::try_from(id).ok()?)?;
                *slot = Some(value);
                id
            }
            None => {
                let id = Id::try_from(self.values.len()).ok()?;
                self.values.push(Some(value));
                id
            }
        };
        let (values, hasher) = (&self.values, &self.hasher);
        self.table.insert_unique(hash, id, |&id| {
            let value = usize::try_from(id).ok().and_then(|i| values.get(i)).and_then(Option::as_ref);
            value.map_or(0, |v| hasher.hash_one(v))
        });
        Some(id)
    }

    pub(crate) fn value(&self, id: Id) -> Option<&T> {
        self.values.get(usize::try_from(id).ok()?).and_then(Option::as_ref)
    }

    /// Drops every entry whose id `keep` refuses; returns how many went.
    pub(crate) fn purge(&mut self, mut keep: impl FnMut(Id) -> bool) -> usize {
        let before = self.table.len();
        let (values, free) = (&mut self.values, &mut self.free);
        self.table.retain(|&mut id| {
            if keep(id) {
                return true;
            }
            if let Some(slot) = usize::try_from(id).ok().and_then(|i| values.get_mut(i)) {
                *slot = None;
            }
            free.push(id);
            false
        });
        if self.table.is_empty() {
            self.values.clear();
            self.free.clear();
        }
        before - self.table.len()
    }

    /// Live entries with their ids.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Id, &T)> + '_ {
        self.values.iter().zip(0..).filter_map(|(v, id)| v.as_ref().map(|v| (id, v)))
    }

    /// Slots (live or free): ids are below this.
    pub(crate) fn slots(&self) -> usize {
        self.values.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_reused_after_a_purge() {
        let mut i = Interner::<String>::default();
        let a = i.intern("a", |s: &str| s.to_owned()).unwrap();
        let b = i.intern("b", |s: &str| s.to_owned()).unwrap();
        assert_eq!(i.intern("a", |_| unreachable!()), Some(a));
        assert_eq!((i.get("a"), i.get("b"), i.get("c")), (Some(a), Some(b), None));
        assert_eq!(i.purge(|id| id == b), 1);
        assert_eq!((i.get("a"), i.get("b"), i.value(a)), (None, Some(b), None));
        let c = i.intern("c", |s: &str| s.to_owned()).unwrap();
        assert_eq!(c, a, "the purged id is reused");
        assert_eq!(i.value(c).map(String::as_str), Some("c"));
        assert_eq!(i.iter().count(), 2);
        assert_eq!(i.purge(|_| false), 2);
        assert_eq!((i.slots(), i.iter().count()), (0, 0));
    }
}
