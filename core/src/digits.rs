//! Numbers written as decimal digits straight into a buffer: a response's
//! status and length, and a bridged call's id, are written for every
//! answer, and the formatter (`to_string`, `write!`) costs several times
//! the digits and, with `to_string`, an allocation each.

use bytes::{BufMut, BytesMut};

/// Writes `n` in decimal at the end of `out`.
pub(crate) fn put_decimal(out: &mut BytesMut, n: u64) {
    out.put_slice(Digits::of(n).as_bytes());
}

/// Writes `n` in decimal at the end of `out`.
pub(crate) fn push_decimal(out: &mut String, n: u64) {
    out.push_str(Digits::of(n).as_str());
}

/// A number's decimal digits, on the stack.
struct Digits {
    // u64::MAX has 20 digits.
    digits: [u8; 20],
    start: usize,
}

impl Digits {
    fn of(mut n: u64) -> Digits {
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
        Digits { digits, start }
    }

    fn as_bytes(&self) -> &[u8] {
        self.digits.get(self.start..).unwrap_or_default()
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits were written.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
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
