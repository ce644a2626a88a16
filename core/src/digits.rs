//! Numbers written as decimal digits straight into a buffer: a response's
//! status and length, and a bridged call's id, are written for every
//! answer, and the formatter (`to_string`, `write!`) costs several times
//! the digits and, with `to_string`, an allocation each. `itoa` writes
//! them two at a time from a table, on the stack.

use bytes::{BufMut, BytesMut};

/// Writes `n` in decimal at the end of `out`.
pub(crate) fn put_decimal(out: &mut BytesMut, n: u64) {
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Writes `n` in decimal at the end of `out`.
pub(crate) fn push_decimal(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The digits are the formatter's, for any number.
        #[test]
        fn writes_what_the_formatter_writes(n in any::<u64>()) {
            let mut out = BytesMut::from(&b"x"[..]);
            put_decimal(&mut out, n);
            let expected = format!("x{n}");
            prop_assert_eq!(&out[..], expected.as_bytes());
            let mut text = "x".to_owned();
            push_decimal(&mut text, n);
            prop_assert_eq!(text, expected);
        }
    }

    #[test]
    fn the_edges() {
        for n in [0, 9, 10, 99, 100, u64::MAX] {
            let mut out = BytesMut::new();
            put_decimal(&mut out, n);
            assert_eq!(&out[..], n.to_string().as_bytes());
        }
    }
}
