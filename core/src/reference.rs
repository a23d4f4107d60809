//! Image references (`docker.io/library/busybox:latest@sha256:…`) with the
//! docker.io normalisation containerd applies through `reference/docker`.
//!
//! The grammar is docker's:
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain "/"] path-component ["/" path-component]*
//! domain           := domain-component ["." domain-component]* [":" port-number]
//! domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
//! path-component   := /[a-z0-9]+/ [separator /[a-z0-9]+/]*
//! separator        := /[_.]|__|[-]*/
//! tag              := /[\w][\w.-]{0,127}/
//! ```
//!
//! It is matched with the same regular expressions containerd 1.6 uses, so
//! the many ambiguous corners (is `foo.com:5000` a name with a tag, or a
//! domain?) resolve the same way. IPv6 domains, added to docker's grammar
//! after containerd 1.6, are not accepted.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;

use crate::digest::Digest;
use crate::{Error, Result};

/// Longest name (domain and path) a reference may have, in bytes.
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// The domain familiar names are relative to.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The tag [`parse_docker_ref`] adds to a bare name.
pub const DEFAULT_TAG: &str = "latest";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";

const NAME_COMPONENT: &str = r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*";
const DOMAIN_COMPONENT: &str = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
// `\w` is spelled out: Go's is ASCII-only, the regex crate's is Unicode.
const TAG: &str = r"[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}";
const DIGEST: &str = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}";

fn domain_pattern() -> String {
    format!(r"{DOMAIN_COMPONENT}(?:\.{DOMAIN_COMPONENT})*(?::[0-9]+)?")
}

fn path_pattern() -> String {
    format!("{NAME_COMPONENT}(?:/{NAME_COMPONENT})*")
}

/// Captures the name, tag and digest of a whole reference.
static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = format!(
        r"^((?:{}/)?{})(?::({TAG}))?(?:@({DIGEST}))?$",
        domain_pattern(),
        path_pattern()
    );
    Regex::new(&pattern).expect("the reference pattern is a constant known to compile")
});

/// Captures the domain and path of a name.
static NAME: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = format!(r"^(?:({})/)?({})$", domain_pattern(), path_pattern());
    Regex::new(&pattern).expect("the name pattern is a constant known to compile")
});

static TAG_ONLY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!("^{TAG}$")).expect("the tag pattern is a constant known to compile")
});

/// A named image reference, with an optional tag and digest.
///
/// ```
/// use crated_core::reference::parse_normalized_named;
///
/// let r = parse_normalized_named("busybox:1.36").unwrap();
/// assert_eq!(r.to_string(), "docker.io/library/busybox:1.36");
/// assert_eq!((r.domain(), r.path(), r.tag()), ("docker.io", "library/busybox", Some("1.36")));
/// assert_eq!(r.familiar_string(), "busybox:1.36");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `domain/path`, or just `path` without a domain.
    name: String,
    /// Length of the domain prefix of `name`; 0 without a domain.
    domain_len: usize,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Parses a reference as users type it, filling in what Docker implies:
/// `busybox` is `docker.io/library/busybox`, `foo/bar` is
/// `docker.io/foo/bar`, `index.docker.io` is `docker.io`. No tag is added
/// (see [`parse_docker_ref`]).
///
/// The first path component is taken as a domain only if it contains `.` or
/// `:`, or is `localhost`. Errors are InvalidArgument and name `s`.
///
/// ```
/// use crated_core::reference::parse_normalized_named;
///
/// let r = parse_normalized_named("localhost:5000/team/app").unwrap();
/// assert_eq!((r.domain(), r.path()), ("localhost:5000", "team/app"));
/// let err = parse_normalized_named("Busybox").unwrap_err();
/// assert!(err.to_string().contains("repository name must be lowercase"));
/// ```
pub fn parse_normalized_named(s: &str) -> Result<Reference> {
    if s.is_empty() {
        return Err(invalid(
            s,
            "repository name must have at least one component",
        ));
    }
    if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        // An image ID, which is easy to pass by mistake where a name belongs.
        return Err(invalid(s, "cannot specify 64-byte hexadecimal strings"));
    }
    let (domain, remainder) = split_docker_domain(s);
    let remote_name = remainder.split(':').next().unwrap_or_default();
    if remote_name.to_lowercase() != remote_name {
        return Err(invalid(s, "repository name must be lowercase"));
    }
    parse_exact(&format!("{domain}/{remainder}")).map_err(|why| match why {
        Invalid::Reason(why) => invalid(s, why),
        Invalid::Digest(err) => err.context(format!("invalid reference {s:?}")),
    })
}

