//! `cni.conf_template`: a node whose pod network is not installed by an
//! add-on gets its CNI configuration from a Go text/template file once the
//! kubelet tells the runtime its pod CIDR (UpdateRuntimeConfig), as
//! containerd renders it: into `10-containerd-net.conflist` of `conf_dir`,
//! with `.PodCIDR` (the first range), `.PodCIDRRanges` (all of them) and
//! `.Routes` (a default route per address family of the ranges).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use crated_core::{Error, Result};

/// The file the rendered configuration is written to.
pub const RENDERED_FILE: &str = "10-containerd-net.conflist";

/// The pod CIDRs of an UpdateRuntimeConfig (comma-separated, spaces
/// allowed), each checked to be a CIDR.
pub fn pod_cidrs(value: &str) -> Result<Vec<String>> {
    value
        .split(',')
        .map(str::trim)
        .map(|cidr| {
            parse_cidr(cidr)?;
            Ok(cidr.to_owned())
        })
        .collect()
}

/// The address of a CIDR; InvalidArgument naming it when it is not one.
fn parse_cidr(cidr: &str) -> Result<IpAddr> {
    let invalid = || Error::invalid_argument(format!("pod CIDR {cidr:?} is not a CIDR"));
    let (addr, len) = cidr.split_once('/').ok_or_else(invalid)?;
    let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
    let len: u8 = len.parse().map_err(|_| invalid())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(invalid());
    }
    Ok(addr)
}

/// The default routes pods of `cidrs` need: `0.0.0.0/0` if any is IPv4,
/// then `::/0` if any is IPv6.
fn routes(cidrs: &[String]) -> Result<Vec<String>> {
    let mut v4 = false;
    let mut v6 = false;
    for cidr in cidrs {
        match parse_cidr(cidr)? {
            IpAddr::V4(_) => v4 = true,
            IpAddr::V6(_) => v6 = true,
        }
    }
    let mut routes = Vec::new();
    if v4 {
        routes.push("0.0.0.0/0".to_owned());
    }
    if v6 {
        routes.push("::/0".to_owned());
    }
    Ok(routes)
}

/// `template` (the text of the file at `path`, named in errors) rendered
/// for the pod CIDRs `cidrs` (at least one).
pub fn render(path: &Path, template: &str, cidrs: &[String]) -> Result<String> {
    let first = cidrs
        .first()
        .ok_or_else(|| Error::invalid_argument("no pod CIDR to render the CNI template with"))?;
    let strings = |items: &[String]| -> gtmpl::Value {
        gtmpl::Value::Array(
            items
                .iter()
                .map(|s| gtmpl::Value::from(s.as_str()))
                .collect(),
        )
    };
    let mut data = HashMap::new();
    data.insert("PodCIDR".to_owned(), gtmpl::Value::from(first.as_str()));
    data.insert("PodCIDRRanges".to_owned(), strings(cidrs));
    data.insert("Routes".to_owned(), strings(&routes(cidrs)?));
    gtmpl::template(template, gtmpl::Value::Object(data)).map_err(|e| {
        Error::failed_precondition(format!(
            "render the CNI config template {}: {e}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crated_core::error::Kind;

    /// The IPAM part of containerd's GCE template (contrib/gce), with
    /// `range`, index variables and `if`.
    const DUAL: &str = r#"{"ranges": [{{range $i, $range := .PodCIDRRanges}}{{if $i}}, {{end}}[{"subnet": "{{$range}}"}]{{end}}], "routes": [{{range $i, $route := .Routes}}{{if $i}}, {{end}}{"dst": "{{$route}}"}{{end}}]}"#;

    fn render_str(template: &str, cidrs: &str) -> Result<serde_json::Value> {
        let text = render(Path::new("/etc/cni/template"), template, &pod_cidrs(cidrs)?)?;
        serde_json::from_str(&text).map_err(|e| Error::invalid_argument(format!("{text}: {e}")))
    }

    #[test]
    fn dual_stack_ranges_and_routes_render_as_containerd_documents() {
        let config = render_str(DUAL, "10.88.0.0/24, fd00:10::/64").unwrap();
        assert_eq!(
            config,
            serde_json::json!({
                "ranges": [[{"subnet": "10.88.0.0/24"}], [{"subnet": "fd00:10::/64"}]],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
            })
        );
        let v6 = render_str(DUAL, "fd00:10::/64").unwrap();
        assert_eq!(v6["routes"], serde_json::json!([{"dst": "::/0"}]));
    }

    #[test]
    fn pod_cidr_is_the_first_range() {
        let config = render_str(
            r#"{"subnet": "{{.PodCIDR}}", "n": "{{len .PodCIDRRanges}}"}"#,
            "10.1.0.0/16,10.2.0.0/16",
        )
        .unwrap();
        assert_eq!(
            config,
            serde_json::json!({"subnet": "10.1.0.0/16", "n": "2"})
        );
    }

    #[test]
    fn bad_cidrs_and_templates_are_refused_naming_them() {
        for bad in [
            "10.88.0.0",
            "10.88.0.0/33",
            "fd00::/129",
            "nonsense/8",
            "10.0.0.0/8,",
        ] {
            let err = pod_cidrs(bad).unwrap_err();
            assert_eq!(err.kind(), Kind::InvalidArgument, "{bad}: {err}");
        }
        let err = render(
            Path::new("/etc/cni/broken.template"),
            "{{range .PodCIDRRanges}}",
            &["10.0.0.0/8".to_owned()],
        )
        .unwrap_err();
        assert_eq!(err.kind(), Kind::FailedPrecondition, "{err}");
        assert!(
            err.to_string().contains("/etc/cni/broken.template"),
            "{err}"
        );
    }
}
