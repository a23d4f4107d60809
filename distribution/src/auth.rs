//! Registry authentication, as docker's and containerd's authorizers: a
//! request first goes out with what is known for its host; a 401 names the
//! scheme in `WWW-Authenticate`. `Basic` sends the credentials; `Bearer`
//! fetches a token from the challenge's realm for the repository scope
//! (anonymously, or with the credentials as basic auth) and the request is
//! sent again with it. Tokens are cached per host and scope until they
//! expire.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::error::{Error, Result};

/// A user name and secret for a registry host.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// User name; empty with an identity token.
    pub username: String,
    /// Password or token.
    pub secret: String,
    /// The secret is a bearer token for the registry itself (Docker's
    /// `registrytoken`, the CRI's `registry_token`): presented as it is
    /// when the registry asks for a bearer token, no token server asked.
    pub registry_token: bool,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("registry_token", &self.registry_token)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// `user:secret` as ctr's `--user` takes it; the secret may be empty
    /// (ctr then asks for it).
    pub fn parse_user(user: &str) -> Self {
        match user.split_once(':') {
            Some((u, s)) => Self {
                username: u.to_owned(),
                secret: s.to_owned(),
                registry_token: false,
            },
            None => Self {
                username: user.to_owned(),
                secret: String::new(),
                registry_token: false,
            },
        }
    }

    fn basic(&self) -> String {
        let raw = format!("{}:{}", self.username, self.secret);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Where credentials for a host come from.
pub type CredentialsFn = Arc<dyn Fn(&str) -> Option<Credentials> + Send + Sync>;

/// Credentials from a docker `config.json` (`auths.<host>.identitytoken`,
/// else its `registrytoken`, else `auth` = base64 `user:password`, else
/// `username`/`password`);
/// `None` for hosts it does not list. `docker.io` is also looked up as docker's legacy
/// `https://index.docker.io/v1/` key.
pub fn docker_config(path: &Path) -> Result<CredentialsFn> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadDockerConfig {
        path: path.to_owned(),
        source,
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| Error::DockerConfig {
            path: path.to_owned(),
            source,
        })?;
    let mut found = HashMap::new();
    if let Some(auths) = value.get("auths").and_then(|a| a.as_object()) {
        for (key, entry) in auths {
            let host = key
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            let host = if host == "index.docker.io" {
                "registry-1.docker.io".to_owned()
            } else {
                host
            };
            let identity_token = entry
                .get("identitytoken")
                .and_then(|t| t.as_str())
                .filter(|t| !t.is_empty());
            let registry_token = entry
                .get("registrytoken")
                .and_then(|t| t.as_str())
                .filter(|t| !t.is_empty());
            let creds = if let Some(token) = identity_token {
                // `docker login` to a registry of identity tokens (ACR)
                // stores one beside a placeholder user: the token is what
                // the registry takes, as an OAuth refresh token.
                Credentials {
                    username: String::new(),
                    secret: token.to_owned(),
                    registry_token: false,
                }
            } else if let Some(token) = registry_token {
                Credentials {
                    username: String::new(),
                    secret: token.to_owned(),
                    registry_token: true,
                }
            } else if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(auth)
                    .map_err(|source| Error::DockerConfigAuth {
                        path: path.to_owned(),
                        key: key.clone(),
                        source,
                    })?;
                Credentials::parse_user(&String::from_utf8_lossy(&raw))
            } else {
                Credentials {
                    username: entry
                        .get("username")
                        .and_then(|u| u.as_str())
                        .unwrap_or_default()
                        .to_owned(),
                    secret: entry
                        .get("password")
                        .and_then(|u| u.as_str())
                        .unwrap_or_default()
                        .to_owned(),
                    registry_token: false,
                }
            };
            found.insert(host, creds);
        }
    }
    Ok(Arc::new(move |host: &str| found.get(host).cloned()))
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm="…"`.
    Basic,
    /// `Bearer realm="…",service="…",scope="…"`.
    Bearer {
        /// Token endpoint.
        realm: String,
        /// Service name to ask for.
        service: Option<String>,
        /// Scope the registry asked for, if it said.
        scope: Option<String>,
    },
}

/// Parses the first challenge of a `WWW-Authenticate` value that we
/// support.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        }),
        _ => None,
    }
}

/// `key="value", key=value` pairs; quoted values may hold commas and
/// escaped quotes.
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
}

#[derive(Debug, Clone)]
struct Token {
    value: String,
    expires: Instant,
}

/// What is known per host: its challenge and the tokens fetched for it.
#[derive(Default)]
pub(crate) struct AuthCache {
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<HashMap<(String, String), Token>>,
}

impl AuthCache {
    pub(crate) fn challenge(&self, host: &str) -> Option<Challenge> {
        self.challenges
            .lock()
            .ok()
            .and_then(|c| c.get(host).cloned())
    }

    pub(crate) fn set_challenge(&self, host: &str, challenge: Challenge) {
        if let Ok(mut c) = self.challenges.lock() {
            c.insert(host.to_owned(), challenge);
        }
    }

    pub(crate) fn token(&self, host: &str, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().ok()?;
        let token = tokens.get(&(host.to_owned(), scope.to_owned()))?;
        (token.expires > Instant::now()).then(|| token.value.clone())
    }

    pub(crate) fn set_token(&self, host: &str, scope: &str, value: String, ttl: Duration) {
        if let Ok(mut t) = self.tokens.lock() {
            t.insert(
                (host.to_owned(), scope.to_owned()),
                Token {
                    value,
                    // Refresh a little before the registry would refuse it.
                    expires: Instant::now() + ttl.saturating_sub(Duration::from_secs(10)),
                },
            );
        }
    }
}

/// The `Authorization` value for basic auth with `credentials`.
pub(crate) fn basic_header(credentials: &Credentials) -> String {
    credentials.basic()
}

/// The token endpoint's answer.
#[derive(serde::Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub access_token: String,
    #[serde(default)]
    pub expires_in: u64,
}

impl TokenResponse {
    pub(crate) fn into_token(self) -> Option<(String, Duration)> {
        let value = if self.token.is_empty() {
            self.access_token
        } else {
            self.token
        };
        // Docker's default lifetime when the server does not say.
        let ttl = Duration::from_secs(if self.expires_in == 0 {
            60
        } else {
            self.expires_in
        });
        (!value.is_empty()).then_some((value, ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge("Basic realm=\"Registry Realm\""),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(
            parse_challenge("Bearer service=x"),
            None,
            "a bearer challenge needs a realm"
        );
    }

    #[test]
    fn docker_config_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYTpzcw=="},"127.0.0.1:5000":{"username":"a","password":"b"},"x.azurecr.io":{"auth":"MDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAwOg==","identitytoken":"eyJ0b2tlbiJ9"},"reg.example":{"registrytoken":"cmVn"}}}"#,
        )
        .unwrap();
        let creds = docker_config(&path).unwrap();
        let hub = creds("registry-1.docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.secret.as_str()),
            ("user", "pa:ss")
        );
        assert_eq!(creds("127.0.0.1:5000").unwrap().secret, "b");
        let acr = creds("x.azurecr.io").unwrap();
        assert_eq!(
            (acr.username.as_str(), acr.secret.as_str()),
            ("", "eyJ0b2tlbiJ9"),
            "an identity token wins over the placeholder user"
        );
        assert!(!acr.registry_token);
        let reg = creds("reg.example").unwrap();
        assert!(reg.registry_token && reg.secret == "cmVn", "{reg:?}");
        assert!(creds("other").is_none());
        assert!(
            !format!("{hub:?}").contains("pa:ss"),
            "secrets stay out of Debug"
        );
    }
}
