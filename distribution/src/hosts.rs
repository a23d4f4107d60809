//! Which endpoints serve a registry domain, as containerd's
//! `remotes/docker/config`: `<hosts dir>/<host>/hosts.toml` lists mirrors
//! (tried in order) and the server itself, each with capabilities,
//! `skip_verify`, `ca`, headers and `override_path`. Without a file the
//! domain is its own server: `docker.io` is `registry-1.docker.io`, a
//! loopback host is plain HTTP, anything else HTTPS unless plain HTTP was
//! asked for.
//!
//! ```
//! use crated_distribution::hosts::{configure, HostOptions};
//!
//! let hosts = configure("127.0.0.1:5000", &HostOptions::default()).unwrap();
//! assert_eq!(hosts[0].url("library/busybox/manifests/latest"),
//!            "http://127.0.0.1:5000/v2/library/busybox/manifests/latest");
//! ```

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Value;

use crate::error::{Error, HostsFileError, Result};
use crate::mirrors::ConfiguredHosts;
use crate::tls::TlsOptions;

/// What a host may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Blobs and manifests by digest.
    pub pull: bool,
    /// Tags to digests.
    pub resolve: bool,
    /// Uploads.
    pub push: bool,
}

impl Capabilities {
    /// Every capability: a registry's own server.
    pub const ALL: Self = Self {
        pull: true,
        resolve: true,
        push: true,
    };
}

/// One endpoint of a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryHost {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]`.
    pub host: String,
    /// The API root path, `/v2` unless overridden.
    pub path: String,
    /// What the host may be used for.
    pub capabilities: Capabilities,
    /// Skip TLS verification.
    pub skip_verify: bool,
    /// CA certificates to trust, absolute paths.
    pub ca: Vec<PathBuf>,
    /// A client certificate and key (`None`: in the certificate's file).
    pub client: Option<(PathBuf, Option<PathBuf>)>,
    /// Extra headers sent with every request.
    pub headers: Vec<(String, String)>,
}

impl RegistryHost {
    /// The TLS settings of this host.
    pub fn tls(&self) -> TlsOptions {
        TlsOptions {
            skip_verify: self.skip_verify,
            ca: self.ca.clone(),
            client: self.client.clone(),
        }
    }

    /// The URL of `rest` (`<repo>/manifests/<tag>`) on this host.
    pub fn url(&self, rest: &str) -> String {
        format!("{}://{}{}/{}", self.scheme, self.host, self.path, rest)
    }
}

/// How to configure hosts for a domain.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// The directory holding `<host>/hosts.toml` files
    /// (`/etc/crated/certs.d`); none means defaults only.
    pub hosts_dir: Option<PathBuf>,
    /// Use plain HTTP for the default host (ctr's `--plain-http`).
    pub plain_http: bool,
    /// TLS for hosts whose configuration says nothing about it (ctr's
    /// `--skip-verify`, `--tlscacert`, `--tlscert`, `--tlskey`).
    pub default_tls: TlsOptions,
    /// Endpoints from the daemon's configuration (containerd 1.6's
    /// deprecated CRI `registry.mirrors`), used instead of `hosts_dir`.
    pub configured: Option<Arc<ConfiguredHosts>>,
    /// Headers sent to every host (containerd's CRI `registry.headers`).
    pub headers: Vec<(String, String)>,
}

/// containerd's `IsLocalhost`: `localhost` or a loopback address, with or
/// without a port.
pub fn is_localhost(host: &str) -> bool {
    let name = split_port(host);
    name == "localhost"
        || name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn split_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.parse::<u16>().is_ok() => name,
        _ => host,
    }
}

/// The endpoints for `domain`, mirrors first, as containerd's
/// `ConfigureHosts`. A hosts file that lists no server ends with the
/// domain's default host.
pub fn configure(domain: &str, options: &HostOptions) -> Result<Vec<RegistryHost>> {
    let mut hosts = configure_hosts(domain, options)?;
    if !options.headers.is_empty() {
        for host in &mut hosts {
            host.headers.extend(options.headers.iter().cloned());
        }
    }
    Ok(hosts)
}

