//! OCI runtime specs as containerd's client makes them (`oci` package):
//! the default Unix spec, the default devices, an image's config (args,
//! env, working dir, user), a tty, extra mounts, the host's network.
//!
//! ```
//! use crated_client::spec::Spec;
//!
//! let mut spec = Spec::default_unix("default", "t1");
//! spec.with_image_config(br#"{"config":{"Cmd":["/bin/sh"]}}"#, &[]).unwrap();
//! assert_eq!(spec.json()["process"]["args"][0], "/bin/sh");
//! ```

use std::path::Path;

use crated_core::{Error, Result};
use serde_json::{json, Value};

/// The type URL containerd stores specs under.
pub const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn default_caps() -> Value {
    json!([
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE"
    ])
}

/// A spec being built.
#[derive(Debug, Clone)]
pub struct Spec(Value);

impl Spec {
    /// containerd's `populateDefaultUnixSpec` plus `WithDefaultUnixDevices`:
    /// cgroup `/<ns>/<id>`, the five namespaces, the default mounts,
    /// capabilities, masked and read-only paths, RLIMIT_NOFILE 1024.
    pub fn default_unix(namespace: &str, id: &str) -> Self {
        let dev = |major: i64, minor: Option<i64>| json!({"allow": true, "type": "c", "major": major, "minor": minor, "access": "rwm"});
        let mut devices = vec![json!({"allow": false, "access": "rwm"})];
        for (major, minor) in [
            (1, Some(3)),
            (1, Some(8)),
            (1, Some(7)),
            (5, Some(0)),
            (1, Some(5)),
            (1, Some(9)),
            (5, Some(1)),
            (136, None),
            (5, Some(2)),
        ] {
            devices.push(dev(major, minor));
        }
        let mount = |dest: &str, kind: &str, source: &str, options: &[&str]| json!({"destination": dest, "type": kind, "source": source, "options": options});
        Self(json!({
            "ociVersion": "1.0.2-dev",
            "process": {
                "user": {"uid": 0, "gid": 0},
                "cwd": "/",
                "capabilities": {
                    "bounding": default_caps(),
                    "effective": default_caps(),
                    "permitted": default_caps(),
                },
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true,
            },
            "root": {"path": "rootfs"},
            "mounts": [
                mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
                mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
                mount("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
                mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
                mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
                mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
                mount("/run", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
            ],
            "linux": {
                "resources": {"devices": devices},
                "cgroupsPath": format!("/{namespace}/{id}"),
                "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}],
                "maskedPaths": [
                    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
                ],
                "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
            },
        }))
    }

    /// The spec as JSON.
    pub fn json(&self) -> &Value {
        &self.0
    }

    /// The spec's bytes, as stored in the container record.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(&self.0).map_err(|e| Error::unknown(format!("encode spec: {e}")))
    }

    fn process(&mut self) -> &mut serde_json::Map<String, Value> {
        if !self.0["process"].is_object() {
            self.0["process"] = json!({});
        }
        self.0["process"]
            .as_object_mut()
            .expect("process was just made an object")
    }

    /// containerd's `WithImageConfigArgs`: env (the image's, or the
    /// default PATH), args (entrypoint + `args`, or + the image's cmd),
    /// working dir. The user is applied separately ([`Spec::with_user`])
    /// since it may need the image's `/etc/passwd`. Returns the image's
    /// `User`.
    pub fn with_image_config(&mut self, config: &[u8], args: &[String]) -> Result<String> {
        let doc: Value = serde_json::from_slice(config)
            .map_err(|e| Error::invalid_argument(format!("image config is not JSON: {e}")))?;
        let c = &doc["config"];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut env = strings(&c["Env"]);
        if env.is_empty() {
            env.push(DEFAULT_PATH.to_owned());
        }
        let existing: Vec<String> = self
            .process()
            .get("env")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let env = replace_or_append(env, &existing);
        let mut argv = strings(&c["Entrypoint"]);
        if args.is_empty() {
            argv.extend(strings(&c["Cmd"]));
        } else {
            argv.extend(args.iter().cloned());
        }
        let cwd = c["WorkingDir"]
            .as_str()
            .filter(|w| !w.is_empty())
            .unwrap_or("/")
            .to_owned();
        let process = self.process();
        process.insert("env".into(), json!(env));
        process.insert("args".into(), json!(argv));
        process.insert("cwd".into(), json!(cwd));
        Ok(c["User"].as_str().unwrap_or_default().to_owned())
    }

    /// Sets `KEY=value` variables, replacing those of the same key.
    pub fn with_env(&mut self, vars: &[String]) {
        let existing: Vec<String> = self
            .process()
            .get("env")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        self.process()
            .insert("env".into(), json!(replace_or_append(existing, vars)));
    }

    /// `WithTTY`: a terminal and `TERM=xterm`.
    pub fn with_tty(&mut self) {
        self.process().insert("terminal".into(), json!(true));
        self.with_env(&["TERM=xterm".to_owned()]);
    }

    /// The working directory.
    pub fn with_cwd(&mut self, cwd: &str) {
        self.process().insert("cwd".into(), json!(cwd));
    }

    /// `WithUser` on the image's root filesystem at `rootfs` (or none):
    /// `uid[:gid]`, or `name[:group]` looked up in its `/etc/passwd` and
    /// `/etc/group`; then the additional groups of the user from
    /// `/etc/group` (`WithAdditionalGIDs`).
    pub fn with_user(&mut self, user: &str, rootfs: Option<&Path>) -> Result<()> {
        let (name, group) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (if user.is_empty() { "root" } else { user }, None),
        };
        let read = |file: &str| -> String {
            rootfs
                .and_then(|r| std::fs::read_to_string(r.join(file)).ok())
                .unwrap_or_default()
        };
        let passwd = read("etc/passwd");
        let groups = read("etc/group");
        let entry = |text: &str, key: &str| -> Option<Vec<String>> {
            text.lines()
                .map(|l| l.split(':').map(str::to_owned).collect::<Vec<_>>())
                .find(|f| f.len() >= 4 && (f[0] == key || f[2] == key))
        };
        let (uid, mut gid, username) = match name.parse::<u32>() {
            Ok(uid) => {
                let found = entry(&passwd, name);
                let gid = found.as_ref().and_then(|f| f[3].parse().ok()).unwrap_or(0);
                (uid, gid, found.map(|f| f[0].clone()).unwrap_or_default())
            }
            // No user (or root) in an image without /etc/passwd: 0:0.
            Err(_) if name == "root" && entry(&passwd, name).is_none() => (0, 0, "root".to_owned()),
            Err(_) => {
                let f = entry(&passwd, name).ok_or_else(|| {
                    Error::not_found(format!(
                        "no users found for {name:?} in the image's /etc/passwd"
                    ))
                })?;
                let uid = f[2].parse().map_err(|_| {
                    Error::invalid_argument(format!("bad uid for {name:?} in /etc/passwd"))
                })?;
                (uid, f[3].parse().unwrap_or(0), f[0].clone())
            }
        };
        if let Some(group) = group {
            gid = match group.parse::<u32>() {
                Ok(g) => g,
                Err(_) => entry(&groups, group)
                    .and_then(|f| f[2].parse().ok())
                    .ok_or_else(|| {
                        Error::not_found(format!(
                            "no groups found for {group:?} in the image's /etc/group"
                        ))
                    })?,
            };
        }
        let additional: Vec<u32> = groups
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .filter(|f| {
                f.len() >= 4 && !username.is_empty() && f[3].split(',').any(|m| m == username)
            })
            .filter_map(|f| f[2].parse().ok())
            .filter(|g| *g != gid)
            .collect();
        let mut user = json!({"uid": uid, "gid": gid});
        if !additional.is_empty() {
            user["additionalGids"] = json!(additional);
        }
        self.process().insert("user".into(), user);
        Ok(())
    }

