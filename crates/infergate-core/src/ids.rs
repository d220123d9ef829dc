//! Identifiers and generated credentials. Ids are opaque strings (spec §7 #14).

use rand::RngCore;

/// 32 lowercase hex characters from a CSPRNG: ids of apps, APIs, users, projects.
pub fn new_hex_id() -> String {
    random_hex(16)
}

/// A UUID with dashes: ids of services (spec §1).
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `bytes` random bytes from the operating system's CSPRNG, as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// A random string over `alphabet` of length `len`, without modulo bias.
pub fn random_from_alphabet(alphabet: &[u8], len: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

/// An IAM access key: 20 upper-case alphanumerics (spec §6.2).
pub fn new_access_key() -> String {
    random_from_alphabet(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 20)
}

/// An IAM secret key: 40 mixed-case alphanumerics (spec §6.2).
pub fn new_secret_key() -> String {
    random_from_alphabet(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        40,
    )
}

/// A generated password for the bootstrap admin: 24 characters, letters and digits.
pub fn new_password() -> String {
    random_from_alphabet(
        b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789",
        24,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let id = new_hex_id();
        assert_eq!(id.len(), 32);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(id, new_hex_id());
        assert_eq!(new_uuid().len(), 36);
        let ak = new_access_key();
        assert_eq!(ak.len(), 20);
        assert!(ak
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
        assert_eq!(new_secret_key().len(), 40);
    }
}
