//! What a CNI ADD answers: interfaces and the addresses on them, read
//! from any result version a plugin may give (0.1/0.2's `ip4`/`ip6`,
//! 0.3.x, 0.4.0 and 1.0.0's `interfaces` + `ips`).

use std::net::IpAddr;

use serde_json::Value;

use crate::config::IpPreference;

/// One interface a plugin made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// The namespace it is in; empty for the node's.
    pub sandbox: String,
}

/// One address a plugin assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// The address.
    pub address: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
    /// The gateway, if any.
    pub gateway: Option<IpAddr>,
    /// Index into [`NetResult::interfaces`], if the plugin said.
    pub interface: Option<usize>,
}

/// The result of ADD on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetResult {
    /// The interface name the network was attached as (`eth0`, `lo`).
    pub ifname: String,
    /// The network's name.
    pub network: String,
    /// The interfaces made.
    pub interfaces: Vec<Interface>,
    /// The addresses assigned.
    pub ips: Vec<IpConfig>,
    /// The result as the plugin gave it (for the cache and CHECK/DEL).
    pub raw: Value,
}

/// `10.0.0.2/24` into its parts.
fn cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (address, prefix) = text.split_once('/')?;
    Some((address.parse().ok()?, prefix.parse().ok()?))
}

impl NetResult {
    /// Reads `raw`; `None` where it holds no address at all is not an
    /// error (loopback gives none).
    pub fn parse(network: &str, ifname: &str, raw: Value) -> Result<NetResult, String> {
        let mut interfaces = Vec::new();
        let mut ips = Vec::new();
        if let Some(list) = raw.get("interfaces").and_then(Value::as_array) {
            for i in list {
                interfaces.push(Interface {
                    name: i
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    sandbox: i
                        .get("sandbox")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                });
            }
        }
        if let Some(list) = raw.get("ips").and_then(Value::as_array) {
            for ip in list {
                let text = ip
                    .get("address")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("an entry of \"ips\" has no address: {ip}"))?;
                let (address, prefix) =
                    cidr(text).ok_or_else(|| format!("address {text:?} is not a CIDR"))?;
                let interface = ip
                    .get("interface")
                    .and_then(Value::as_u64)
                    .map(|i| i as usize);
                if interface.is_some_and(|i| i >= interfaces.len()) {
                    return Err(format!(
                        "address {text} names interface {interface:?}, which is not in the result"
                    ));
                }
                ips.push(IpConfig {
                    address,
                    prefix,
                    gateway: ip
                        .get("gateway")
                        .and_then(Value::as_str)
                        .and_then(|g| g.parse().ok()),
                    interface,
                });
            }
        }
        // The 0.1/0.2 form: one address per family.
        for family in ["ip4", "ip6"] {
            if let Some(text) = raw
                .get(family)
                .and_then(|f| f.get("ip"))
                .and_then(Value::as_str)
            {
                let (address, prefix) =
                    cidr(text).ok_or_else(|| format!("address {text:?} is not a CIDR"))?;
                ips.push(IpConfig {
                    address,
                    prefix,
                    gateway: raw
                        .get(family)
                        .and_then(|f| f.get("gateway"))
                        .and_then(Value::as_str)
                        .and_then(|g| g.parse().ok()),
                    interface: None,
                });
            }
        }
        Ok(NetResult {
            ifname: ifname.to_owned(),
            network: network.to_owned(),
            interfaces,
            ips,
            raw,
        })
    }
}

