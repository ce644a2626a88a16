//! PKCE (RFC 7636, S256) and the `state` of one authorization: both made
//! from random bytes the driver passes in, so the core reads no random
//! source of its own and a test can fix them.

use sha2::{Digest, Sha256};

/// The random bytes one login needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Random {
    /// Becomes the PKCE code verifier (43 characters).
    pub verifier: [u8; 32],
    /// Becomes the `state` the redirect must bring back.
    pub state: [u8; 16],
}

impl Random {
    /// The random bytes as one slice gives them (48 bytes read; fewer are
    /// padded with zeros, which only a test would pass).
    pub fn from_bytes(bytes: &[u8]) -> Random {
        let mut random = Random {
            verifier: [0; 32],
            state: [0; 16],
        };
        for (slot, byte) in random
            .verifier
            .iter_mut()
            .chain(random.state.iter_mut())
            .zip(bytes)
        {
            *slot = *byte;
        }
        random
    }
}

/// A code verifier and its S256 challenge.
#[derive(Clone, PartialEq, Eq)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl std::fmt::Debug for Pkce {
    /// The verifier is a secret until the token request is made.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkce")
            .field("challenge", &self.challenge)
            .finish_non_exhaustive()
    }
}

impl Pkce {
    pub fn new(random: &[u8; 32]) -> Pkce {
        let verifier = base64url(random);
        let challenge = base64url(&Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
        }
    }
}

/// Base64url without padding (RFC 4648 §5), as PKCE and `state` use.
pub fn base64url(bytes: &[u8]) -> String {
    crate::base64::encode(bytes)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_rfc_7636s() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = base64url(&Sha256::digest(verifier.as_bytes()));
        assert_eq!(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let pkce = Pkce::new(&[7; 32]);
        assert_eq!(pkce.verifier.len(), 43);
        assert!(pkce
            .verifier
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert!(!format!("{pkce:?}").contains(&pkce.verifier));
    }

    #[test]
    fn random_bytes_are_split_in_order() {
        let bytes: Vec<u8> = (0..48).collect();
        let random = Random::from_bytes(&bytes);
        assert_eq!(random.verifier[31], 31);
        assert_eq!(random.state[0], 32);
        assert_eq!(Random::from_bytes(&[1]).state, [0; 16]);
    }
}
