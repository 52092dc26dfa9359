//! Content addressing shared by every config store (`persistence.md` §7).

use sha2::{Digest, Sha256};

/// The key a config store files `raw` under: the SHA-256 of its UTF-8 bytes as 64 lowercase hex
/// digits, the same digest the reference writes into a snapshot's `config_hash`.
pub fn config_hash(raw: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(raw.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest.iter() {
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0x0f)] as char);
    }
    out
}

/// Whether `hash` has the shape [`config_hash`] produces. Stores that turn the hash into a file
/// name check this first, since the hash comes from snapshot JSON that may have been edited.
pub(crate) fn is_config_hash(hash: &str) -> bool {
    hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        assert_eq!(
            config_hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            config_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // Non-ASCII text is hashed as UTF-8, as Python's `raw.encode("utf-8")`.
        assert_eq!(
            config_hash("é"),
            "4a99557e4033c3539de2eb65472017cad5f9557f7a0625a09f1c3f6e2ba69c4c"
        );
        assert!(is_config_hash(&config_hash("x")));
        assert!(!is_config_hash("../../etc/passwd"));
        assert!(!is_config_hash(&config_hash("x").to_uppercase()));
    }
}