    /// Adds a mount (`type`, `source`, `destination`, options).
    pub fn with_mount(&mut self, kind: &str, source: &str, destination: &str, options: &[String]) {
        if let Some(mounts) = self.0["mounts"].as_array_mut() {
            mounts.push(json!({"destination": destination, "type": kind, "source": source, "options": options}));
        }
    }

    /// `--net-host`: the host's network namespace, `/etc/hosts` and
    /// `/etc/resolv.conf`.
    pub fn with_host_network(&mut self) {
        if let Some(ns) = self.0["linux"]["namespaces"].as_array_mut() {
            ns.retain(|n| n["type"] != "network");
        }
        for file in ["/etc/hosts", "/etc/resolv.conf"] {
            self.with_mount("bind", file, file, &["rbind".to_owned(), "ro".to_owned()]);
        }
    }
}

/// containerd's `replaceOrAppendEnvValues`: `overrides` replace the
/// defaults of the same key, or are appended.
fn replace_or_append(defaults: Vec<String>, overrides: &[String]) -> Vec<String> {
    let key = |kv: &str| kv.split('=').next().unwrap_or(kv).to_owned();
    let mut out = defaults;
    for o in overrides {
        match out.iter().position(|d| key(d) == key(o)) {
            Some(i) => out[i] = o.clone(),
            None => out.push(o.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn image_config_args_env_cwd_and_user() {
        let mut spec = Spec::default_unix("ns1", "c1");
        assert_eq!(spec.json()["linux"]["cgroupsPath"], "/ns1/c1");
        let user = spec
            .with_image_config(
                br#"{"config":{"Entrypoint":["/bin/app"],"Cmd":["--serve"],"Env":["PATH=/bin","A=1"],"WorkingDir":"/srv","User":"app"}}"#,
                &["--other".to_owned()],
            )
            .unwrap();
        assert_eq!(
            spec.json()["process"]["args"],
            json!(["/bin/app", "--other"])
        );
        assert_eq!(spec.json()["process"]["cwd"], "/srv");
        spec.with_env(&["A=2".to_owned(), "B=3".to_owned()]);
        assert_eq!(
            spec.json()["process"]["env"],
            json!(["PATH=/bin", "A=2", "B=3"])
        );
        assert_eq!(user, "app");

        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            root.path().join("etc/group"),
            "app:x:1000:\nvideo:x:44:app,other\n",
        )
        .unwrap();
        spec.with_user(&user, Some(root.path())).unwrap();
        assert_eq!(
            spec.json()["process"]["user"],
            json!({"uid": 1000, "gid": 1000, "additionalGids": [44]})
        );
        spec.with_user("5:6", Some(root.path())).unwrap();
        assert_eq!(spec.json()["process"]["user"], json!({"uid": 5, "gid": 6}));
        let err = spec.with_user("nobody", Some(root.path())).unwrap_err();
        assert!(err.to_string().contains("nobody"), "{err}");
    }

    #[test]
    fn host_network_and_tty() {
        let mut spec = Spec::default_unix("default", "x");
        spec.with_host_network();
        spec.with_tty();
        assert!(!spec.json()["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network"));
        assert_eq!(spec.json()["process"]["terminal"], true);
        assert!(spec.json()["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/etc/resolv.conf"));
    }
}