/// [`parse_normalized_named`], then Docker's pull rules: a bare name gets the
/// `latest` tag, and a reference with both a tag and a digest keeps only the
/// digest (which is what pins the content).
///
/// ```
/// use crated_core::reference::parse_docker_ref;
///
/// let r = parse_docker_ref("busybox").unwrap();
/// assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
/// let hex = "e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582";
/// let r = parse_docker_ref(&format!("gcr.io/library/busybox:latest@sha256:{hex}")).unwrap();
/// assert_eq!(r.to_string(), format!("gcr.io/library/busybox@sha256:{hex}"));
/// ```
pub fn parse_docker_ref(s: &str) -> Result<Reference> {
    let mut reference = parse_normalized_named(s)?;
    if reference.digest.is_some() {
        reference.tag = None;
    } else if reference.tag.is_none() {
        reference.tag = Some(DEFAULT_TAG.to_owned());
    }
    Ok(reference)
}

impl Reference {
    /// The registry host, with port if any: `docker.io`, `localhost:5000`.
    /// Empty only for the odd name whose first component looked like a
    /// domain to the normaliser but is not one (`foo_bar.com/x`).
    pub fn domain(&self) -> &str {
        &self.name[..self.domain_len]
    }

    /// The repository path within the registry: `library/busybox`.
    pub fn path(&self) -> &str {
        match self.domain_len {
            0 => &self.name,
            n => &self.name[n + 1..],
        }
    }

    /// `domain/path`: the repository without tag or digest.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The name as Docker shows it: `busybox`, `foo/bar`, `gcr.io/x/y`.
    pub fn familiar_name(&self) -> &str {
        if self.domain() != DEFAULT_DOMAIN {
            return &self.name;
        }
        let path = self.path();
        match path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            // Only `library/<one component>` is an official image.
            Some(official) if !official.contains('/') => official,
            _ => path,
        }
    }

    /// The whole reference as Docker shows it: `busybox:latest`.
    pub fn familiar_string(&self) -> String {
        self.render(self.familiar_name())
    }

    /// The same repository with `tag` (keeping any digest); InvalidArgument
    /// if `tag` is not a valid tag.
    pub fn with_tag(&self, tag: &str) -> Result<Self> {
        if !TAG_ONLY.is_match(tag) {
            return Err(Error::invalid_argument(format!(
                "invalid tag {tag:?}: tag must match [\\w][\\w.-]{{0,127}}"
            )));
        }
        Ok(Self {
            tag: Some(tag.to_owned()),
            ..self.clone()
        })
    }

    /// The same repository with `digest` (keeping any tag).
    #[must_use]
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// Just the repository, without tag or digest.
    #[must_use]
    pub fn trim(&self) -> Self {
        Self {
            tag: None,
            digest: None,
            ..self.clone()
        }
    }

    fn render(&self, name: &str) -> String {
        let mut out = name.to_owned();
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest.as_str());
        }
        out
    }
}

impl fmt::Display for Reference {
    /// The full, normalised reference: `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(&self.name))
    }
}

impl FromStr for Reference {
    type Err = Error;

    /// [`parse_normalized_named`].
    fn from_str(s: &str) -> Result<Self> {
        parse_normalized_named(s)
    }
}

