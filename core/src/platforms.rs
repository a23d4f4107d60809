//! OCI platforms (`linux/arm64`, `linux/arm/v7`, …) as containerd's
//! `platforms` package handles them: parsing specifiers, normalising the many
//! spellings of an architecture, formatting, and choosing among the platforms
//! of an image index.
//!
//! Names follow Go (`GOOS`/`GOARCH`), not Rust: the host `x86_64` is `amd64`,
//! `aarch64` is `arm64`, `macos` is `darwin`. Platforms come over the wire
//! from Go clients and registries, so Go's vocabulary is the one that matters.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use crate::{Error, Result};

/// An OCI platform: the `platform` object of an image index entry.
///
/// Empty strings mean "not set", as in the OCI JSON and containerd's protobuf
/// `types.Platform`, so values map to the wire without translation.
///
/// ```
/// use crated_core::platforms::{self, Platform};
///
/// let p: Platform = "linux/arm/v7".parse().unwrap();
/// assert_eq!((p.os.as_str(), p.architecture.as_str()), ("linux", "arm"));
/// assert_eq!(p.variant, "v7");
/// assert_eq!(p.to_string(), "linux/arm/v7");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Platform {
    /// Operating system, Go spelling: `linux`, `windows`, `darwin`, …
    pub os: String,
    /// CPU architecture, Go spelling: `amd64`, `arm64`, `arm`, `386`, …
    pub architecture: String,
    /// CPU variant such as `v7` for arm or `v2` for amd64; empty if none.
    pub variant: String,
    /// Operating system version; only Windows images set it.
    pub os_version: String,
    /// Required operating system features; only Windows images set them.
    pub os_features: Vec<String>,
}

impl Platform {
    /// A platform with just an OS and architecture.
    pub fn new(os: impl Into<String>, architecture: impl Into<String>) -> Self {
        Self {
            os: os.into(),
            architecture: architecture.into(),
            ..Self::default()
        }
    }

    /// The same platform with `variant` set.
    #[must_use]
    pub fn with_variant(mut self, variant: impl Into<String>) -> Self {
        self.variant = variant.into();
        self
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self))
    }
}

impl FromStr for Platform {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        parse(s)
    }
}

/// Parses a platform specifier: `os`, `arch`, `os/arch` or `os/arch/variant`.
///
/// Like containerd, a lone component that names a known OS takes the host's
/// architecture, and one that names a known architecture takes the host's OS.
/// Architectures are normalised (`x86_64` → `amd64`, `armhf` → `arm`
/// `v7`, …), except that a plain `arm` stays variant-less (v7 is implied) and
/// an explicit `arm64/v8` keeps its variant, both as containerd does.
///
/// ```
/// use crated_core::platforms::parse;
///
/// assert_eq!(parse("Linux/x86_64").unwrap().to_string(), "linux/amd64");
/// assert_eq!(parse("linux/aarch64").unwrap().to_string(), "linux/arm64");
/// assert_eq!(parse("linux/armel").unwrap().to_string(), "linux/arm/v6");
/// assert!(parse("linux/arm/v7/extra").is_err());
/// ```
pub fn parse(specifier: &str) -> Result<Platform> {
    if specifier.contains('*') {
        return Err(Error::invalid_argument(format!(
            "{specifier:?}: wildcards not yet supported"
        )));
    }
    let parts: Vec<&str> = specifier.split('/').collect();
    if let Some(bad) = parts.iter().find(|part| !is_specifier_component(part)) {
        return Err(Error::invalid_argument(format!(
            "{bad:?} is an invalid component of {specifier:?}: \
             platform specifier component must match \"^[A-Za-z0-9_-]+$\""
        )));
    }

    match parts[..] {
        [single] => {
            let os = normalize_os(single);
            if is_known_os(&os) {
                // The host's variant is implied, except arm v7, which is the
                // unmarked default for arm.
                let (architecture, variant) = match (host_arch(), cpu_variant()) {
                    ("arm", "v7") => ("arm", ""),
                    ("arm", variant) => ("arm", variant),
                    (arch, _) => (arch, ""),
                };
                return Ok(Platform::new(os, architecture).with_variant(variant));
            }
            let (architecture, variant) = elide_arm_v7(normalize_arch(single, ""));
            if is_known_arch(&architecture) {
                return Ok(Platform::new(host_os(), architecture).with_variant(variant));
            }
            Err(Error::invalid_argument(format!(
                "{specifier:?}: unknown operating system or architecture"
            )))
        }
        [os, arch] => {
            let (architecture, variant) = elide_arm_v7(normalize_arch(arch, ""));
            Ok(Platform::new(normalize_os(os), architecture).with_variant(variant))
        }
        [os, arch, variant] => {
            let (architecture, mut variant) = normalize_arch(arch, variant);
            // Normalisation drops arm64's default variant; an explicit one in
            // the specifier is kept so that formatting gives it back.
            if architecture == "arm64" && variant.is_empty() {
                variant = "v8".to_owned();
            }
            Ok(Platform::new(normalize_os(os), architecture).with_variant(variant))
        }
        _ => Err(Error::invalid_argument(format!(
            "{specifier:?}: cannot parse platform specifier"
        ))),
    }
}

