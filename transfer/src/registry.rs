//! A transfer's registry (`containerd.types.transfer.OCIRegistry`): the
//! resolver for its reference, with the request's headers, the daemon's
//! host configuration, and credentials asked of the client on the
//! request's auth stream.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crated_api::containerd::types::transfer::{AuthRequest, AuthResponse, AuthType, OciRegistry};
use crated_core::reference::parse_normalized_named;
use crated_core::{Error, Result};
use crated_distribution::{Credentials, HostOptions, Resolver, TransportOptions};

use crate::any;
use crate::streams::{Stream, StreamManager};

/// How long the client may take to answer one credentials request.
const AUTH_ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// containerd's name of a registry endpoint in progress and errors.
pub fn describe(registry: &OciRegistry) -> String {
    format!("OCI Registry ({})", registry.reference)
}

/// The resolver for `registry`'s reference. With an auth stream, the
/// client is asked for credentials for each host the reference may be
/// fetched from (mirrors included) before anything is sent to a registry;
/// a client that answers with none leaves that host anonymous.
pub async fn resolver(
    registry: &OciRegistry,
    hosts_dir: Option<PathBuf>,
    streams: &StreamManager,
    ns: &str,
) -> Result<Resolver> {
    let named = parse_normalized_named(&registry.reference)
        .map_err(|e| e.context(format!("transfer from {}", describe(registry))))?;
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut auth_stream = None;
    if let Some(resolver) = &registry.resolver {
        // Sorted, so requests carry them in a stable order.
        let sorted: BTreeMap<_, _> = resolver.headers.iter().collect();
        headers.extend(sorted.into_iter().map(|(k, v)| (k.clone(), v.clone())));
        if !resolver.auth_stream.is_empty() {
            auth_stream = Some(streams.take(ns, &resolver.auth_stream)?);
        }
    }
    let hosts = HostOptions {
        hosts_dir,
        headers,
        ..HostOptions::default()
    };
    let credentials = match auth_stream {
        Some(mut stream) => {
            let mut known = BTreeMap::new();
            for endpoint in crated_distribution::hosts::configure(named.domain(), &hosts)? {
                if known.contains_key(&endpoint.host) {
                    continue;
                }
                let answer = ask(&mut stream, &endpoint.host, &registry.reference).await?;
                known.insert(endpoint.host, answer);
            }
            Some(
                Arc::new(move |host: &str| known.get(host).cloned().flatten())
                    as crated_distribution::CredentialsFn,
            )
        }
        None => None,
    };
    Ok(Resolver::new(
        hosts,
        credentials,
        TransportOptions::default(),
    ))
}

/// Asks the client for credentials for `host`.
async fn ask(stream: &mut Stream, host: &str, reference: &str) -> Result<Option<Credentials>> {
    let request = AuthRequest {
        host: host.to_owned(),
        reference: reference.to_owned(),
        wwwauthenticate: Vec::new(),
    };
    stream.send(any::pack(&request)).await?;
    let answer = tokio::time::timeout(AUTH_ANSWER_TIMEOUT, stream.recv())
        .await
        .map_err(|_| {
            Error::deadline_exceeded(format!(
                "no credentials for {host} from the client's auth stream within {}s",
                AUTH_ANSWER_TIMEOUT.as_secs()
            ))
        })??
        .ok_or_else(|| {
            Error::unavailable(format!(
                "the client closed its auth stream {:?} before answering for {host}",
                stream.id()
            ))
        })?;
    let answer: AuthResponse = any::unpack(&answer)?;
    Ok(credentials(host, answer))
}

/// An answer as credentials; none for an empty one.
fn credentials(host: &str, answer: AuthResponse) -> Option<Credentials> {
    let kind = AuthType::try_from(answer.auth_type).unwrap_or(AuthType::None);
    match kind {
        AuthType::Credentials if !answer.username.is_empty() || !answer.secret.is_empty() => {
            Some(Credentials {
                username: answer.username,
                secret: answer.secret,
                registry_token: false,
            })
        }
        // An identity token, exchanged for access tokens.
        AuthType::Refresh if !answer.secret.is_empty() => Some(Credentials {
            username: String::new(),
            secret: answer.secret,
            registry_token: false,
        }),
        AuthType::Header => {
            // containerd 1.7 drops these too: its authorizer takes a user
            // name and secret only.
            tracing::warn!(
                host,
                "a whole Authorization header as credentials is not supported; ignored"
            );
            None
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(kind: AuthType, username: &str, secret: &str) -> AuthResponse {
        AuthResponse {
            auth_type: kind as i32,
            username: username.into(),
            secret: secret.into(),
            expire_at: None,
        }
    }

    #[test]
    fn answers_become_credentials_and_empty_ones_none() {
        let user = credentials("r", answer(AuthType::Credentials, "u", "p"));
        assert_eq!(
            user.map(|c| (c.username, c.secret)),
            Some(("u".into(), "p".into()))
        );
        let token = credentials("r", answer(AuthType::Refresh, "", "tok"));
        assert_eq!(
            token.map(|c| (c.username, c.secret)),
            Some((String::new(), "tok".into()))
        );
        // What ctr answers for a pull without --user.
        assert!(credentials("r", answer(AuthType::Refresh, "", "")).is_none());
        assert!(credentials("r", answer(AuthType::None, "u", "p")).is_none());
        assert!(credentials("r", answer(AuthType::Header, "", "Bearer x")).is_none());
    }
}
