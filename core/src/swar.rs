//! Searching bytes eight at a time: the long runs of text in JSON and
//! event streams are passed over a word at a time, and only the word that
//! holds a match is looked at byte by byte.

const ONES: u64 = u64::from_ne_bytes([1; 8]);
const HIGHS: u64 = ONES << 7;

/// Nonzero when some byte of `w` is below `n` (at most 128). The flag of
/// the first such byte is exact; flags after it may not be, which is why
/// [`find`] looks at the word again byte by byte.
pub(crate) fn has_below(w: u64, n: u8) -> u64 {
    w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS
}

/// Nonzero when some byte of `w` is `b`.
pub(crate) fn has_byte(w: u64, b: u8) -> u64 {
    has_below(w ^ (ONES * u64::from(b)), 1)
}

/// Where the first byte of `bytes` that `is` picks out is, or the length
/// of `bytes`. `hit` flags the bytes of eight at once that are ones (in
/// each byte's high bit), so words without one are passed over whole and
/// the first one is read off the word: [`has_below`]'s and [`has_byte`]'s
/// flags, and any union of them, may be wrong only above a true one (a
/// borrow carries upwards), so the lowest flag — the first byte, the word
/// read little-endian — is exact. The last few bytes are looked at one by
/// one with `is`.
pub(crate) fn find(bytes: &[u8], hit: impl Fn(u64) -> u64, is: impl Fn(u8) -> bool) -> usize {
    let mut at = 0;
    for word in bytes.chunks_exact(8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let flags = hit(u64::from_le_bytes(w));
        if flags != 0 {
            return at + (flags.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    let tail = bytes.get(at..).unwrap_or_default();
    at + tail.iter().position(|&b| is(b)).unwrap_or(tail.len())
}

/// How many bytes from the start of `bytes` to the first that a JSON
/// string cannot hold as it is (a quote, a backslash or a control
/// character), or its length.
pub(crate) fn json_plain_run(bytes: &[u8]) -> usize {
    find(
        bytes,
        |w| has_byte(w, b'"') | has_byte(w, b'\\') | has_below(w, 0x20),
        |b| b == b'"' || b == b'\\' || b < 0x20,
    )
}

/// Where the first line break (`\r` or `\n`) of `bytes` is, or its
/// length: an event's line is mostly a long run of JSON, and text that
/// must stay on one line (a header field, a message for a child on stdio)
/// is checked on every call.
pub(crate) fn line_break(bytes: &[u8]) -> usize {
    find(
        bytes,
        |w| has_byte(w, b'\n') | has_byte(w, b'\r'),
        |b| b == b'\r' || b == b'\n',
    )
}

/// Lower-cases the ASCII letters of `bytes` eight at a time, leaving every
/// other byte as it is: header names are lower-cased as they are read,
/// and a byte at a time that was a tenth of reading a head.
pub(crate) fn lower_ascii(bytes: &mut [u8]) {
    /// The `0x20` bit of each byte of `w` that is `A` to `Z`. Each byte's
    /// low seven bits plus a constant below `0x80` cannot carry into the
    /// next byte, and bytes with the high bit set are left out.
    fn upper_bits(w: u64) -> u64 {
        let low = w & !HIGHS;
        let from_a = low.wrapping_add(ONES * u64::from(0x80 - b'A'));
        let past_z = low.wrapping_add(ONES * u64::from(0x80 - b'Z' - 1));
        ((from_a & !past_z & !w) & HIGHS) >> 2
    }
    let lower = |word: &mut [u8; 8]| {
        let n = u64::from_ne_bytes(*word);
        *word = (n | upper_bits(n)).to_ne_bytes();
    };
    let mut words = bytes.chunks_exact_mut(8);
    for word in &mut words {
        if let Ok(word) = <&mut [u8; 8]>::try_from(word) {
            lower(word);
        }
    }
    if words.into_remainder().is_empty() {
        return;
    }
    // The last few bytes: as the last eight, again, when there are eight
    // (lowering twice changes nothing); a byte at a time they cost as much
    // as all the rest.
    let last = bytes
        .len()
        .checked_sub(8)
        .and_then(|at| bytes.get_mut(at..));
    match last.and_then(|tail| <&mut [u8; 8]>::try_from(tail).ok()) {
        Some(word) => lower(word),
        None => bytes.make_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn a_line_break_is_found_where_a_byte_by_byte_search_finds_it(
            bytes in proptest::collection::vec(proptest::prop_oneof![
                8 => proptest::num::u8::ANY,
                1 => proptest::strategy::Just(b'\n'),
                1 => proptest::strategy::Just(b'\r'),
            ], 0..64)
        ) {
            let plain = bytes.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(bytes.len());
            proptest::prop_assert_eq!(line_break(&bytes), plain);
        }

        /// The word test never misses a byte the byte test finds.
        #[test]
        fn finds_what_a_byte_by_byte_search_finds(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            n in 0u8..=128,
            b in proptest::prelude::any::<u8>(),
        ) {
            let found = find(&bytes, |w| has_below(w, n) | has_byte(w, b), |x| x < n || x == b);
            let plain = bytes.iter().position(|&x| x < n || x == b).unwrap_or(bytes.len());
            proptest::prop_assert_eq!(found, plain);
        }

        /// A JSON string's plain run ends where a byte-by-byte look ends
        /// it, whichever byte of a word that is.
        #[test]
        fn a_plain_run_ends_where_a_byte_by_byte_look_ends_it(
            bytes in proptest::collection::vec(0x1fu8..=0x7f, 0..64),
        ) {
            let plain = bytes
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .unwrap_or(bytes.len());
            proptest::prop_assert_eq!(json_plain_run(&bytes), plain);
        }

        /// Eight at a time lower-cases as `make_ascii_lowercase` does.
        #[test]
        fn lowers_what_a_byte_by_byte_lowering_lowers(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let mut words = bytes.clone();
            lower_ascii(&mut words);
            let mut plain = bytes;
            plain.make_ascii_lowercase();
            proptest::prop_assert_eq!(words, plain);
        }
    }
}