/// A two-part specifier leaves arm's default variant unsaid, so parsing it
/// does not add one.
fn elide_arm_v7((architecture, variant): (String, String)) -> (String, String) {
    if architecture == "arm" && variant == "v7" {
        (architecture, String::new())
    } else {
        (architecture, variant)
    }
}

/// Formats `platform` as `os/arch[/variant]`, or `unknown` without an OS.
///
/// ```
/// use crated_core::platforms::{format, Platform};
///
/// assert_eq!(format(&Platform::new("linux", "arm64")), "linux/arm64");
/// assert_eq!(format(&Platform::new("linux", "arm").with_variant("v7")), "linux/arm/v7");
/// assert_eq!(format(&Platform::default()), "unknown");
/// ```
pub fn format(platform: &Platform) -> String {
    if platform.os.is_empty() {
        return "unknown".to_owned();
    }
    [&platform.os, &platform.architecture, &platform.variant]
        .into_iter()
        .filter(|part| !part.is_empty())
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("/")
}

/// Normalises OS, architecture and variant to their canonical spelling;
/// OS version and features are kept as they are. An empty OS becomes the
/// host's.
///
/// ```
/// use crated_core::platforms::{normalize, Platform};
///
/// let p = normalize(Platform::new("linux", "aarch64").with_variant("v8"));
/// assert_eq!(p, Platform::new("linux", "arm64"));
/// let p = normalize(Platform::new("linux", "arm"));
/// assert_eq!(p, Platform::new("linux", "arm").with_variant("v7"));
/// ```
pub fn normalize(mut platform: Platform) -> Platform {
    platform.os = normalize_os(&platform.os);
    let (architecture, variant) = normalize_arch(&platform.architecture, &platform.variant);
    platform.architecture = architecture;
    platform.variant = variant;
    platform
}

/// The platform of this host, as containerd's `DefaultSpec`.
///
/// On Linux arm and arm64 the variant comes from `/proc/cpuinfo` (empty if it
/// cannot be read); on other arm hosts it is `v7` or `v8`. Windows hosts get
/// no `os_version`, so the build-matching of containerd's Windows matcher is
/// not reproduced.
pub fn default_platform() -> Platform {
    Platform::new(host_os(), host_arch()).with_variant(cpu_variant())
}

/// [`format()`] of [`default_platform`], e.g. `linux/amd64`.
pub fn default_string() -> String {
    format(&default_platform())
}

/// The matcher for images this host runs, as containerd's `Default`: the
/// host platform and those it can emulate natively (see [`Matcher::only`]).
/// macOS also accepts Linux images of its architecture, after its own.
pub fn default_matcher() -> Matcher {
    let host = default_platform();
    if host.os == "darwin" {
        Matcher::ordered([host, Platform::new("linux", host_arch())])
    } else {
        Matcher::only(&host)
    }
}