fn configure_hosts(domain: &str, options: &HostOptions) -> Result<Vec<RegistryHost>> {
    if let Some(configured) = &options.configured {
        return Ok(configured.configure(domain));
    }
    let mut hosts = match &options.hosts_dir {
        Some(root) => match host_dir(root, domain)? {
            Some(dir) => load_dir(&dir)?,
            None => vec![Partial::default()],
        },
        None => vec![Partial::default()],
    };
    if let Some(last) = hosts.last_mut() {
        if last.host.is_empty() {
            last.path = "/v2".to_owned();
            last.capabilities = Capabilities::ALL;
            if domain == "docker.io" {
                last.scheme = "https".to_owned();
                last.host = "registry-1.docker.io".to_owned();
            } else {
                last.host = domain.to_owned();
                if is_localhost(domain) || options.plain_http {
                    last.scheme = "http".to_owned();
                } else {
                    last.scheme = "https".to_owned();
                }
            }
        }
    }
    Ok(hosts
        .into_iter()
        .map(|p| {
            // As containerd: a host that configures none of its TLS gets
            // the default.
            let configured = p.skip_verify.is_some() || !p.ca.is_empty() || p.client.is_some();
            let tls = if configured {
                TlsOptions {
                    skip_verify: p.skip_verify.unwrap_or(false),
                    ca: p.ca,
                    client: p.client,
                }
            } else {
                options.default_tls.clone()
            };
            RegistryHost {
                scheme: p.scheme,
                host: p.host,
                path: p.path,
                capabilities: p.capabilities,
                skip_verify: tls.skip_verify,
                ca: tls.ca,
                client: tls.client,
                headers: p.headers,
            }
        })
        .collect())
}

/// containerd's `hostDirectory`: `host:port` is looked up as
/// `host_port_` first, then as written, then `_default`.
pub fn host_dir(root: &Path, domain: &str) -> Result<Option<PathBuf>> {
    let mut candidates = Vec::new();
    if let Some((name, port)) = domain.rsplit_once(':') {
        candidates.push(root.join(format!("{name}_{port}_")));
    }
    candidates.push(root.join(domain));
    candidates.push(root.join("_default"));
    for dir in candidates {
        match std::fs::metadata(&dir) {
            Ok(_) => return Ok(Some(dir)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::HostsDir { dir, source }),
        }
    }
    Ok(None)
}

#[derive(Debug, Default)]
struct Partial {
    scheme: String,
    host: String,
    path: String,
    capabilities: Capabilities,
    skip_verify: Option<bool>,
    ca: Vec<PathBuf>,
    client: Option<(PathBuf, Option<PathBuf>)>,
    headers: Vec<(String, String)>,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self::ALL
    }
}

fn load_dir(dir: &Path) -> Result<Vec<Partial>> {
    let file = dir.join("hosts.toml");
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        // containerd falls back to docker's certs layout (`*.crt`), which
        // only matters for TLS: the default host, then.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![Partial::default()]),
        Err(source) => return Err(Error::ReadHostsFile { file, source }),
    };
    parse_hosts_file(dir, &text).map_err(|source| Error::HostsFile { file, source })
}

/// `field` must be `expected`.
fn field_type(field: &'static str, expected: &'static str) -> HostsFileError {
    HostsFileError::FieldType { field, expected }
}

fn parse_hosts_file(dir: &Path, text: &str) -> Result<Vec<Partial>, HostsFileError> {
    let table: toml::Table = text
        .parse()
        .map_err(|source| HostsFileError::Toml { source })?;
    let mut hosts = Vec::new();
    if let Some(entries) = table.get("host") {
        let entries = entries
            .as_table()
            .ok_or_else(|| field_type("host", "a table of hosts"))?;
        for (server, config) in entries {
            let config = config
                .as_table()
                .ok_or_else(|| HostsFileError::HostNotTable {
                    server: server.clone(),
                })?;
            hosts.push(parse_host(server, dir, config)?);
        }
    }
    let server = match table.get("server") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(field_type("server", "a string")),
        None => "",
    };
    hosts.push(parse_host(server, dir, &table)?);
    Ok(hosts)
}