/// `results` (loopback first, in the order the networks were attached)
/// in the shape go-cni gives containerd's verbose sandbox info
/// (`cniResult`, which `crictl inspectp` shows): each interface by name
/// with its MAC, namespace and addresses (an address whose interface the
/// plugin did not name is the pod's `eth0`'s), the DNS settings of each
/// network, and every route.
pub fn go_cni_json(results: &[NetResult]) -> Value {
    use serde_json::{json, Map};
    let blank = || json!({"IPConfigs": null, "Mac": "", "Sandbox": ""});
    let mut interfaces = Map::new();
    interfaces.insert(crate::cni::DEFAULT_IFNAME.to_owned(), blank());
    let mut dns = Vec::new();
    let mut routes = Vec::new();
    for result in results {
        let raw_interfaces = result.raw.get("interfaces").and_then(Value::as_array);
        for (i, interface) in result.interfaces.iter().enumerate() {
            let mac = raw_interfaces
                .and_then(|list| list.get(i))
                .and_then(|r| r.get("mac"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            interfaces.insert(
                interface.name.clone(),
                json!({"IPConfigs": null, "Mac": mac, "Sandbox": interface.sandbox}),
            );
        }
        for ip in &result.ips {
            let name = ip
                .interface
                .and_then(|i| result.interfaces.get(i))
                .map_or(crate::cni::DEFAULT_IFNAME, |i| i.name.as_str());
            let config = interfaces.entry(name.to_owned()).or_insert_with(blank);
            let entry = json!({
                "IP": ip.address.to_string(),
                // Go's JSON of an empty net.IP.
                "Gateway": ip.gateway.map(|g| g.to_string()).unwrap_or_default(),
            });
            match config["IPConfigs"].as_array_mut() {
                Some(list) => list.push(entry),
                None => config["IPConfigs"] = json!([entry]),
            }
        }
        dns.push(result.raw.get("dns").cloned().unwrap_or_else(|| json!({})));
        if let Some(list) = result.raw.get("routes").and_then(Value::as_array) {
            routes.extend(list.iter().cloned());
        }
    }
    json!({
        "Interfaces": interfaces,
        "DNS": dns,
        "Routes": if routes.is_empty() { Value::Null } else { Value::Array(routes) },
    })
}

/// The pod's addresses out of `results`: those on the interface named
/// `ifname` inside the pod (or, where a plugin did not say which
/// interface, every address of the network attached as `ifname`), IPv4
/// first, so the primary IP is IPv4 where there is one, as containerd's.
pub fn pod_ips(results: &[NetResult], ifname: &str, pref: IpPreference) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = results
        .iter()
        .flat_map(|r| {
            r.ips.iter().filter(move |ip| match ip.interface {
                Some(i) => r
                    .interfaces
                    .get(i)
                    .is_some_and(|iface| iface.name == ifname && !iface.sandbox.is_empty()),
                None => r.ifname == ifname,
            })
        })
        .map(|ip| ip.address)
        .collect();
    let mut seen = std::collections::HashSet::new();
    ips.retain(|ip| seen.insert(*ip));
    // The pod's IP is the first of the preferred family (containerd 1.7's
    // selectPodIPs); the others keep the result's order.
    let primary = match pref {
        IpPreference::Ipv4 => ips.iter().position(IpAddr::is_ipv4),
        IpPreference::Ipv6 => ips.iter().position(IpAddr::is_ipv6),
        IpPreference::Cni => None,
    };
    if let Some(i) = primary {
        let ip = ips.remove(i);
        ips.insert(0, ip);
    }
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_read_as_go_cni_gives_them_to_containerd() {
        let lo = NetResult::parse(
            "cni-loopback",
            "lo",
            serde_json::json!({
                "cniVersion": "1.0.0",
                "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": "/run/netns/p"}],
                "ips": [{"interface": 0, "address": "127.0.0.1/8"}],
                "dns": {}
            }),
        )
        .unwrap();
        let bridge = NetResult::parse(
            "node",
            "eth0",
            serde_json::json!({
                "cniVersion": "1.0.0",
                "interfaces": [
                    {"name": "cni0", "mac": "aa:aa:aa:aa:aa:aa"},
                    {"name": "eth0", "mac": "bb:bb:bb:bb:bb:bb", "sandbox": "/run/netns/p"}
                ],
                "ips": [{"interface": 1, "address": "10.88.0.5/16", "gateway": "10.88.0.1"}],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dns": {"nameservers": ["10.96.0.10"]}
            }),
        )
        .unwrap();
        let json = go_cni_json(&[lo, bridge]);
        assert_eq!(
            json,
            serde_json::json!({
                "Interfaces": {
                    "lo": {
                        "IPConfigs": [{"IP": "127.0.0.1", "Gateway": ""}],
                        "Mac": "00:00:00:00:00:00",
                        "Sandbox": "/run/netns/p"
                    },
                    "cni0": {"IPConfigs": null, "Mac": "aa:aa:aa:aa:aa:aa", "Sandbox": ""},
                    "eth0": {
                        "IPConfigs": [{"IP": "10.88.0.5", "Gateway": "10.88.0.1"}],
                        "Mac": "bb:bb:bb:bb:bb:bb",
                        "Sandbox": "/run/netns/p"
                    }
                },
                "DNS": [{}, {"nameservers": ["10.96.0.10"]}],
                "Routes": [{"dst": "0.0.0.0/0"}]
            })
        );
    }

    #[test]
    fn results_of_each_version_give_the_pod_ips() {
        let v1 = serde_json::json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa"},
                {"name": "veth1", "mac": "bb"},
                {"name": "eth0", "mac": "cc", "sandbox": "/run/netns/x"}
            ],
            "ips": [
                {"address": "fd00::5/64", "interface": 2},
                {"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 2},
                {"address": "10.99.0.1/16", "interface": 0}
            ]
        });
        let r = NetResult::parse("net", "eth0", v1).expect("parse");
        assert_eq!(r.ips[1].gateway, Some("10.88.0.1".parse().expect("ip")));
        let (v4, v6): (IpAddr, IpAddr) = (
            "10.88.0.5".parse().expect("ip"),
            "fd00::5".parse().expect("ip"),
        );
        // ip_pref: IPv4 first by default, IPv6 first, or the result's order.
        let pick = |pref| pod_ips(std::slice::from_ref(&r), "eth0", pref);
        assert_eq!(pick(IpPreference::Ipv4), vec![v4, v6]);
        assert_eq!(pick(IpPreference::Ipv6), vec![v6, v4]);
        assert_eq!(pick(IpPreference::Cni), vec![v6, v4]);
        // Only the pod's IP moves: two IPv4 addresses around an IPv6 one.
        let three = serde_json::json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "mac": "cc", "sandbox": "/run/netns/x"}],
            "ips": [
                {"address": "fd00::7/64", "interface": 0},
                {"address": "10.0.0.1/8", "interface": 0},
                {"address": "fd00::8/64", "interface": 0}
            ]
        });
        let r3 = NetResult::parse("net", "eth0", three).expect("parse");
        let got = pod_ips(std::slice::from_ref(&r3), "eth0", IpPreference::Ipv4);
        let want: Vec<IpAddr> = ["10.0.0.1", "fd00::7", "fd00::8"]
            .iter()
            .map(|a| a.parse().expect("ip"))
            .collect();
        assert_eq!(got, want);
        let v02 = serde_json::json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.1.0.7/24"}});
        let r = NetResult::parse("old", "eth0", v02).expect("parse");
        assert_eq!(
            pod_ips(std::slice::from_ref(&r), "eth0", IpPreference::Ipv4),
            vec!["10.1.0.7".parse::<IpAddr>().expect("ip")]
        );
        assert!(pod_ips(&[r], "lo", IpPreference::Ipv4).is_empty());
        let bad = serde_json::json!({"ips": [{"address": "nonsense"}]});
        assert!(NetResult::parse("bad", "eth0", bad).is_err());
        let dangling = serde_json::json!({"ips": [{"address": "10.0.0.1/8", "interface": 3}]});
        assert!(NetResult::parse("bad", "eth0", dangling).is_err());
    }
}
