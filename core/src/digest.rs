//! Content digests (`sha256:<hex>`), validated like `opencontainers/go-digest`.
//!
//! containerd links sha256, sha384 and sha512, so those are the algorithms a
//! digest may name. Validation mirrors go-digest's three failure classes so
//! messages line up with what a Go client would see: a malformed string, a
//! well-formed digest of an algorithm we do not know, and a known algorithm
//! with an encoded part of the wrong length.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// The algorithms a digest may name, with the length of their hex encoding.
const ALGORITHMS: [(&str, usize); 3] = [("sha256", 64), ("sha384", 96), ("sha512", 128)];

/// A validated content digest such as `sha256:e3b0c442…`.
///
/// ```
/// use crated_core::digest::Digest;
///
/// let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// let d: Digest = format!("sha256:{hex}").parse().unwrap();
/// assert_eq!(d.algorithm(), "sha256");
/// assert_eq!(d.hex(), hex);
/// assert!("sha256:E3B0".parse::<Digest>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    text: String,
    // Byte index of the ':' separating algorithm from the encoded part.
    colon: usize,
}

impl Digest {
    /// Validates `s` as `<algorithm>:<lower-case hex>`; InvalidArgument names
    /// `s` and says which rule it broke.
    pub fn parse(s: &str) -> Result<Self> {
        let invalid = |why: &str| Error::invalid_argument(format!("invalid digest {s:?}: {why}"));
        let colon = match s.find(':') {
            Some(i) if i > 0 && i + 1 < s.len() => i,
            _ => return Err(invalid("invalid checksum digest format")),
        };
        let (algorithm, encoded) = (&s[..colon], &s[colon + 1..]);
        let Some(&(_, hex_len)) = ALGORITHMS.iter().find(|(name, _)| *name == algorithm) else {
            return Err(if is_well_formed(algorithm, encoded) {
                invalid("unsupported digest algorithm")
            } else {
                invalid("invalid checksum digest format")
            });
        };
        if encoded.len() != hex_len {
            return Err(invalid("invalid checksum digest length"));
        }
        if !encoded
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(invalid("invalid checksum digest format"));
        }
        Ok(Self {
            text: s.to_owned(),
            colon,
        })
    }

    /// The algorithm, e.g. `sha256`.
    pub fn algorithm(&self) -> &str {
        &self.text[..self.colon]
    }

    /// The hex-encoded hash (go-digest's `Encoded`).
    pub fn hex(&self) -> &str {
        &self.text[self.colon + 1..]
    }

    /// The whole digest, `algorithm:hex`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// go-digest's `DigestRegexpAnchored`:
/// `[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+`. Only used to tell an
/// unknown algorithm from garbage, so it is checked by hand.
fn is_well_formed(algorithm: &str, encoded: &str) -> bool {
    let component_ok =
        |c: &str| !c.is_empty() && c.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9'));
    algorithm.split(['.', '+', '_', '-']).all(component_ok)
        && encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
}

/// A sha256 digest computed over data that comes in pieces.
///
/// ```
/// use crated_core::digest::{Digest, Sha256};
/// let mut hasher = Sha256::new();
/// hasher.update(b"hello ");
/// hasher.update(b"world");
/// assert_eq!(hasher.finish(), Digest::sha256(b"hello world"));
/// ```
#[derive(Clone, Default)]
pub struct Sha256(sha2::Sha256);

impl Sha256 {
    /// An empty hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        use sha2::Digest as _;
        self.0.update(data);
    }

    /// The digest of everything added.
    pub fn finish(self) -> Digest {
        use sha2::Digest as _;
        let hex: String = self
            .0
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Digest {
            colon: 6,
            text: format!("sha256:{hex}"),
        }
    }
}

impl Digest {
    /// The sha256 digest of `data`.
    pub fn sha256(data: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(data);
        hasher.finish()
    }

    /// The chain id of a stack of layers, bottom first, as OCI and
    /// containerd's `identity.ChainID` define it: the first diff id, then
    /// `sha256("<chain below> <diff id>")` for each layer above. The empty
    /// stack has none.
    ///
    /// ```
    /// use crated_core::digest::Digest;
    ///
    /// let a = Digest::sha256(b"a");
    /// let b = Digest::sha256(b"b");
    /// assert_eq!(Digest::chain_id(&[a.clone()]), Some(a.clone()));
    /// let two = Digest::chain_id(&[a.clone(), b.clone()]).unwrap();
    /// assert_eq!(two, Digest::sha256(format!("{a} {b}").as_bytes()));
    /// ```
    pub fn chain_id(diff_ids: &[Digest]) -> Option<Digest> {
        let (first, rest) = diff_ids.split_first()?;
        Some(rest.iter().fold(first.clone(), |chain, diff| {
            Digest::sha256(format!("{chain} {diff}").as_bytes())
        }))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;
    use proptest::prelude::*;

    const HEX64: &str = "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c";

    fn reason(s: &str) -> String {
        let err = Digest::parse(s).unwrap_err();
        assert_eq!(err.kind(), Kind::InvalidArgument);
        assert!(err.message().contains(&format!("{s:?}")), "{err}");
        err.message().rsplit(": ").next().unwrap().to_owned()
    }

    #[test]
    fn accepts_known_algorithms() {
        let d = Digest::parse(&format!("sha256:{HEX64}")).unwrap();
        assert_eq!((d.algorithm(), d.hex()), ("sha256", HEX64));
        assert_eq!(d.to_string(), format!("sha256:{HEX64}"));
        assert!(Digest::parse(&format!("sha384:{}", "f".repeat(96))).is_ok());
        assert!(Digest::parse(&format!("sha512:{}", "0".repeat(128))).is_ok());
    }

    #[test]
    fn classifies_failures_like_go_digest() {
        assert_eq!(reason(""), "invalid checksum digest format");
        assert_eq!(reason("sha256"), "invalid checksum digest format");
        assert_eq!(reason(":abc"), "invalid checksum digest format");
        assert_eq!(reason("sha256:"), "invalid checksum digest format");
        assert_eq!(reason("sha256:abc"), "invalid checksum digest length");
        assert_eq!(
            reason(&format!("sha256:{}", HEX64.to_uppercase())),
            "invalid checksum digest format"
        );
        assert_eq!(
            reason(&format!("md5:{HEX64}")),
            "unsupported digest algorithm"
        );
        assert_eq!(
            reason(&format!("invaliddigest:{HEX64}")),
            "unsupported digest algorithm"
        );
        assert_eq!(
            reason(&format!("Sha256:{HEX64}")),
            "invalid checksum digest format"
        );
        assert_eq!(reason("foo.bar:x/y"), "invalid checksum digest format");
    }

    proptest! {
        #[test]
        fn never_panics_and_round_trips(s in "\\PC{0,80}") {
            if let Ok(d) = Digest::parse(&s) {
                prop_assert_eq!(d.to_string(), s);
            }
        }

        #[test]
        fn valid_sha256_round_trips(hex in "[a-f0-9]{64}") {
            let d = Digest::parse(&format!("sha256:{hex}")).unwrap();
            prop_assert_eq!(d.hex(), hex.as_str());
        }
    }
}