/// Selects platforms and ranks the selected ones, for picking the manifest of
/// an image index (containerd's `MatchComparer`).
///
/// Matching compares OS, architecture and variant after [`normalize`] on both
/// sides; OS version and features are ignored.
///
/// ```
/// use crated_core::platforms::{parse, Matcher};
///
/// let m = Matcher::only(&parse("linux/amd64").unwrap());
/// let amd64 = parse("linux/amd64").unwrap();
/// let i386 = parse("linux/386").unwrap();
/// assert!(m.matches(&amd64) && m.matches(&i386));
/// assert!(!m.matches(&parse("linux/arm64").unwrap()));
///
/// let mut candidates = vec![i386.clone(), amd64.clone()];
/// candidates.sort_by(|a, b| m.compare(a, b));
/// assert_eq!(candidates, [amd64, i386]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher(Rule);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    /// Matches any of the (normalised) platforms, preferring earlier ones.
    Ordered(Vec<Platform>),
    /// Matches any of the (normalised) platforms, with no preference.
    Any(Vec<Platform>),
    /// Matches everything, with no preference.
    All,
}

impl Matcher {
    /// `platform` and what it can run natively, best first: for `amd64/vN`
    /// the lower amd64 levels then `386`; for `arm/vN` the arm variants down
    /// to v5; for `arm64` also `arm/v8` down to `arm/v5`.
    pub fn only(platform: &Platform) -> Self {
        Self::ordered(compatible(normalize(platform.clone())))
    }

    /// Exactly `platform` (in any spelling that normalises to it).
    pub fn only_strict(platform: &Platform) -> Self {
        Self::ordered([platform.clone()])
    }

    /// Any of `platforms`, preferring earlier ones.
    pub fn ordered(platforms: impl IntoIterator<Item = Platform>) -> Self {
        Self(Rule::Ordered(
            platforms.into_iter().map(normalize).collect(),
        ))
    }

    /// Any of `platforms`, with no preference among them.
    pub fn any(platforms: impl IntoIterator<Item = Platform>) -> Self {
        Self(Rule::Any(platforms.into_iter().map(normalize).collect()))
    }

    /// Every platform, with no preference.
    pub fn all() -> Self {
        Self(Rule::All)
    }

    /// Whether `platform` is acceptable.
    pub fn matches(&self, platform: &Platform) -> bool {
        self.rank(platform).is_some()
    }

    /// Whether `a` is preferred over `b`; unmatched platforms come last.
    pub fn less(&self, a: &Platform, b: &Platform) -> bool {
        self.compare(a, b) == Ordering::Less
    }

