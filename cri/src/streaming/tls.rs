//! The streaming server's TLS (`enable_tls_streaming`), as containerd's
//! CRI sets it up: the certificate and key of `x509_key_pair_streaming`
//! when both are given, else a self-signed certificate made at start-up
//! for the node's name and the server's address (the kubelet, and
//! crictl/critest, connect without verifying it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use crated_core::{Error, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;

/// The acceptor the configuration asks for; `None` for plain HTTP. A key
/// pair half given, or given with TLS off, is refused as containerd does.
pub(crate) fn acceptor(config: &Config, local: SocketAddr) -> Result<Option<TlsAcceptor>> {
    let pair = &config.x509_key_pair_streaming;
    let (cert, key) = (pair.tls_cert_file.trim(), pair.tls_key_file.trim());
    if !config.enable_tls_streaming {
        if !cert.is_empty() || !key.is_empty() {
            return Err(Error::invalid_argument(
                "x509_key_pair_streaming is set but enable_tls_streaming is not",
            ));
        }
        return Ok(None);
    }
    let (chain, key) =
        match (cert.is_empty(), key.is_empty()) {
            (false, false) => load_pair(Path::new(cert), Path::new(key))?,
            (true, true) => self_signed(local)?,
            _ => return Err(Error::invalid_argument(
                "x509_key_pair_streaming needs both tls_cert_file and tls_key_file (or neither, \
                 for a self-signed certificate)",
            )),
        };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid_argument(format!("streaming TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            Error::invalid_argument(format!(
                "streaming TLS: the certificate and key do not make a usable pair: {e}"
            ))
        })?;
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

/// The certificate chain and key of PEM files.
fn load_pair(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let open = |path: &Path| {
        std::fs::File::open(path)
            .map(std::io::BufReader::new)
            .map_err(|e| {
                Error::invalid_argument(format!("x509_key_pair_streaming: {}: {e}", path.display()))
            })
    };
    let chain = rustls_pemfile::certs(&mut open(cert)?)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::invalid_argument(format!("tls_cert_file {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(Error::invalid_argument(format!(
            "tls_cert_file {} holds no PEM certificate",
            cert.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut open(key)?)
        .map_err(|e| Error::invalid_argument(format!("tls_key_file {}: {e}", key.display())))?
        .ok_or_else(|| {
            Error::invalid_argument(format!(
                "tls_key_file {} holds no PEM private key",
                key.display()
            ))
        })?;
    Ok((chain, key))
}

/// A self-signed certificate (ECDSA P-256) for the node's host name,
/// `localhost`, loopback and the server's own address.
fn self_signed(
    local: SocketAddr,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    let failed = |e: rcgen::Error| Error::unknown(format!("make the streaming certificate: {e}"));
    let mut names = vec![host.clone()];
    if host != "localhost" {
        names.push("localhost".to_owned());
    }
    let mut params = rcgen::CertificateParams::new(names).map_err(failed)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, host.clone());
    let mut ips = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    if !local.ip().is_unspecified() && !ips.contains(&local.ip()) {
        ips.push(local.ip());
    }
    params
        .subject_alt_names
        .extend(ips.into_iter().map(rcgen::SanType::IpAddress));
    let key = rcgen::KeyPair::generate().map_err(failed)?;
    let cert = params.self_signed(&key).map_err(failed)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((vec![cert.der().clone()], key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(enable: bool, cert: &str, key: &str) -> Config {
        let mut config = Config {
            enable_tls_streaming: enable,
            ..Config::default()
        };
        config.x509_key_pair_streaming.tls_cert_file = cert.into();
        config.x509_key_pair_streaming.tls_key_file = key.into();
        config
    }

    fn refusal(config: &Config) -> String {
        let local: SocketAddr = ([127, 0, 0, 1], 0).into();
        match acceptor(config, local) {
            Ok(_) => panic!("accepted {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn key_pairs_are_whole_and_only_with_tls() {
        let local: SocketAddr = ([127, 0, 0, 1], 0).into();
        assert!(acceptor(&config(false, "", ""), local).unwrap().is_none());
        assert!(acceptor(&config(true, "", ""), local).unwrap().is_some());
        assert!(refusal(&config(false, "/c.pem", "/k.pem")).contains("enable_tls_streaming is not"));
        assert!(refusal(&config(true, "/c.pem", "")).contains("needs both"));
        let dir = tempfile::tempdir().unwrap();
        let certs = crated_testimages::TestCerts::new(dir.path()).unwrap();
        let (cert, key) = (
            certs.cert.display().to_string(),
            certs.key.display().to_string(),
        );
        assert!(acceptor(&config(true, &cert, &key), local)
            .unwrap()
            .is_some());
        let missing = refusal(&config(true, "/nonexistent/c.pem", &key));
        assert!(missing.contains("/nonexistent/c.pem"), "{missing}");
        // The key where the certificate should be, and the other way round.
        assert!(refusal(&config(true, &key, &key)).contains("no PEM certificate"));
        assert!(refusal(&config(true, &cert, &cert)).contains("no PEM private key"));
        // A key that is not the certificate's.
        let other = tempfile::tempdir().unwrap();
        let others = crated_testimages::TestCerts::new(other.path()).unwrap();
        let mismatch = refusal(&config(true, &cert, &others.key.display().to_string()));
        assert!(mismatch.contains("usable pair"), "{mismatch}");
    }
}
