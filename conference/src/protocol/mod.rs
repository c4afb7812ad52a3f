//! The protocols of the conference services, shared by the `venue` agent
//! (which generates the secrets and configures the servers) and
//! `venue-portal` (which signs requests and credentials with them):
//!
//! - [`bbb`]: BigBlueButton API checksums and signed URLs;
//! - [`turn`]: TURN REST credentials (coturn's `use-auth-secret`);
//! - [`jwt`]: HS256 JSON Web Tokens for Jitsi Meet (prosody `token` auth).
//!
//! Nothing here does I/O: these are pure functions of their inputs, so both
//! sides compute the same thing and tests can check them against the real
//! peers (coturn) or against fakes that check exactly as the peer does.

pub mod bbb;
pub mod jwt;
pub mod turn;

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