fn parse_host(server: &str, dir: &Path, config: &toml::Table) -> Result<Partial, HostsFileError> {
    let mut host = Partial::default();
    let override_path = match config.get("override_path") {
        Some(v) => v
            .as_bool()
            .ok_or_else(|| field_type("override_path", "a boolean"))?,
        None => false,
    };
    let bad_server = |problem| HostsFileError::BadServer {
        server: server.to_owned(),
        problem,
    };
    if !server.is_empty() {
        let full = if server.starts_with("http") {
            server.to_owned()
        } else {
            format!("https://{server}")
        };
        let (scheme, rest) = full
            .split_once("://")
            .ok_or_else(|| bad_server("no scheme"))?;
        if scheme != "http" && scheme != "https" {
            return Err(bad_server("scheme must be http or https"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(bad_server("no host"));
        }
        let mut path = path.trim_end_matches('/').to_owned();
        if !override_path && !path.ends_with("/v2") {
            path.push_str("/v2");
        }
        host.scheme = scheme.to_owned();
        host.host = authority.to_owned();
        host.path = path;
    }
    if let Some(caps) = config.get("capabilities") {
        let caps = caps
            .as_array()
            .ok_or_else(|| field_type("capabilities", "an array"))?;
        host.capabilities = Capabilities {
            pull: false,
            resolve: false,
            push: false,
        };
        for cap in caps {
            match cap.as_str().map(str::to_lowercase).as_deref() {
                Some("pull") => host.capabilities.pull = true,
                Some("resolve") => host.capabilities.resolve = true,
                Some("push") => host.capabilities.push = true,
                _ => {
                    return Err(HostsFileError::UnknownCapability {
                        capability: cap.to_string(),
                    });
                }
            }
        }
    }
    if let Some(v) = config.get("skip_verify") {
        host.skip_verify = Some(
            v.as_bool()
                .ok_or_else(|| field_type("skip_verify", "a boolean"))?,
        );
    }
    match config.get("ca") {
        None => {}
        Some(Value::String(p)) => host.ca.push(dir.join(p)),
        Some(Value::Array(list)) => {
            for p in list {
                let p = p.as_str().ok_or_else(|| HostsFileError::InvalidType {
                    field: "ca",
                    found: p.type_str(),
                })?;
                host.ca.push(dir.join(p));
            }
        }
        Some(other) => {
            return Err(HostsFileError::InvalidType {
                field: "ca",
                found: other.type_str(),
            })
        }
    }
    match config.get("client") {
        None => {}
        // A file with both certificate and key, or [cert, key] pairs of
        // which the first is used (rustls presents one identity).
        Some(Value::String(p)) => host.client = Some((dir.join(p), None)),
        Some(Value::Array(list)) => match list.first() {
            None => {}
            Some(Value::String(p)) => host.client = Some((dir.join(p), None)),
            Some(Value::Array(pair)) => match pair.as_slice() {
                [Value::String(cert), Value::String(key)] => {
                    let key = (!key.is_empty()).then(|| dir.join(key));
                    host.client = Some((dir.join(cert), key));
                }
                _ => {
                    return Err(HostsFileError::ClientPair {
                        pair: Value::Array(pair.clone()).to_string(),
                    })
                }
            },
            Some(other) => {
                return Err(HostsFileError::InvalidType {
                    field: "client",
                    found: other.type_str(),
                })
            }
        },
        Some(other) => {
            return Err(HostsFileError::InvalidType {
                field: "client",
                found: other.type_str(),
            })
        }
    }
    if let Some(headers) = config.get("header") {
        let headers = headers
            .as_table()
            .ok_or_else(|| field_type("header", "a table"))?;
        for (name, value) in headers {
            match value {
                Value::String(v) => host.headers.push((name.clone(), v.clone())),
                Value::Array(vs) => {
                    for v in vs {
                        let v = v
                            .as_str()
                            .ok_or_else(|| HostsFileError::HeaderValue { name: name.clone() })?;
                        host.headers.push((name.clone(), v.to_owned()));
                    }
                }
                _ => {
                    return Err(HostsFileError::HeaderValue { name: name.clone() });
                }
            }
        }
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_containerd() {
        let o = HostOptions::default();
        let h = configure("docker.io", &o).unwrap();
        assert_eq!(h[0].url("x"), "https://registry-1.docker.io/v2/x");
        let h = configure("localhost:5000", &o).unwrap();
        assert_eq!(h[0].scheme, "http");
        let h = configure("[::1]:5000", &o).unwrap();
        assert_eq!(h[0].scheme, "http");
        let h = configure("registry.example:5000", &o).unwrap();
        assert_eq!(h[0].url("x"), "https://registry.example:5000/v2/x");
        let plain = HostOptions {
            plain_http: true,
            ..Default::default()
        };
        assert_eq!(
            configure("registry.example", &plain).unwrap()[0].scheme,
            "http"
        );
    }

    #[test]
    fn hosts_file_orders_mirrors_before_the_server() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("registry.example_5000_");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(
            dir.join("hosts.toml"),
            r#"
server = "https://registry.example:5000"
ca = "ca.pem"

[host."http://zmirror.local:8080/base"]
  capabilities = ["pull", "resolve"]
  [host."http://zmirror.local:8080/base".header]
    x-token = "abc"

[host."https://amirror.local"]
  capabilities = ["pull"]
  skip_verify = true
  override_path = true
"#,
        )
        .unwrap();
        let o = HostOptions {
            hosts_dir: Some(root.path().to_owned()),
            ..Default::default()
        };
        let h = configure("registry.example:5000", &o).unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].url("r"), "http://zmirror.local:8080/base/v2/r");
        assert_eq!(h[0].headers, vec![("x-token".to_owned(), "abc".to_owned())]);
        assert!(h[0].capabilities.resolve && !h[0].capabilities.push);
        assert_eq!(h[1].url("r"), "https://amirror.local/r");
        assert!(h[1].skip_verify && !h[1].capabilities.resolve);
        assert_eq!(h[2].url("r"), "https://registry.example:5000/v2/r");
        assert_eq!(h[2].ca, vec![dir.join("ca.pem")]);
        assert_eq!(h[2].capabilities, Capabilities::ALL);
    }

    #[test]
    fn bad_hosts_file_names_the_file_and_the_field() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("r.example");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("hosts.toml"), "capabilities = [\"fly\"]\n").unwrap();
        let o = HostOptions {
            hosts_dir: Some(root.path().to_owned()),
            ..Default::default()
        };
        let err = configure("r.example", &o).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::HostsFile {
                    source: HostsFileError::UnknownCapability { .. },
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            crated_core::error::KindError::kind(&err),
            crated_core::Kind::InvalidArgument
        );
        let err = err.to_string();
        assert!(
            err.contains("hosts.toml") && err.contains("unknown capability"),
            "{err}"
        );
    }

    #[test]
    fn a_hosts_file_without_server_ends_with_the_default_host() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("_default");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("hosts.toml"), "[host.\"http://m.local\"]\n").unwrap();
        let o = HostOptions {
            hosts_dir: Some(root.path().to_owned()),
            ..Default::default()
        };
        let h = configure("127.0.0.1:1234", &o).unwrap();
        assert_eq!(h[0].url("r"), "http://m.local/v2/r");
        assert_eq!(h[1].url("r"), "http://127.0.0.1:1234/v2/r");
    }
}
