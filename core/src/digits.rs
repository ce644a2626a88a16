//! Numbers written as decimal digits straight into a buffer: a response's
//! status and length are written for every answer, and the formatter
//! (`to_string`, `write!`) costs several times the digits and, with
//! `to_string`, an allocation each.

use bytes::{BufMut, BytesMut};

/// Writes `n` in decimal at the end of `out`.
pub(crate) fn put_decimal(out: &mut BytesMut, mut n: u64) {
    // u64::MAX has 20 digits.
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        // `n % 10` is below 10: the cast cannot truncate.
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[start..]);
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