    /// [`Matcher::less`] as an ordering, for `sort_by`: a stable sort puts
    /// the best match first and keeps the index's order among equals.
    pub fn compare(&self, a: &Platform, b: &Platform) -> Ordering {
        // `Option` orders `None` first, but unmatched platforms go last.
        match (self.rank(a), self.rank(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }

    /// How good a match `platform` is: `Some(0)` is best, `None` no match.
    fn rank(&self, platform: &Platform) -> Option<usize> {
        match &self.0 {
            Rule::All => Some(0),
            Rule::Ordered(wanted) | Rule::Any(wanted) => {
                let p = normalize(platform.clone());
                let position = wanted.iter().position(|w| same_platform(w, &p))?;
                Some(if matches!(self.0, Rule::Ordered(_)) {
                    position
                } else {
                    0
                })
            }
        }
    }
}

fn same_platform(a: &Platform, b: &Platform) -> bool {
    a.os == b.os && a.architecture == b.architecture && a.variant == b.variant
}

/// `platform` followed by what it runs natively, best first (containerd's
/// `platformVector`).
fn compatible(platform: Platform) -> Vec<Platform> {
    let sibling = |architecture: &str, variant: String| Platform {
        architecture: architecture.to_owned(),
        variant,
        ..platform.clone()
    };
    let mut out = Vec::new();
    match platform.architecture.as_str() {
        "amd64" => {
            if let Some(level) = variant_level(&platform.variant).filter(|&l| l > 1) {
                out.extend((1..level).rev().map(|l| sibling("amd64", format!("v{l}"))));
            }
            out.push(sibling("386", String::new()));
        }
        "arm" => {
            if let Some(level) = variant_level(&platform.variant).filter(|&l| l > 5) {
                out.extend((5..level).rev().map(|l| sibling("arm", format!("v{l}"))));
            }
        }
        "arm64" => {
            let variant = if platform.variant.is_empty() {
                "v8".to_owned()
            } else {
                platform.variant.clone()
            };
            out.extend(compatible(sibling("arm", variant)));
        }
        _ => {}
    }
    out.insert(0, platform);
    out
}

/// The number in a `vN` (or bare `N`) variant, as Go's `strconv.Atoi` after
/// trimming one `v`, capped at [`MAX_LEVEL`].
fn variant_level(variant: &str) -> Option<i64> {
    let digits = variant.strip_prefix('v').unwrap_or(variant);
    // Atoi accepts a sign; it never matters for real variants but keeps
    // `v+3` meaning what it means to containerd.
    digits.parse::<i64>().ok().map(|level| level.min(MAX_LEVEL))
}

/// containerd expands `arm/v1000000000` into a billion fallbacks; a variant
/// comes from user input, so the expansion stops here instead. Real levels
/// are single digits.
const MAX_LEVEL: i64 = 64;

fn is_specifier_component(part: &str) -> bool {
    !part.is_empty()
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_known_os(os: &str) -> bool {
    matches!(
        os,
        "aix"
            | "android"
            | "darwin"
            | "dragonfly"
            | "freebsd"
            | "hurd"
            | "illumos"
            | "ios"
            | "js"
            | "linux"
            | "nacl"
            | "netbsd"
            | "openbsd"
            | "plan9"
            | "solaris"
            | "windows"
            | "zos"
    )
}

fn is_known_arch(arch: &str) -> bool {
    matches!(
        arch,
        "386"
            | "amd64"
            | "amd64p32"
            | "arm"
            | "armbe"
            | "arm64"
            | "arm64be"
            | "ppc64"
            | "ppc64le"
            | "loong64"
            | "mips"
            | "mipsle"
            | "mips64"
            | "mips64le"
            | "mips64p32"
            | "mips64p32le"
            | "ppc"
            | "riscv"
            | "riscv64"
            | "s390"
            | "s390x"
            | "sparc"
            | "sparc64"
            | "wasm"
    )
}

fn normalize_os(os: &str) -> String {
    if os.is_empty() {
        return host_os().to_owned();
    }
    match os.to_lowercase().as_str() {
        "macos" => "darwin".to_owned(),
        other => other.to_owned(),
    }
}

fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let (arch, variant) = (arch.to_lowercase(), variant.to_lowercase());
    let (arch, variant): (&str, String) = match (arch.as_str(), variant.as_str()) {
        ("i386", _) => ("386", String::new()),
        ("x86_64" | "x86-64" | "amd64", "v1") => ("amd64", String::new()),
        ("x86_64" | "x86-64" | "amd64", _) => ("amd64", variant),
        ("aarch64" | "arm64", "8" | "v8") => ("arm64", String::new()),
        ("aarch64" | "arm64", _) => ("arm64", variant),
        ("armhf", _) => ("arm", "v7".to_owned()),
        ("armel", _) => ("arm", "v6".to_owned()),
        ("arm", "" | "7") => ("arm", "v7".to_owned()),
        ("arm", "5" | "6" | "8") => ("arm", format!("v{variant}")),
        (other, _) => return (other.to_owned(), variant),
    };
    (arch.to_owned(), variant)
}

/// The host OS in Go's spelling.
fn host_os() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    }
}

/// The host architecture in Go's spelling (`GOARCH`).
fn host_arch() -> &'static str {
    let little = cfg!(target_endian = "little");
    match std::env::consts::ARCH {
        "x86" => "386",
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "loongarch64" => "loong64",
        "powerpc" => "ppc",
        "powerpc64" if little => "ppc64le",
        "powerpc64" => "ppc64",
        "mips" if little => "mipsle",
        "mips64" if little => "mips64le",
        "wasm32" => "wasm",
        other => other,
    }
}

