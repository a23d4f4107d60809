//! `ctr oci spec`: the default OCI runtime spec a container gets, printed
//! as containerd's ctr prints it (a starting point for a runtime's
//! `base_runtime_spec`). Needs no daemon.

use clap::Subcommand;
use crated_core::Namespace;

use crate::client::user_error;
use crate::gojson;

/// `ctr oci …`.
#[derive(Subcommand)]
pub enum Command {
    /// See the output of the default OCI spec.
    Spec {
        /// Platform of the spec to print (`linux`, `linux/arm64`): specs
        /// for other systems than Linux are not made.
        #[arg(long)]
        platform: Option<String>,
    },
}

/// Runs `ctr oci <cmd>` for namespace `ns` (it names the spec's cgroup).
pub fn run(ns: &Namespace, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Spec { platform } => {
            if let Some(platform) = platform {
                let os = platform.split('/').next().unwrap_or_default();
                if !os.eq_ignore_ascii_case("linux") {
                    anyhow::bail!(
                        "platform {platform:?}: only Linux specs are made (linux[/arch[/variant]])"
                    );
                }
            }
            let spec = crated_client::spec::default_unix(ns, "").map_err(user_error)?;
            let value = serde_json::to_value(&spec)?;
            println!("{}", gojson::to_string_indent(&value));
            Ok(())
        }
    }
}
