//! The signed URLs `serve` hands out for the Azure Blob subset: an
//! expiring capability bound to one path (one upload, or one stored blob
//! and its size), `?se=<unix expiry>&sig=<HMAC-SHA256 hex>`. Whatever else
//! the client appends to the query (`comp=block&blockid=…`) is not part of
//! the capability. A forged, altered or expired URL is refused.
//!
//! The key is random per process unless configured: servers behind one
//! load balancer must share it (`--url-secret-file`).
//!
//! May touch: nothing (pure).

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks capability URLs.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
    ttl: Duration,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Why a signed URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the URL carries no signature (se and sig): ask the cache service for a new one")]
    Unsigned,
    #[error("the URL's signature does not match: it was altered or not issued by this server (servers behind one address must share --url-secret-file)")]
    Forged,
    #[error("the signed URL expired: ask the cache service for a new one")]
    Expired,
}

impl Signer {
    /// A signer with `key` (at least 32 bytes are recommended) whose URLs
    /// live `ttl`.
    pub fn new(key: Vec<u8>, ttl: Duration) -> Self {
        Self { key, ttl }
    }

    /// A signer with a fresh random key.
    pub fn random(ttl: Duration) -> Self {
        Self::new(rand::random::<[u8; 32]>().to_vec(), ttl)
    }

    fn mac(&self, path: &str, expires: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The query string (`se=…&sig=…`) granting `path` until now + ttl.
    pub fn sign(&self, path: &str, now: i64) -> String {
        let expires = now + self.ttl.as_secs() as i64;
        let sig = hex::encode(self.mac(path, expires).finalize().into_bytes());
        format!("se={expires}&sig={sig}")
    }

    /// Checks the `se` and `sig` of `query` against `path` at `now`.
    pub fn verify(&self, path: &str, query: Option<&str>, now: i64) -> Result<(), SignatureError> {
        let (mut expires, mut sig) = (None, None);
        for pair in query.unwrap_or("").split('&') {
            match pair.split_once('=') {
                Some(("se", v)) => expires = Some(v),
                Some(("sig", v)) => sig = Some(v),
                _ => {}
            }
        }
        let (Some(expires), Some(sig)) = (expires, sig) else {
            return Err(SignatureError::Unsigned);
        };
        let expires: i64 = expires.parse().map_err(|_| SignatureError::Forged)?;
        let sig = hex::decode(sig).map_err(|_| SignatureError::Forged)?;
        self.mac(path, expires)
            .verify_slice(&sig)
            .map_err(|_| SignatureError::Forged)?;
        if now > expires {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_grants_its_path_until_it_expires() {
        let s = Signer::random(Duration::from_secs(60));
        let q = s.sign("/a/b/up/1", 1000);
        assert_eq!(s.verify("/a/b/up/1", Some(&q), 1000), Ok(()));
        let with_more = format!("{q}&comp=block&blockid=QUFB");
        assert_eq!(s.verify("/a/b/up/1", Some(&with_more), 1059), Ok(()));
        assert_eq!(
            s.verify("/a/b/up/1", Some(&q), 1061),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            s.verify("/a/b/up/2", Some(&q), 1000),
            Err(SignatureError::Forged)
        );
        let later = q.replace(&format!("se={}", 1060), "se=99999");
        assert_eq!(
            s.verify("/a/b/up/1", Some(&later), 1000),
            Err(SignatureError::Forged)
        );
        assert_eq!(
            s.verify("/a/b/up/1", None, 1000),
            Err(SignatureError::Unsigned)
        );
        let other = Signer::random(Duration::from_secs(60));
        assert_eq!(
            other.verify("/a/b/up/1", Some(&q), 1000),
            Err(SignatureError::Forged)
        );
    }
}
