//! Twitch user tokens at rest: AES-256-GCM with a random 96-bit nonce per value,
//! stored as hex `nonce ‖ ciphertext ‖ tag` (the reference's layout). The
//! associated data names the row and column a value belongs to, so a value
//! copied into another streamer's row does not decrypt.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use super::AuthError;
use super::encoding::{hex, hex_decode, random};

pub struct TokenCipher(LessSafeKey);

impl TokenCipher {
    pub fn new(key: &[u8; 32]) -> TokenCipher {
        let key = UnboundKey::new(&AES_256_GCM, key).unwrap_or_else(|_| {
            unreachable!("AES-256-GCM takes any 32-byte key");
        });
        TokenCipher(LessSafeKey::new(key))
    }

    pub fn seal(&self, plaintext: &str, context: &str) -> Result<String, AuthError> {
        let nonce_bytes = random::<NONCE_LEN>()?;
        let nonce = Nonce::assume_unique_for_key(nonce_bytes);
        let mut data = plaintext.as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(nonce, Aad::from(context.as_bytes()), &mut data)
            .map_err(|_| AuthError::Crypto("encryption failed"))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&data);
        Ok(hex(&out))
    }

    pub fn open(&self, stored: &str, context: &str) -> Result<String, AuthError> {
        let bytes = hex_decode(stored).ok_or(AuthError::Crypto("not hex"))?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(AuthError::Crypto("ciphertext too short"));
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| AuthError::Crypto("bad nonce"))?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut sealed)
            .map_err(|_| AuthError::Crypto("wrong key or tampered value"))?;
        String::from_utf8(plain.to_vec()).map_err(|_| AuthError::Crypto("not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip() {
        let c = TokenCipher::new(&[7; 32]);
        let sealed = c.seal("abc123token", "1|access").unwrap();
        // 12-byte nonce + 11 bytes + 16-byte tag, in hex.
        assert_eq!(sealed.len(), 2 * (12 + 11 + 16));
        assert_eq!(c.open(&sealed, "1|access").unwrap(), "abc123token");
        assert_ne!(
            sealed,
            c.seal("abc123token", "1|access").unwrap(),
            "fresh nonce"
        );
    }

    #[test]
    fn wrong_key_context_or_tampering_fails() {
        let c = TokenCipher::new(&[7; 32]);
        let sealed = c.seal("secret", "1|access").unwrap();
        assert!(
            TokenCipher::new(&[8; 32])
                .open(&sealed, "1|access")
                .is_err()
        );
        assert!(c.open(&sealed, "2|access").is_err());
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert!(
            c.open(std::str::from_utf8(&flipped).unwrap(), "1|access")
                .is_err()
        );
        assert!(c.open("abcd", "1|access").is_err());
        assert!(c.open("xyz", "1|access").is_err());
    }
}
