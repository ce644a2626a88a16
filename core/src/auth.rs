//! Secrets kept as SHA-256 digests and compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The digest of an API key or bridge token; the secret itself is not kept.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash([u8; 32]);

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHash(…)")
    }
}

impl SecretHash {
    pub fn of(secret: &str) -> Self {
        SecretHash(Sha256::digest(secret.as_bytes()).into())
    }

    /// Whether `presented` is this secret, in time independent of where
    /// the digests differ.
    pub fn matches(&self, presented: &Presented) -> bool {
        same_bytes(&self.0, &presented.0)
    }
}

/// Whether `a` and `b` hold the same bytes, in time that depends on their
/// lengths only: their differences are gathered eight bytes at a time and
/// only the gathered word is tested, through `subtle` so that the compiler
/// cannot turn the gathering into an early exit. (`subtle`'s own slice
/// comparison goes a byte at a time, and every request's key passes here.)
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |w: &[u8]| u64::from_le_bytes(w.try_into().unwrap_or_default());
    let (mut xs, mut ys) = (a.chunks_exact(8), b.chunks_exact(8));
    let mut differ = 0u64;
    for (x, y) in xs.by_ref().zip(ys.by_ref()) {
        differ |= word(x) ^ word(y);
    }
    for (x, y) in xs.remainder().iter().zip(ys.remainder()) {
        differ |= u64::from(x ^ y);
    }
    differ.ct_eq(&0).into()
}

/// The digest of a secret a peer presented: made once, however many kept
/// secrets it is compared with.
pub struct Presented([u8; 32]);

impl Presented {
    pub fn of(secret: &str) -> Self {
        Presented(Sha256::digest(secret.as_bytes()).into())
    }
}

/// The secret a connection presented last, with its digest: a keep-alive
/// client sends the same key with every request, and hashing it each time
/// was a tenth of what a bridged call cost. The bytes are compared in
/// constant time, as digests are; they live as long as the connection, as
/// its requests' headers do.
#[derive(Default)]
pub struct LastPresented(Option<(Box<[u8]>, Presented)>);

impl LastPresented {
    /// The digest of `secret`: the one kept when the connection presented
    /// the same bytes last, made (and kept) otherwise.
    pub fn digest(&mut self, secret: &str) -> &Presented {
        let same = |(kept, _): &(Box<[u8]>, Presented)| same_bytes(kept, secret.as_bytes());
        if !self.0.as_ref().is_some_and(same) {
            self.0 = None;
        }
        let (_, digest) = self
            .0
            .get_or_insert_with(|| (secret.as_bytes().into(), Presented::of(secret)));
        digest
    }
}

/// The index of the first key matching `presented`. Every key is compared so
/// the time taken does not tell which one matched.
pub fn find_key(keys: &[SecretHash], presented: &Presented) -> Option<usize> {
    let mut found = None;
    for (i, key) in keys.iter().enumerate() {
        if key.matches(presented) && found.is_none() {
            found = Some(i);
        }
    }
    found
}

/// A 256-bit secret for a peer to keep (a session's `resume_token`), as 64
/// hex digits: the SHA-256 of every part, each length-prefixed so parts
/// cannot run into each other. The caller passes fresh draws of its seeded
/// generator together with key material the core holds, so the secret
/// cannot be recomputed from ids the provider shows (those come from the
/// same generator, which is not one-way).
pub(crate) fn derive_token(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The token of an `Authorization: Bearer …` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    // Read without a search: every request's key passes here. The scheme
    // and its space are ASCII, so the token after them starts on a
    // character's boundary.
    let value = header?.trim_ascii();
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case("bearer ") {
        return None;
    }
    Some(value.get(7..)?.trim_ascii()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_same_secret() {
        let keys = [SecretHash::of("a"), SecretHash::of("b")];
        assert_eq!(find_key(&keys, &Presented::of("b")), Some(1));
        assert_eq!(find_key(&keys, &Presented::of("c")), None);
        assert!(keys[0].matches(&Presented::of("a")));
        assert!(!keys[0].matches(&Presented::of("a ")));
    }

    /// A connection presenting a key, then another, then a prefix of the
    /// first and the first again: each is judged as what it is, whatever
    /// the connection presented before.
    #[test]
    fn the_digest_kept_for_a_connection_is_only_reused_for_the_same_bytes() {
        let keys = [SecretHash::of("key-a"), SecretHash::of("key-b")];
        let mut last = LastPresented::default();
        for (secret, found) in [
            ("key-a", Some(0)),
            ("key-a", Some(0)),
            ("key-b", Some(1)),
            ("key-", None),
            ("key-a", Some(0)),
            ("key-ab", None),
        ] {
            assert_eq!(find_key(&keys, last.digest(secret)), found, "{secret}");
        }
    }

    #[test]
    fn same_bytes_compares_every_byte_and_the_lengths() {
        let text = b"0123456789abcdefghij";
        assert!(same_bytes(text, text));
        assert!(same_bytes(b"", b""));
        for at in 0..text.len() {
            let mut other = *text;
            other[at] ^= 0x20;
            assert!(!same_bytes(text, &other), "differing at {at}");
            assert!(!same_bytes(&text[..at], text), "a prefix of {at}");
        }
    }

    #[test]
    fn derived_tokens_are_256_bits_and_depend_on_every_part() {
        let t = derive_token(&[b"a", b"bc"]);
        assert_eq!(t.len(), 64);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(t, derive_token(&[b"ab", b"c"]));
        assert_ne!(t, derive_token(&[b"a", b"bd"]));
        assert_eq!(t, derive_token(&[b"a", b"bc"]));
    }

    #[test]
    fn bearer_parses_the_scheme_case_insensitively() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(Some("Bearer")), None);
        assert_eq!(bearer(Some("Bearerabc")), None);
        assert_eq!(bearer(Some("BEARER \t abc\t")), Some("abc"));
        assert_eq!(bearer(Some("Beareré abc")), None);
        assert_eq!(bearer(None), None);
    }
}
