//! A list that holds its first item in place. Most lists a call builds
//! hold one item (the connection to wake, the child to write to, the line
//! an answer brings): a `Vec` would allocate for it, this does only for a
//! second.

use std::iter::Chain;
use std::{option, slice, vec};

/// Items in the order pushed; the first kept in place.
#[derive(Debug)]
pub struct Few<T> {
    first: Option<T>,
    more: Vec<T>,
}

impl<T> Default for Few<T> {
    fn default() -> Self {
        Few {
            first: None,
            more: Vec::new(),
        }
    }
}

impl<T> Few<T> {
    pub fn push(&mut self, item: T) {
        match self.first {
            None => self.first = Some(item),
            Some(_) => self.more.push(item),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub fn iter(&self) -> Chain<option::Iter<'_, T>, slice::Iter<'_, T>> {
        self.first.iter().chain(self.more.iter())
    }
}

impl<T> IntoIterator for Few<T> {
    type Item = T;
    type IntoIter = Chain<option::IntoIter<T>, vec::IntoIter<T>>;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.more)
    }
}

impl<'a, T> IntoIterator for &'a Few<T> {
    type Item = &'a T;
    type IntoIter = Chain<option::Iter<'a, T>, slice::Iter<'a, T>>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_back_in_the_order_pushed() {
        let mut few = Few::default();
        assert!(few.is_empty());
        for n in 1..=4 {
            few.push(n);
        }
        assert!(!few.is_empty());
        assert_eq!(few.iter().copied().collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(few.into_iter().collect::<Vec<_>>(), [1, 2, 3, 4]);
    }
}
