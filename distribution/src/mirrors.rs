//! Registry endpoints given in the daemon's own configuration instead of
//! a hosts directory: containerd 1.6's deprecated CRI `registry.mirrors`
//! (a domain, or `*` for any, to endpoint URLs) with TLS per endpoint
//! host from `registry.configs.<host>.tls`. Still common in 1.6-era
//! `config.toml` files, so they keep working unchanged.
//!
//! ```
//! use crated_distribution::mirrors::ConfiguredHosts;
//!
//! let hosts = ConfiguredHosts::new(
//!     [("docker.io".to_owned(), vec!["mirror.example:5000".to_owned()])].into(),
//!     Default::default(),
//! )?;
//! let endpoints = hosts.configure("docker.io");
//! assert_eq!(endpoints[0].url(""), "https://mirror.example:5000/v2/");
//! assert_eq!(endpoints[1].host, "registry-1.docker.io");
//! # Ok::<(), crated_distribution::Error>(())
//! ```

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::hosts::{is_localhost, Capabilities, RegistryHost};
use crate::tls::TlsOptions;

/// Mirrors as containerd 1.6's CRI read them: endpoints used for pulls
/// and tag resolution, in order, then the domain's own server.
#[derive(Debug, Clone, Default)]
pub struct ConfiguredHosts {
    /// Domain (or `*`) → its endpoints, parsed.
    mirrors: BTreeMap<String, Vec<Endpoint>>,
    /// Endpoint host (`host[:port]`) → its TLS settings.
    tls: BTreeMap<String, TlsOptions>,
}

#[derive(Debug, Clone)]
struct Endpoint {
    scheme: String,
    host: String,
    path: String,
}

/// The server a domain's images are on when nothing says otherwise.
fn default_host(domain: &str) -> &str {
    if domain == "docker.io" {
        "registry-1.docker.io"
    } else {
        domain
    }
}

fn default_scheme(host: &str) -> &'static str {
    if is_localhost(host) {
        "http"
    } else {
        "https"
    }
}

/// `[scheme://]host[:port][/path]`; the scheme defaults as containerd's
/// (`http` for loopback hosts), the path is kept as written (`/v2` when
/// empty).
fn parse_endpoint(endpoint: &str) -> std::result::Result<Endpoint, String> {
    let (scheme, rest) = match endpoint.split_once("://") {
        Some((scheme, rest)) => (scheme.to_owned(), rest),
        None => {
            let host = endpoint.split('/').next().unwrap_or_default();
            (default_scheme(host).to_owned(), endpoint)
        }
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!("scheme {scheme:?} is not http or https"));
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if host.is_empty() {
        return Err("no host".to_owned());
    }
    Ok(Endpoint {
        scheme,
        host: host.to_owned(),
        path: if path.is_empty() {
            "/v2".to_owned()
        } else {
            path.to_owned()
        },
    })
}

impl ConfiguredHosts {
    /// `mirrors` (domain or `*` → endpoint URLs) and `tls` (endpoint host
    /// → TLS); an endpoint that is not a URL is refused, naming it.
    pub fn new(
        mirrors: BTreeMap<String, Vec<String>>,
        tls: BTreeMap<String, TlsOptions>,
    ) -> Result<Self> {
        let mut parsed = BTreeMap::new();
        for (domain, endpoints) in mirrors {
            let mut list = Vec::new();
            for endpoint in endpoints {
                list.push(
                    parse_endpoint(&endpoint).map_err(|problem| Error::MirrorEndpoint {
                        domain: domain.clone(),
                        endpoint: endpoint.clone(),
                        problem,
                    })?,
                );
            }
            parsed.insert(domain, list);
        }
        Ok(Self {
            mirrors: parsed,
            tls,
        })
    }

    /// The endpoints of `domain`: its mirrors (else those of `*`), then
    /// its own server unless a mirror is that server; each with the TLS
    /// its host is configured with.
    pub fn configure(&self, domain: &str) -> Vec<RegistryHost> {
        let listed = self
            .mirrors
            .get(domain)
            .or_else(|| self.mirrors.get("*"))
            .cloned()
            .unwrap_or_default();
        let mut endpoints = listed;
        if !endpoints.iter().any(|e| e.host == domain) {
            let host = default_host(domain);
            endpoints.push(Endpoint {
                scheme: default_scheme(host).to_owned(),
                host: host.to_owned(),
                path: "/v2".to_owned(),
            });
        }
        endpoints
            .into_iter()
            .map(|e| {
                let tls = self.tls.get(&e.host).cloned().unwrap_or_default();
                RegistryHost {
                    scheme: e.scheme,
                    host: e.host,
                    path: e.path,
                    // containerd's CRI pulls through these; it never
                    // pushes.
                    capabilities: Capabilities {
                        pull: true,
                        resolve: true,
                        push: false,
                    },
                    skip_verify: tls.skip_verify,
                    ca: tls.ca,
                    client: tls.client,
                    headers: Vec::new(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn mirrors_come_first_then_the_domain_unless_listed() {
        let tls = TlsOptions {
            skip_verify: false,
            ca: vec![PathBuf::from("/etc/ca.pem")],
            client: None,
        };
        let hosts = ConfiguredHosts::new(
            [
                (
                    "docker.io".to_owned(),
                    vec![
                        "https://mirror.example/some/path/".to_owned(),
                        "localhost:5000".to_owned(),
                    ],
                ),
                (
                    "quay.io".to_owned(),
                    vec!["http://quay.io".to_owned(), "https://m.example".to_owned()],
                ),
                ("*".to_owned(), vec!["catch.example".to_owned()]),
            ]
            .into(),
            [("mirror.example".to_owned(), tls.clone())].into(),
        )
        .unwrap();
        let urls = |domain: &str| -> Vec<String> {
            hosts.configure(domain).iter().map(|h| h.url("")).collect()
        };
        assert_eq!(
            urls("docker.io"),
            [
                "https://mirror.example/some/path/",
                "http://localhost:5000/v2/",
                "https://registry-1.docker.io/v2/"
            ]
        );
        // The domain itself among the mirrors: not added again.
        assert_eq!(
            urls("quay.io"),
            ["http://quay.io/v2/", "https://m.example/v2/"]
        );
        assert_eq!(
            urls("gcr.io"),
            ["https://catch.example/v2/", "https://gcr.io/v2/"]
        );
        let docker = hosts.configure("docker.io");
        assert_eq!(docker[0].tls(), tls);
        assert_eq!(docker[1].tls(), TlsOptions::default());
        assert!(!docker[0].capabilities.push && docker[0].capabilities.pull);

        let empty = ConfiguredHosts::default();
        assert_eq!(
            empty.configure("127.0.0.1:5000")[0].url(""),
            "http://127.0.0.1:5000/v2/"
        );
    }

    #[test]
    fn endpoints_that_are_not_urls_are_refused() {
        for (endpoint, says) in [
            ("ftp://x.example", "not http or https"),
            ("https://", "no host"),
        ] {
            let err = ConfiguredHosts::new(
                [("docker.io".to_owned(), vec![endpoint.to_owned()])].into(),
                BTreeMap::new(),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(says) && err.contains("docker.io"), "{err}");
        }
    }
}
