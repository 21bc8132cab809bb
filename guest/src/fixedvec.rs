//! A vector with a fixed capacity and no heap, for boot-time tables.

/// Up to `N` values of `T`, stored inline.
#[derive(Clone, Copy)]
pub struct FixedVec<T: Copy, const N: usize> {
    items: [T; N],
    len: usize,
}

impl<T: Copy + Default, const N: usize> Default for FixedVec<T, N> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: Copy, const N: usize> FixedVec<T, N> {
    /// An empty vector; `fill` only initialises the unused slots.
    pub const fn new(fill: T) -> Self {
        Self {
            items: [fill; N],
            len: 0,
        }
    }

    /// Appends `item`; gives it back if the vector is full.
    pub fn push(&mut self, item: T) -> Result<(), T> {
        if self.len == N {
            return Err(item);
        }
        self.items[self.len] = item;
        self.len += 1;
        Ok(())
    }

    /// Number of stored items.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is stored.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when no more items fit.
    pub const fn is_full(&self) -> bool {
        self.len == N
    }

    /// Removes every item.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The stored items.
    pub fn as_slice(&self) -> &[T] {
        &self.items[..self.len]
    }

    /// The stored items, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.items[..self.len]
    }

    /// Iterates over the stored items.
    pub fn iter(&self) -> core::slice::Iter<'_, T> {
        self.as_slice().iter()
    }
}

impl<T: Copy + core::fmt::Debug, const N: usize> core::fmt::Debug for FixedVec<T, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::FixedVec;

    #[test]
    fn push_until_full() {
        let mut v: FixedVec<u32, 2> = FixedVec::new(0);
        assert!(v.is_empty());
        assert_eq!(v.push(1), Ok(()));
        assert_eq!(v.push(2), Ok(()));
        assert!(v.is_full());
        assert_eq!(v.push(3), Err(3));
        assert_eq!(v.as_slice(), &[1, 2]);
        v.clear();
        assert_eq!(v.len(), 0);
    }
}
