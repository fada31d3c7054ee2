//! Random identifiers from the operating system's CSPRNG.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Fills `buf` with random bytes. The system generator failing is not
/// recoverable for a security service, so it is reported to the caller.
pub fn fill(buf: &mut [u8]) -> Result<(), RandomError> {
    SystemRandom::new().fill(buf).map_err(|_| RandomError)
}

/// The system random generator failed.
#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomError;

/// `n` characters drawn uniformly from `[0-9A-Za-z]`
/// (rejection sampling, so each character carries log2(62) bits).
pub fn base62(n: usize) -> Result<String, RandomError> {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        fill(&mut buf)?;
        for b in buf {
            // 248 = 4 * 62: keep only bytes that map without bias.
            if b < 248 && out.len() < n {
                out.push(BASE62[usize::from(b % 62)] as char);
            }
        }
    }
    Ok(out)
}

/// Encodes `v` as exactly `N` base62 characters (big-endian digits),
/// without allocating: key checksums are checked on every exchange.
pub fn base62_fixed<const N: usize>(mut v: u64) -> [u8; N] {
    let mut digits = [b'0'; N];
    for d in digits.iter_mut().rev() {
        *d = BASE62[(v % 62) as usize];
        v /= 62;
    }
    digits
}

/// A 128-bit random token id, base64url.
pub fn token_id() -> Result<String, RandomError> {
    let chars = token_id_chars()?;
    Ok(chars.iter().copied().map(char::from).collect())
}

/// Characters of a [`token_id`].
pub const TOKEN_ID_LEN: usize = 22;

/// A [`token_id`] as ASCII bytes, without allocating (one per token).
pub fn token_id_chars() -> Result<[u8; TOKEN_ID_LEN], RandomError> {
    let mut b = [0u8; 16];
    fill(&mut b)?;
    let mut out = [0u8; TOKEN_ID_LEN];
    match URL_SAFE_NO_PAD.encode_slice(b, &mut out) {
        Ok(TOKEN_ID_LEN) => Ok(out),
        _ => Err(RandomError),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base62_has_the_length_and_alphabet() {
        let s = base62(43).unwrap();
        assert_eq!(s.len(), 43);
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(s, base62(43).unwrap());
    }

    #[test]
    fn fixed_width_encoding() {
        assert_eq!(&base62_fixed::<6>(0), b"000000");
        assert_eq!(&base62_fixed::<2>(61), b"0z");
        assert_eq!(&base62_fixed::<2>(62), b"10");
        assert_eq!(&base62_fixed::<6>(u64::from(u32::MAX)), b"4gfFC3");
    }
}
