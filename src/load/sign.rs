//! GitHub webhook signatures: `X-Hub-Signature-256: sha256=<lowercase hex HMAC-SHA256(secret, body)>`.
//!
//! The sender signs the exact bytes it puts on the wire, as GitHub does, so the system under test
//! verifies the raw body before parsing it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header GitHub puts the SHA-256 signature in.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

/// `sha256=` followed by the lowercase hex HMAC-SHA256 of `body` keyed with `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length (long keys are hashed, short ones padded), so
    // `new_from_slice` cannot fail for SHA-256; the empty key is valid too.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from GitHub's "Validating webhook deliveries" documentation.
    #[test]
    fn github_documented_vector() {
        assert_eq!(
            signature(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn signature_depends_on_secret_and_body() {
        let base = signature(b"s", b"body");
        assert_ne!(base, signature(b"t", b"body"));
        assert_ne!(base, signature(b"s", b"body2"));
        assert_eq!(base.len(), "sha256=".len() + 64);
    }
}