/// The host's CPU variant, read once: empty unless the host is arm.
fn cpu_variant() -> &'static str {
    static VARIANT: OnceLock<String> = OnceLock::new();
    VARIANT.get_or_init(|| {
        let arch = host_arch();
        if !matches!(arch, "arm" | "arm64") {
            return String::new();
        }
        if host_os() != "linux" {
            // Windows and macOS only run v7 arm and v8 arm64.
            return if arch == "arm64" { "v8" } else { "v7" }.to_owned();
        }
        // containerd logs and carries on with no variant when cpuinfo is
        // unreadable; so do we.
        std::fs::read_to_string("/proc/cpuinfo")
            .map(|info| variant_from_cpuinfo(&info, arch))
            .unwrap_or_default()
    })
}

/// The arm variant from the text of `/proc/cpuinfo` on an `arch` host; empty
/// if the architecture line is missing, `unknown` if it is not understood.
fn variant_from_cpuinfo(cpuinfo: &str, arch: &str) -> String {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|line| {
            // Like containerd, split on every ':' and take the second piece.
            let mut pieces = line.split(':');
            let key = pieces.next()?;
            let value = pieces.next()?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    };
    let Some(mut variant) = field("Cpu architecture") else {
        return String::new();
    };
    // Raspberry Pi ARMv6 kernels report architecture 7.
    if arch == "arm"
        && variant == "7"
        && field("model name").is_some_and(|m| m.to_lowercase().starts_with("armv6-compatible"))
    {
        variant = "6";
    }
    match variant.to_lowercase().as_str() {
        "8" | "aarch64" => "v8",
        "7" | "7m" | "?(12)" | "?(13)" | "?(14)" | "?(15)" | "?(16)" | "?(17)" => "v7",
        "6" | "6tej" => "v6",
        "5" | "5t" | "5te" | "5tej" => "v5",
        "4" | "4t" => "v4",
        "3" => "v3",
        _ => "unknown",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;
    use proptest::prelude::*;

    fn p(os: &str, arch: &str, variant: &str) -> Platform {
        Platform::new(os, arch).with_variant(variant)
    }

    fn host_default_variant() -> &'static str {
        match (host_arch(), cpu_variant()) {
            ("arm", "v7") => "",
            ("arm", v) => v,
            _ => "",
        }
    }

    #[test]
    fn parses_containerd_selectors() {
        let (os, arch) = (host_os(), host_arch());
        let cases: Vec<(&str, Platform, String)> = vec![
            ("linux/arm64", p("linux", "arm64", ""), "linux/arm64".into()),
            (
                "linux/arm64/v8",
                p("linux", "arm64", "v8"),
                "linux/arm64/v8".into(),
            ),
            ("linux/arm", p("linux", "arm", ""), "linux/arm".into()),
            (
                "linux/arm/v6",
                p("linux", "arm", "v6"),
                "linux/arm/v6".into(),
            ),
            (
                "linux/arm/v7",
                p("linux", "arm", "v7"),
                "linux/arm/v7".into(),
            ),
            ("arm", p(os, "arm", ""), format!("{os}/arm")),
            ("armel", p(os, "arm", "v6"), format!("{os}/arm/v6")),
            ("armhf", p(os, "arm", ""), format!("{os}/arm")),
            ("Aarch64", p(os, "arm64", ""), format!("{os}/arm64")),
            ("x86_64", p(os, "amd64", ""), format!("{os}/amd64")),
            (
                "Linux/x86_64",
                p("linux", "amd64", ""),
                "linux/amd64".into(),
            ),
            ("i386", p(os, "386", ""), format!("{os}/386")),
            ("s390x", p(os, "s390x", ""), format!("{os}/s390x")),
            ("linux/s390x", p("linux", "s390x", ""), "linux/s390x".into()),
            (
                "linux",
                p("linux", arch, host_default_variant()),
                format(&p("linux", arch, host_default_variant())),
            ),
            (
                "macOS",
                p("darwin", arch, host_default_variant()),
                format(&p("darwin", arch, host_default_variant())),
            ),
        ];
        for (input, expected, formatted) in cases {
            let parsed = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(parsed, expected, "{input}");
            assert!(Matcher::only_strict(&parsed).matches(&expected), "{input}");
            assert_eq!(format(&parsed), formatted, "{input}");
            assert_eq!(
                format(&parse(&formatted).unwrap()),
                formatted,
                "{input} reparsed"
            );
        }
    }

    #[test]
    fn strict_matcher_accepts_other_spellings() {
        let cases = [
            (
                "linux/arm64",
                vec![
                    p("linux", "aarch64", ""),
                    p("linux", "aarch64", "v8"),
                    p("linux", "arm64", "v8"),
                ],
            ),
            (
                "linux/arm64/v8",
                vec![
                    p("linux", "aarch64", ""),
                    p("linux", "aarch64", "v8"),
                    p("linux", "arm64", ""),
                ],
            ),
            (
                "linux/arm",
                vec![
                    p("linux", "arm", "v7"),
                    p("linux", "armhf", ""),
                    p("linux", "arm", "7"),
                ],
            ),
            ("linux/arm/v6", vec![p("linux", "armel", "")]),
            (
                "linux/arm/v7",
                vec![p("linux", "arm", ""), p("linux", "armhf", "")],
            ),
        ];
        for (spec, others) in cases {
            let m = Matcher::only_strict(&parse(spec).unwrap());
            for other in others {
                assert!(m.matches(&other), "{spec} should match {other:?}");
            }
        }
    }

    #[test]
    fn rejects_bad_specifiers_naming_them() {
        for bad in [
            "",
            "/linux/arm",
            "linux/arm/",
            "linux /arm",
            "linux/&arm",
            "linux/arm/foo/bar",
            "linux/*",
            "plan10",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.kind(), Kind::InvalidArgument);
            assert!(err.message().contains(&format!("{bad:?}")), "{err}");
        }
        assert!(parse("linux/arm/foo/bar")
            .unwrap_err()
            .message()
            .ends_with("cannot parse platform specifier"));
        assert!(parse("*")
            .unwrap_err()
            .message()
            .ends_with("wildcards not yet supported"));
        assert!(parse("i686")
            .unwrap_err()
            .message()
            .ends_with("unknown operating system or architecture"));
    }

    #[test]
    fn normalizes_like_containerd() {
        let n = |os, arch, variant| normalize(p(os, arch, variant));
        assert_eq!(n("Linux", "X86_64", "v1"), p("linux", "amd64", ""));
        assert_eq!(n("linux", "x86-64", "v3"), p("linux", "amd64", "v3"));
        assert_eq!(n("linux", "i386", "v2"), p("linux", "386", ""));
        assert_eq!(n("linux", "aarch64", "8"), p("linux", "arm64", ""));
        assert_eq!(n("linux", "arm64", "v9"), p("linux", "arm64", "v9"));
        assert_eq!(n("linux", "arm", ""), p("linux", "arm", "v7"));
        assert_eq!(n("linux", "arm", "6"), p("linux", "arm", "v6"));
        assert_eq!(n("linux", "armhf", "v6"), p("linux", "arm", "v7"));
        assert_eq!(n("macos", "arm64", ""), p("darwin", "arm64", ""));
        assert_eq!(n("", "riscv64", ""), p(host_os(), "riscv64", ""));
        let windows = Platform {
            os_version: "10.0.17763.1".into(),
            os_features: vec!["win32k".into()],
            ..p("Windows", "AMD64", "")
        };
        let normalized = normalize(windows.clone());
        assert_eq!(
            (normalized.os_version, normalized.os_features),
            (windows.os_version, windows.os_features)
        );
    }

    fn check_only(matcher: fn(&Platform) -> Matcher, platform: &str, yes: &[&str], no: &[&str]) {
        let m = matcher(&parse(platform).unwrap());
        for (expected, list) in [(true, yes), (false, no)] {
            for other in list {
                assert_eq!(
                    m.matches(&parse(other).unwrap()),
                    expected,
                    "{platform} vs {other}"
                );
            }
        }
    }

    #[test]
    fn only_matches_compatible_platforms() {
        let only = Matcher::only as fn(&Platform) -> Matcher;
        let others = ["windows/amd64", "windows/arm"];
        check_only(
            only,
            "linux/amd64",
            &["linux/amd64", "linux/386"],
            &[
                "linux/amd64/v2",
                "linux/arm/v7",
                "linux/arm64",
                others[0],
                others[1],
            ],
        );
        check_only(
            only,
            "linux/amd64/v2",
            &[
                "linux/amd64",
                "linux/amd64/v1",
                "linux/amd64/v2",
                "linux/386",
            ],
            &[
                "linux/amd64/v3",
                "linux/amd64/v4",
                "linux/arm/v7",
                "linux/arm64",
                others[0],
                others[1],
            ],
        );
        check_only(
            only,
            "linux/386",
            &["linux/386"],
            &[
                "linux/amd64",
                "linux/arm/v7",
                "linux/arm64",
                others[0],
                others[1],
            ],
        );
        check_only(
            only,
            "windows/amd64",
            &["windows/amd64"],
            &["linux/amd64", "linux/arm/v7", "linux/arm64", "windows/arm"],
        );
        check_only(
            only,
            "linux/arm/v8",
            &[
                "linux/arm",
                "linux/arm/v5",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm/v8",
            ],
            &[
                "linux/amd64",
                "linux/arm/v4",
                "linux/arm64",
                others[0],
                others[1],
            ],
        );
        check_only(
            only,
            "linux/arm/v7",
            &["linux/arm", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7"],
            &[
                "linux/amd64",
                "linux/arm/v4",
                "linux/arm/v8",
                "linux/arm64",
                others[0],
                others[1],
            ],
        );
        check_only(
            only,
            "linux/arm/v6",
            &["linux/arm/v5", "linux/arm/v6"],
            &[
                "linux/amd64",
                "linux/arm",
                "linux/arm/v4",
                "linux/arm/v7",
                "linux/arm/v8",
                "linux/arm64",
            ],
        );
        check_only(
            only,
            "linux/arm/v5",
            &["linux/arm/v5"],
            &["linux/arm", "linux/arm/v4", "linux/arm/v6", "linux/arm64"],
        );
        check_only(
            only,
            "linux/arm/v4",
            &["linux/arm/v4"],
            &["linux/arm", "linux/arm/v5", "linux/arm/v6", "linux/arm64"],
        );
        check_only(
            only,
            "linux/arm64",
            &[
                "linux/arm",
                "linux/arm/v5",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm/v8",
                "linux/arm64",
                "linux/arm64/v8",
            ],
            &[
                "linux/amd64",
                "linux/arm/v4",
                "linux/arm/v9",
                "linux/arm64/v9",
                others[0],
                others[1],
            ],
        );
    }

    #[test]
    fn only_strict_matches_just_the_platform() {
        let strict = Matcher::only_strict as fn(&Platform) -> Matcher;
        check_only(
            strict,
            "linux/amd64",
            &["linux/amd64"],
            &["linux/386", "linux/arm/v7", "linux/arm64", "windows/amd64"],
        );
        check_only(
            strict,
            "linux/arm/v8",
            &["linux/arm/v8"],
            &["linux/arm", "linux/arm/v5", "linux/arm/v7", "linux/arm64"],
        );
        check_only(
            strict,
            "linux/arm/v7",
            &["linux/arm", "linux/arm/v7"],
            &["linux/arm/v5", "linux/arm/v6", "linux/arm/v8"],
        );
        check_only(
            strict,
            "linux/arm64",
            &["linux/arm64", "linux/arm64/v8"],
            &[
                "linux/arm",
                "linux/arm/v8",
                "linux/arm/v9",
                "linux/arm64/v9",
                "linux/amd64",
            ],
        );
    }

    #[test]
    fn orders_best_match_first() {
        let m = Matcher::only(&parse("linux/arm64").unwrap());
        let mut index: Vec<Platform> = [
            "linux/amd64",
            "linux/arm/v5",
            "linux/arm/v7",
            "linux/arm64/v8",
            "linux/arm/v6",
        ]
        .map(|s| parse(s).unwrap())
        .to_vec();
        index.sort_by(|a, b| m.compare(a, b));
        let order: Vec<String> = index.iter().map(format).collect();
        assert_eq!(
            order,
            [
                "linux/arm64/v8",
                "linux/arm/v7",
                "linux/arm/v6",
                "linux/arm/v5",
                "linux/amd64"
            ]
        );
        assert!(m.less(
            &parse("linux/arm/v7").unwrap(),
            &parse("linux/amd64").unwrap()
        ));
        assert!(!m.less(&parse("linux/amd64").unwrap(), &parse("linux/386").unwrap()));

        let any = Matcher::any([
            parse("linux/arm/v6").unwrap(),
            parse("linux/amd64").unwrap(),
        ]);
        let (arm, amd, s390) = (
            parse("linux/arm/v6").unwrap(),
            parse("linux/amd64").unwrap(),
            parse("linux/s390x").unwrap(),
        );
        assert!(!any.less(&arm, &amd) && !any.less(&amd, &arm));
        assert!(any.less(&arm, &s390) && !any.less(&s390, &arm));
        assert!(Matcher::all().matches(&s390) && !Matcher::all().less(&arm, &s390));
    }

    #[test]
    fn default_platform_is_matched_by_default_matcher() {
        let host = default_platform();
        assert_eq!(host.os, host_os());
        assert_eq!(host.architecture, host_arch());
        assert!(default_matcher().matches(&host));
        assert_eq!(default_string(), format(&host));
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!(default_string(), "linux/amd64");
        }
    }

    #[test]
    fn reads_variant_from_cpuinfo() {
        let pi = "processor\t: 0\n\
                  model name\t: ARMv6-compatible processor rev 7 (v6l)\n\
                  CPU architecture: 7\n";
        assert_eq!(variant_from_cpuinfo(pi, "arm"), "v6");
        assert_eq!(variant_from_cpuinfo(pi, "arm64"), "v7");
        assert_eq!(variant_from_cpuinfo("CPU architecture: 8\n", "arm64"), "v8");
        assert_eq!(
            variant_from_cpuinfo("cpu architecture : AArch64\n", "arm64"),
            "v8"
        );
        assert_eq!(
            variant_from_cpuinfo("CPU architecture: 5TEJ\n", "arm"),
            "v5"
        );
        assert_eq!(
            variant_from_cpuinfo("CPU architecture: 42\n", "arm"),
            "unknown"
        );
        assert_eq!(variant_from_cpuinfo("processor: 0\n", "arm"), "");
    }

    fn arb_platform() -> impl Strategy<Value = Platform> {
        let os = prop_oneof![
            Just(String::new()),
            prop::sample::select(vec![
                "linux", "Linux", "windows", "darwin", "macOS", "freebsd"
            ])
            .prop_map(String::from),
            "[A-Za-z0-9_-]{1,8}",
        ];
        let arch = prop_oneof![
            prop::sample::select(vec![
                "amd64", "x86_64", "X86-64", "i386", "386", "arm", "armhf", "armel", "arm64",
                "aarch64", "s390x", "riscv64",
            ])
            .prop_map(String::from),
            "[A-Za-z0-9_-]{1,8}",
        ];
        let variant = prop_oneof![
            Just(String::new()),
            prop::sample::select(vec![
                "v1", "v2", "v5", "5", "6", "7", "8", "v7", "v8", "V8", "v9"
            ])
            .prop_map(String::from),
            "[A-Za-z0-9_-]{1,4}",
        ];
        (os, arch, variant).prop_map(|(os, arch, variant)| p(&os, &arch, &variant))
    }

    proptest! {
        #[test]
        fn parse_inverts_format_of_normalized(platform in arb_platform()) {
            let normalized = normalize(platform);
            prop_assert_eq!(parse(&format(&normalized)).unwrap(), normalized.clone());
            prop_assert_eq!(normalize(normalized.clone()), normalized);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            if let Ok(platform) = parse(&s) {
                prop_assert!(Matcher::only_strict(&platform).matches(&platform));
            }
        }

        #[test]
        fn only_prefers_the_platform_itself(platform in arb_platform(), other in arb_platform()) {
            let m = Matcher::only(&platform);
            prop_assert!(m.matches(&platform));
            prop_assert!(!m.less(&other, &platform));
        }
    }
}
