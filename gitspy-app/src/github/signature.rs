//! `X-Hub-Signature-256` verification: `sha256=` + lowercase hex HMAC-SHA256 of the raw body.
//!
//! Verified before the body is parsed, with a constant-time comparison (`Mac::verify_slice`). Several
//! secrets may be configured at once so a secret can be rotated without dropping deliveries.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header value GitHub would send for `body` signed with `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// True when `header` is a well-formed `sha256=<64 lowercase hex>` signature of `body` under one of
/// `secrets`. Anything else — missing header, `sha1=`, uppercase or short digests — is false.
pub fn verify<S: AsRef<[u8]>>(secrets: &[S], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_digest) = header.and_then(|h| h.strip_prefix("sha256=")) else {
        return false;
    };
    if hex_digest.len() != 64
        || !hex_digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return false;
    }
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    // Check every secret (no early exit) so the time taken does not reveal which one matched.
    let mut ok = false;
    for secret in secrets {
        let Ok(mut mac) = HmacSha256::new_from_slice(secret.as_ref()) else {
            continue;
        };
        mac.update(body);
        ok |= mac.verify_slice(&expected).is_ok();
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's documented test vector (docs: "Validating webhook deliveries").
    #[test]
    fn github_documented_vector() {
        let sig = sign(b"It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(
            sig,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert!(verify(
            &["It's a Secret to Everybody"],
            b"Hello, World!",
            Some(&sig)
        ));
    }

    #[test]
    fn rejects_malformed_and_wrong_signatures() {
        let secrets = ["s3cret"];
        let body = b"{}";
        let good = sign(b"s3cret", body);
        let cases: Vec<(Option<String>, bool)> = vec![
            (Some(good.clone()), true),
            (None, false),
            (
                Some(good.to_uppercase().replace("SHA256=", "sha256=")),
                false,
            ),
            (Some(good[..good.len() - 2].to_string()), false),
            (Some(format!("{}zz", &good[..good.len() - 2])), false),
            (Some(good.replace("sha256=", "sha1=")), false),
            (Some(sign(b"other", body)), false),
            (Some(String::new()), false),
        ];
        for (header, expect) in cases {
            assert_eq!(
                verify(&secrets, body, header.as_deref()),
                expect,
                "{header:?}"
            );
        }
    }

    #[test]
    fn any_configured_secret_verifies_during_rotation() {
        let sig = sign(b"new", b"x");
        assert!(verify(&["old", "new"], b"x", Some(&sig)));
        assert!(!verify(&["old"], b"x", Some(&sig)));
    }
}