fn invalid(s: &str, why: &str) -> Error {
    Error::invalid_argument(format!("invalid reference {s:?}: {why}"))
}

enum Invalid {
    Reason(&'static str),
    Digest(Error),
}

/// Docker's `Parse`: the reference exactly as written, no defaults.
fn parse_exact(s: &str) -> std::result::Result<Reference, Invalid> {
    let Some(captures) = REFERENCE.captures(s) else {
        return Err(Invalid::Reason(if REFERENCE.is_match(&s.to_lowercase()) {
            "repository name must be lowercase"
        } else {
            "invalid reference format"
        }));
    };
    let name = captures.get(1).map_or("", |m| m.as_str());
    if name.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(Invalid::Reason(
            "repository name must not be more than 255 characters",
        ));
    }
    let domain_len = NAME
        .captures(name)
        .and_then(|c| c.get(1))
        .map_or(0, |domain| domain.as_str().len());
    let digest = captures
        .get(3)
        .map(|m| Digest::parse(m.as_str()))
        .transpose()
        .map_err(Invalid::Digest)?;
    Ok(Reference {
        name: name.to_owned(),
        domain_len,
        tag: captures.get(2).map(|m| m.as_str().to_owned()),
        digest,
    })
}

/// Splits off the registry, defaulting to Docker Hub, and adds `library/`
/// to single-component Docker Hub names.
fn split_docker_domain(name: &str) -> (&str, String) {
    let (mut domain, remainder) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first, rest),
        _ => (DEFAULT_DOMAIN, name),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN;
    }
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        return (domain, format!("{OFFICIAL_REPO_PREFIX}{remainder}"));
    }
    (domain, remainder.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;
    use proptest::prelude::*;

    const HEX: &str = "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c";

    fn reason(s: &str) -> String {
        let err = parse_normalized_named(s).unwrap_err();
        assert_eq!(err.kind(), Kind::InvalidArgument, "{s}");
        assert!(
            err.message()
                .starts_with(&format!("invalid reference {s:?}: ")),
            "{err}"
        );
        err.message().rsplit(": ").next().unwrap().to_owned()
    }

    #[test]
    fn normalizes_familiar_names() {
        // (input, full name, familiar name, domain, path)
        let cases = [
            (
                "fooo/bar",
                "docker.io/fooo/bar",
                "fooo/bar",
                "docker.io",
                "fooo/bar",
            ),
            (
                "index.docker.io/fooo/bar",
                "docker.io/fooo/bar",
                "fooo/bar",
                "docker.io",
                "fooo/bar",
            ),
            (
                "ubuntu",
                "docker.io/library/ubuntu",
                "ubuntu",
                "docker.io",
                "library/ubuntu",
            ),
            (
                "library/ubuntu",
                "docker.io/library/ubuntu",
                "ubuntu",
                "docker.io",
                "library/ubuntu",
            ),
            (
                "docker.io/ubuntu",
                "docker.io/library/ubuntu",
                "ubuntu",
                "docker.io",
                "library/ubuntu",
            ),
            (
                "nonlibrary/ubuntu",
                "docker.io/nonlibrary/ubuntu",
                "nonlibrary/ubuntu",
                "docker.io",
                "nonlibrary/ubuntu",
            ),
            (
                "other/library",
                "docker.io/other/library",
                "other/library",
                "docker.io",
                "other/library",
            ),
            (
                "127.0.0.1:8000/private/moonbase",
                "127.0.0.1:8000/private/moonbase",
                "127.0.0.1:8000/private/moonbase",
                "127.0.0.1:8000",
                "private/moonbase",
            ),
            (
                "127.0.0.1:8000/privatebase",
                "127.0.0.1:8000/privatebase",
                "127.0.0.1:8000/privatebase",
                "127.0.0.1:8000",
                "privatebase",
            ),
            (
                "example.com/private/moonbase",
                "example.com/private/moonbase",
                "example.com/private/moonbase",
                "example.com",
                "private/moonbase",
            ),
            (
                "example.com:8000/privatebasee",
                "example.com:8000/privatebasee",
                "example.com:8000/privatebasee",
                "example.com:8000",
                "privatebasee",
            ),
            (
                "ubuntu-12.04-base",
                "docker.io/library/ubuntu-12.04-base",
                "ubuntu-12.04-base",
                "docker.io",
                "library/ubuntu-12.04-base",
            ),
            (
                "docker.io/foo",
                "docker.io/library/foo",
                "foo",
                "docker.io",
                "library/foo",
            ),
            (
                "library/foo/bar",
                "docker.io/library/foo/bar",
                "library/foo/bar",
                "docker.io",
                "library/foo/bar",
            ),
            (
                "store/foo/bar",
                "docker.io/store/foo/bar",
                "store/foo/bar",
                "docker.io",
                "store/foo/bar",
            ),
            (
                "localhost/foo",
                "localhost/foo",
                "localhost/foo",
                "localhost",
                "foo",
            ),
            (
                "localhost:5000/x",
                "localhost:5000/x",
                "localhost:5000/x",
                "localhost:5000",
                "x",
            ),
            (
                "test_com/foo",
                "docker.io/test_com/foo",
                "test_com/foo",
                "docker.io",
                "test_com/foo",
            ),
            (
                "test-com:8080/foo",
                "test-com:8080/foo",
                "test-com:8080/foo",
                "test-com:8080",
                "foo",
            ),
            (
                "xn--n3h.com:18080/foo",
                "xn--n3h.com:18080/foo",
                "xn--n3h.com:18080/foo",
                "xn--n3h.com:18080",
                "foo",
            ),
            (
                "Example.COM/foo",
                "Example.COM/foo",
                "Example.COM/foo",
                "Example.COM",
                "foo",
            ),
            // Looks like a domain to the splitter, is not one to the grammar.
            (
                "foo_bar.com/x",
                "foo_bar.com/x",
                "foo_bar.com/x",
                "",
                "foo_bar.com/x",
            ),
        ];
        for (input, full, familiar, domain, path) in cases {
            let r = parse_normalized_named(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), full, "{input}");
            assert_eq!(r.name(), full, "{input}");
            assert_eq!(r.familiar_name(), familiar, "{input}");
            assert_eq!(r.domain(), domain, "{input}");
            assert_eq!(r.path(), path, "{input}");
            assert_eq!((r.tag(), r.digest()), (None, None), "{input}");
        }
    }

    #[test]
    fn keeps_tags_and_digests() {
        let r = parse_normalized_named(&format!("busybox:latest@sha256:{HEX}")).unwrap();
        assert_eq!(
            r.to_string(),
            format!("docker.io/library/busybox:latest@sha256:{HEX}")
        );
        assert_eq!(r.familiar_string(), format!("busybox:latest@sha256:{HEX}"));
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.digest().map(Digest::hex), Some(HEX));

        let r = parse_normalized_named(&format!("registry.example.com/a/b@sha256:{HEX}")).unwrap();
        assert_eq!(
            (r.domain(), r.path(), r.tag()),
            ("registry.example.com", "a/b", None)
        );
        assert_eq!(
            r.digest().map(Digest::as_str),
            Some(format!("sha256:{HEX}").as_str())
        );

        let r = parse_normalized_named("127.0.0.1:5000/x:tag").unwrap();
        assert_eq!(
            (r.domain(), r.path(), r.tag()),
            ("127.0.0.1:5000", "x", Some("tag"))
        );

        let r = parse_normalized_named("lowercase:Uppercase").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/lowercase:Uppercase");

        let sha512 = "f".repeat(128);
        let r = parse_normalized_named(&format!(
            "xn--7o8h.com/myimage:xn--7o8h.com@sha512:{sha512}"
        ))
        .unwrap();
        assert_eq!(
            (r.domain(), r.tag()),
            ("xn--7o8h.com", Some("xn--7o8h.com"))
        );

        // A port-like tag on a dotted name is a tag, not a port.
        let r = parse_normalized_named("test.com:5000").unwrap();
        assert_eq!(
            (r.name(), r.tag()),
            ("docker.io/library/test.com", Some("5000"))
        );
    }

    #[test]
    fn accepts_docker_valid_names() {
        for ok in [
            "docker/docker",
            "library/debian",
            "debian",
            "docker.io/docker/docker",
            "docker.io/library/debian",
            "docker.io/debian",
            "index.docker.io/docker/docker",
            "index.docker.io/library/debian",
            "index.docker.io/debian",
            "127.0.0.1:5000/docker/docker",
            "127.0.0.1:5000/library/debian",
            "127.0.0.1:5000/debian",
            "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "docker-rules/docker",
            "docker---rules/docker",
            "doc/docker",
            "d/docker",
            "jess/t",
            "dock__er/docker",
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            "b.gcr.io/test.example.com/my-app:test.example.com",
        ] {
            assert!(parse_normalized_named(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_invalid_references() {
        let too_long = format!(
            "{}255/docker",
            "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_".repeat(4)
        );
        let cases: Vec<(String, &str)> = vec![
            (
                "".into(),
                "repository name must have at least one component",
            ),
            (
                "https://github.com/docker/docker".into(),
                "invalid reference format",
            ),
            ("docker/Docker".into(), "repository name must be lowercase"),
            ("Docker/docker".into(), "repository name must be lowercase"),
            ("Uppercase:tag".into(), "repository name must be lowercase"),
            (
                "test:5000/Uppercase/lowercase:tag".into(),
                "repository name must be lowercase",
            ),
            ("-docker".into(), "invalid reference format"),
            ("-docker/docker".into(), "invalid reference format"),
            (
                "-docker.io/docker/docker".into(),
                "invalid reference format",
            ),
            ("docker///docker".into(), "invalid reference format"),
            (
                "docker.io/docker/Docker".into(),
                "repository name must be lowercase",
            ),
            (
                "docker.io/docker///docker".into(),
                "invalid reference format",
            ),
            (HEX.into(), "cannot specify 64-byte hexadecimal strings"),
            ("docker-/docker".into(), "invalid reference format"),
            ("____/____".into(), "invalid reference format"),
            ("_docker/_docker".into(), "invalid reference format"),
            ("dock..er/docker".into(), "invalid reference format"),
            ("dock_.er/docker".into(), "invalid reference format"),
            ("docker/".into(), "invalid reference format"),
            (":justtag".into(), "invalid reference format"),
            (format!("@sha256:{HEX}"), "invalid reference format"),
            ("aa/asdf$$^/aa".into(), "invalid reference format"),
            ("busybox:-tag".into(), "invalid reference format"),
            (
                format!("busybox:{}", "t".repeat(129)),
                "invalid reference format",
            ),
            ("[fc00::1]:5000/repo".into(), "invalid reference format"),
            (
                too_long.clone(),
                "repository name must not be more than 255 characters",
            ),
            (
                format!("{}a:tag", "a/".repeat(128)),
                "repository name must not be more than 255 characters",
            ),
            (
                "repo@sha256:ffffffffffffffffffffffffffffffffff".into(),
                "invalid checksum digest length",
            ),
            (
                format!("validname@invaliddigest:{HEX}"),
                "unsupported digest algorithm",
            ),
            (
                format!("validname@sha256:{}", HEX.to_uppercase()),
                "invalid checksum digest format",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(reason(&input), expected, "{input}");
        }
    }

    #[test]
    fn parse_docker_ref_defaults_tag() {
        let digest = "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582";
        let cases = [
            (
                "busybox".to_owned(),
                "docker.io/library/busybox:latest".to_owned(),
            ),
            (
                "busybox:latest".into(),
                "docker.io/library/busybox:latest".into(),
            ),
            (
                format!("busybox@{digest}"),
                format!("docker.io/library/busybox@{digest}"),
            ),
            (
                "library/busybox".into(),
                "docker.io/library/busybox:latest".into(),
            ),
            (
                "docker.io/busybox".into(),
                "docker.io/library/busybox:latest".into(),
            ),
            (
                "docker.io/library/busybox".into(),
                "docker.io/library/busybox:latest".into(),
            ),
            (
                "docker.io/busybox:latest".into(),
                "docker.io/library/busybox:latest".into(),
            ),
            (
                "library/busybox:latest".into(),
                "docker.io/library/busybox:latest".into(),
            ),
            (
                "gcr.io/library/busybox".into(),
                "gcr.io/library/busybox:latest".into(),
            ),
            (
                format!("gcr.io/library/busybox:latest@{digest}"),
                format!("gcr.io/library/busybox@{digest}"),
            ),
        ];
        for (input, expected) in cases {
            let r = parse_docker_ref(&input).unwrap();
            assert_eq!(r.to_string(), expected, "{input}");
            assert_eq!(parse_normalized_named(&expected).unwrap(), r, "{input}");
        }
    }

    #[test]
    fn with_tag_digest_and_trim() {
        let r = parse_normalized_named("test.com:8000/foo").unwrap();
        assert_eq!(
            r.with_tag("TAG5").unwrap().to_string(),
            "test.com:8000/foo:TAG5"
        );
        let err = r.with_tag("-foo").unwrap_err();
        assert_eq!(err.kind(), Kind::InvalidArgument);
        assert!(err.message().contains("\"-foo\""), "{err}");
        let digest = Digest::parse(&format!("sha256:{HEX}")).unwrap();
        let both = r.with_tag("t").unwrap().with_digest(digest);
        assert_eq!(
            both.to_string(),
            format!("test.com:8000/foo:t@sha256:{HEX}")
        );
        assert_eq!(both.trim(), r);
    }

    fn arb_reference_text() -> impl Strategy<Value = String> {
        let domain = prop_oneof![
            Just(String::new()),
            prop::sample::select(vec![
                "docker.io/",
                "index.docker.io/",
                "localhost/",
                "localhost:5000/",
                "127.0.0.1:5000/"
            ])
            .prop_map(String::from),
            "[a-zA-Z0-9]{1,5}(\\.[a-z0-9]([a-z0-9-]{0,2}[a-z0-9])?){1,2}(:[0-9]{1,5})?/",
        ];
        let component = "[a-z0-9]{1,5}(([._]|__|-{1,2})[a-z0-9]{1,5})?";
        let path = prop::collection::vec(component, 1..4).prop_map(|c| c.join("/"));
        let tag = prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}");
        let digest = prop::option::of("[a-f0-9]{64}");
        (domain, path, tag, digest).prop_map(|(domain, path, tag, digest)| {
            let mut s = domain + &path;
            if let Some(tag) = tag {
                s = s + ":" + &tag;
            }
            if let Some(hex) = digest {
                s = s + "@sha256:" + &hex;
            }
            s
        })
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            if let Err(err) = parse_normalized_named(&s) {
                prop_assert_eq!(err.kind(), Kind::InvalidArgument);
            }
        }

        #[test]
        fn never_panics_near_the_grammar(s in "[a-zA-Z0-9._:/@-]{0,80}") {
            let _ = parse_normalized_named(&s);
            let _ = parse_docker_ref(&s);
        }

        #[test]
        fn to_string_round_trips(s in arb_reference_text()) {
            let r = parse_normalized_named(&s).unwrap();
            prop_assert_eq!(&parse_normalized_named(&r.to_string()).unwrap(), &r);
            let joined = match r.domain() {
                "" => r.path().to_owned(),
                domain => format!("{domain}/{}", r.path()),
            };
            prop_assert_eq!(joined, r.name());
            let docker = parse_docker_ref(&s).unwrap();
            prop_assert_eq!(&parse_docker_ref(&docker.to_string()).unwrap(), &docker);
        }
    }
}
