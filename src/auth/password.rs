//! The home-mode admin password: PBKDF2-HMAC-SHA256 with a 16-byte random salt,
//! stored as `pbkdf2-sha256$<iterations>$<salt>$<hash>` (base64url). The
//! iteration count travels with the hash, so raising [`ITERATIONS`] later keeps
//! old hashes verifiable. Hashing and verifying are slow on purpose (~0.3 s
//! optimised): callers run them off the async threads (`smol::unblock`).

use std::num::NonZeroU32;

use ring::pbkdf2;

use super::AuthError;
use super::encoding::{base64url, base64url_decode, random};

/// OWASP's 2023 figure for PBKDF2-HMAC-SHA256.
pub const ITERATIONS: u32 = 600_000;
/// Shortest password `set-password` accepts, in characters.
pub const MIN_LENGTH: usize = 10;
/// Length of a generated password: 20 of 56 characters ≈ 116 bits.
const GENERATED_LENGTH: usize = 20;
/// A stored hash claiming more rounds than this is refused rather than computed
/// (a tampered row must not pin a CPU for minutes).
const MAX_ITERATIONS: u32 = 10_000_000;
const SCHEME: &str = "pbkdf2-sha256";
const ALGORITHM: pbkdf2::Algorithm = pbkdf2::PBKDF2_HMAC_SHA256;

/// The stored form of `password` with a fresh salt.
pub fn hash(password: &str, iterations: u32) -> Result<String, AuthError> {
    let rounds = NonZeroU32::new(iterations.clamp(1, MAX_ITERATIONS)).unwrap_or(NonZeroU32::MIN);
    let salt = random::<16>()?;
    let mut out = [0u8; 32];
    pbkdf2::derive(ALGORITHM, rounds, &salt, password.as_bytes(), &mut out);
    Ok(format!(
        "{SCHEME}${rounds}${}${}",
        base64url(&salt),
        base64url(&out)
    ))
}

/// True when `password` matches `stored` (constant-time comparison). An
/// unreadable `stored` never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    let parts: Vec<&str> = stored.split('$').collect();
    let [SCHEME, rounds, salt, expected] = parts.as_slice() else {
        return false;
    };
    let rounds = rounds
        .parse::<u32>()
        .ok()
        .filter(|r| *r <= MAX_ITERATIONS)
        .and_then(NonZeroU32::new);
    let (Some(rounds), Some(salt), Some(expected)) =
        (rounds, base64url_decode(salt), base64url_decode(expected))
    else {
        return false;
    };
    pbkdf2::verify(ALGORITHM, rounds, &salt, password.as_bytes(), &expected).is_ok()
}

/// Refuses a password too short to set.
pub fn check_new(password: &str) -> Result<(), String> {
    match password.chars().count() {
        n if n < MIN_LENGTH => Err(format!(
            "the password must be at least {MIN_LENGTH} characters (got {n})"
        )),
        _ => Ok(()),
    }
}

/// A random password without look-alike characters (no 0/O, 1/l/I).
pub fn generate() -> Result<String, AuthError> {
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut out = String::with_capacity(GENERATED_LENGTH);
    while out.len() < GENERATED_LENGTH {
        for b in random::<32>()? {
            // Rejection sampling keeps every character equally likely.
            let limit = 256 - 256 % CHARS.len();
            if (b as usize) < limit && out.len() < GENERATED_LENGTH {
                out.push(CHARS[b as usize % CHARS.len()] as char);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let stored = hash("correct horse", 1000).unwrap();
        assert!(stored.starts_with("pbkdf2-sha256$1000$"), "{stored}");
        assert!(verify("correct horse", &stored));
        assert!(!verify("correct horsf", &stored));
        assert!(!verify("", &stored));
        // Same password, new salt, different text.
        assert_ne!(stored, hash("correct horse", 1000).unwrap());
    }

    #[test]
    fn unreadable_hashes_never_match() {
        let stored = hash("pw", 10).unwrap();
        for bad in [
            String::new(),
            stored.replacen("pbkdf2-sha256", "bcrypt", 1),
            stored.replacen("$10$", "$0$", 1),
            stored.replacen("$10$", "$99999999999$", 1),
            stored.replacen("$10$", "$x$", 1),
            format!("{stored}$extra"),
            stored[..stored.len() - 2].to_string(),
        ] {
            assert!(!verify("pw", &bad), "{bad}");
        }
    }

    #[test]
    fn default_iterations_verify() {
        let stored = hash("a long enough password", ITERATIONS).unwrap();
        assert!(stored.starts_with("pbkdf2-sha256$600000$"));
        assert!(verify("a long enough password", &stored));
    }

    #[test]
    fn generated_passwords_and_length_rule() {
        let a = generate().unwrap();
        assert_eq!(a.len(), GENERATED_LENGTH);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, generate().unwrap());
        assert!(check_new(&a).is_ok());
        assert!(check_new("short").is_err());
        assert!(check_new("ääääääääää").is_ok(), "characters, not bytes");
    }
}
