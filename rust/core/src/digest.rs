//! HMAC-SHA256 for keyed digests of log fields (RFC 2104 over SHA-256).

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// SHA-256 block size: HMAC keys are hashed down to or zero-padded up to this.
const BLOCK: usize = 64;

/// Lowercase hex digits of a full SHA-256 digest.
pub const HEX_LEN: usize = 64;

/// Errors of [`hmac_sha256_hex`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestError {
    /// `length` was outside `1..=64`.
    BadLength(usize),
}

impl std::fmt::Display for DigestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DigestError::BadLength(n) => {
                write!(
                    f,
                    "length must be between 1 and {HEX_LEN} hex digits, got {n}"
                )
            }
        }
    }
}

impl std::error::Error for DigestError {}

/// HMAC-SHA256 of `data` under `key` (any length, including empty).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // RFC 2104 step 1 done here so the fixed-size (infallible) constructor can be used:
    // a key longer than the block is replaced by its hash, and every key is zero-padded
    // to the block, which is exactly what `new_from_slice` does internally.
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Lowercase hex HMAC-SHA256, cut to the first `length` hex digits (`1..=64`).
pub fn hmac_sha256_hex(key: &[u8], data: &[u8], length: usize) -> Result<String, DigestError> {
    hmac_sha256_hex_of_digest(&hmac_sha256(key, data), length)
}

/// Lowercase hex of a digest, cut to the first `length` hex digits (`1..=64`).
pub fn hmac_sha256_hex_of_digest(digest: &[u8; 32], length: usize) -> Result<String, DigestError> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if !(1..=HEX_LEN).contains(&length) {
        return Err(DigestError::BadLength(length));
    }
    let mut out = String::with_capacity(HEX_LEN);
    for &byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out.truncate(length);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent hex encoder for the tests.
    fn hmac_sha256_hex_of(b: &[u8]) -> String {
        use std::fmt::Write;
        b.iter().fold(String::new(), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
    }

    fn hex(b: &[u8]) -> String {
        hmac_sha256_hex_of(b)
    }

    #[test]
    fn rfc4231_case_1() {
        let key = [0x0bu8; 20];
        assert_eq!(
            hex(&hmac_sha256(&key, b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn rfc4231_case_2_short_key() {
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn rfc4231_case_6_key_longer_than_block() {
        let key = [0xaau8; 131];
        assert_eq!(
            hex(&hmac_sha256(
                &key,
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn empty_key_and_data() {
        assert_eq!(
            hex(&hmac_sha256(b"", b"")),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"
        );
    }

    #[test]
    fn key_of_exactly_one_block_is_not_hashed() {
        let key = [7u8; 64];
        let hashed: [u8; 32] = Sha256::digest(key).into();
        assert_ne!(hmac_sha256(&key, b"x"), hmac_sha256(&hashed, b"x"));
        let long = [7u8; 65];
        let hashed: [u8; 32] = Sha256::digest(long).into();
        assert_eq!(hmac_sha256(&long, b"x"), hmac_sha256(&hashed, b"x"));
    }

    #[test]
    fn hex_is_cut_to_length() {
        let full = hmac_sha256_hex(b"k", b"d", 64).unwrap();
        assert_eq!(full, hex(&hmac_sha256(b"k", b"d")));
        assert_eq!(hmac_sha256_hex(b"k", b"d", 1).unwrap(), full[..1]);
        assert_eq!(hmac_sha256_hex(b"k", b"d", 17).unwrap(), full[..17]);
    }

    #[test]
    fn hex_length_out_of_range() {
        assert_eq!(
            hmac_sha256_hex(b"k", b"d", 0),
            Err(DigestError::BadLength(0))
        );
        assert_eq!(
            hmac_sha256_hex(b"k", b"d", 65),
            Err(DigestError::BadLength(65))
        );
    }
}
