//! ctr's registry flags (`--plain-http`, `--user`, `--hosts-dir`, …) and
//! the resolver they configure.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use crated_distribution::{
    Credentials, CredentialsFn, HostOptions, Resolver, TlsOptions, TransportOptions,
};

/// Where hosts.toml files are looked up when `--hosts-dir` is not given.
pub const DEFAULT_HOSTS_DIR: &str = "/etc/crated/certs.d";

/// The registry flags of `pull`, `push` and `content fetch`.
#[derive(clap::Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Allow connections to registries over plain HTTP.
    #[arg(long)]
    plain_http: bool,
    /// Skip TLS verification of the registry.
    #[arg(short = 'k', long)]
    skip_verify: bool,
    /// User and password (`user:password`) for the registry.
    #[arg(short, long)]
    user: Option<String>,
    /// Refresh token for the authorization server.
    #[arg(long)]
    refresh: Option<String>,
    /// Directory of `<host>/hosts.toml` registry configurations.
    #[arg(long, default_value = DEFAULT_HOSTS_DIR)]
    hosts_dir: PathBuf,
    /// CA certificate (PEM) to trust for the registry.
    #[arg(long)]
    tlscacert: Option<PathBuf>,
    /// Client certificate (PEM) to present to the registry.
    #[arg(long)]
    tlscert: Option<PathBuf>,
    /// Key (PEM) of the client certificate.
    #[arg(long)]
    tlskey: Option<PathBuf>,
}

impl RegistryArgs {
    /// The resolver these flags describe. Credentials come from `--user`
    /// (for every host, as containerd's ctr), else from the docker config
    /// (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`) if any.
    pub fn resolver(&self) -> anyhow::Result<Resolver> {
        if self.tlskey.is_some() && self.tlscert.is_none() {
            bail!("--tlskey needs --tlscert");
        }
        let credentials: Option<CredentialsFn> = match (&self.user, &self.refresh) {
            (Some(user), _) => {
                let mut creds = Credentials::parse_user(user);
                if creds.secret.is_empty() {
                    creds.secret = read_password()?;
                }
                Some(Arc::new(move |_: &str| Some(creds.clone())))
            }
            (None, Some(token)) => {
                let creds = Credentials {
                    username: String::new(),
                    secret: token.clone(),
                    registry_token: false,
                };
                Some(Arc::new(move |_: &str| Some(creds.clone())))
            }
            (None, None) => docker_config()?,
        };
        let hosts = HostOptions {
            hosts_dir: Some(self.hosts_dir.clone()),
            plain_http: self.plain_http,
            default_tls: TlsOptions {
                skip_verify: self.skip_verify,
                ca: self.tlscacert.iter().cloned().collect(),
                client: self.tlscert.clone().map(|cert| (cert, self.tlskey.clone())),
            },
            ..HostOptions::default()
        };
        Ok(Resolver::new(
            hosts,
            credentials,
            TransportOptions::default(),
        ))
    }
}

fn docker_config() -> anyhow::Result<Option<CredentialsFn>> {
    let path = match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => PathBuf::from(dir).join("config.json"),
        None => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".docker/config.json"),
            None => return Ok(None),
        },
    };
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(crated_distribution::auth::docker_config(&path)?))
}

/// ctr asks for the password when `--user` has none; without a terminal
/// it reads one line of stdin.
fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password: ");
        // Echo stays on: turning it off needs termios, and a password typed
        // at a prompt the user asked for is their call.
    }
    let mut line = String::new();
    stdin.read_line(&mut line)?;
    let secret = line.trim_end_matches(['\r', '\n']).to_owned();
    if secret.is_empty() {
        bail!("--user has no password and none was given on stdin");
    }
    Ok(secret)
}
