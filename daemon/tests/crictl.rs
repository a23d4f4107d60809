//! cri-tools' crictl against crated, used as a person debugging a node
//! uses it: pull, images, runp, create, start, ps, pods, logs, inspect,
//! inspectp, exec -s, stats, rmp -fa, rmi — on a CNI bridge, inside a
//! private network namespace the test makes.

#![allow(clippy::unwrap_used)]

mod common;
mod cri_support;

use cri_support::{allocated_ips, bridge_conflist, eventually, Crictl, Node};

#[test]
fn crictl_drives_a_pod_as_a_person_would() {
    crated_testimages::in_private_netns(|| async {
        let ipam = tempfile::tempdir().unwrap();
        let node = Node::start(&[(
            "10-crictl.conflist",
            bridge_conflist("crictl", "10.88.11.0/24", ipam.path()),
        )])
        .await;
        let work = tempfile::tempdir().unwrap();
        let crictl = Crictl::new(&node, work.path());
        let busybox = node.busybox.clone();
        let dir = work.path().to_owned();
        let result = tokio::task::spawn_blocking(move || {
            // pull, then images lists it by repository and tag.
            let pulled = crictl.ok(&["pull", &busybox]);
            assert!(pulled.contains("sha256:"), "{pulled}");
            let (repo, tag) = busybox.rsplit_once(':').unwrap();
            let images = crictl.ok(&["images"]);
            let row = images
                .lines()
                .find(|l| l.starts_with(repo))
                .unwrap_or_else(|| panic!("{repo} not in\n{images}"));
            assert!(row.split_whitespace().nth(1) == Some(tag), "{row}");

            // runp / create / start from the JSON files a person writes.
            let logs = dir.join("logs");
            std::fs::create_dir_all(&logs).unwrap();
            let pod_json = dir.join("pod.json");
            std::fs::write(
                &pod_json,
                serde_json::json!({
                    "metadata": {"name": "demo", "namespace": "default", "uid": "demo-uid", "attempt": 1},
                    "hostname": "demo",
                    "log_directory": logs,
                    "linux": {}
                })
                .to_string(),
            )
            .unwrap();
            let container_json = dir.join("container.json");
            std::fs::write(
                &container_json,
                serde_json::json!({
                    "metadata": {"name": "hello"},
                    "image": {"image": busybox},
                    "command": ["sh", "-c", "echo hello from crictl; exec sleep 1000"],
                    "log_path": "hello.log"
                })
                .to_string(),
            )
            .unwrap();
            let pod = crictl.ok(&["runp", pod_json.to_str().unwrap()]).trim().to_owned();
            let created = crictl
                .ok(&[
                    "create",
                    &pod,
                    container_json.to_str().unwrap(),
                    pod_json.to_str().unwrap(),
                ])
                .trim()
                .to_owned();
            crictl.ok(&["start", &created]);

            let pods = crictl.ok(&["pods"]);
            assert!(
                pods.lines().any(|l| l.starts_with(&pod[..13]) && l.contains("Ready") && l.contains("demo")),
                "{pods}"
            );
            let ps = crictl.ok(&["ps"]);
            assert!(
                ps.lines().any(|l| l.starts_with(&created[..13]) && l.contains("Running") && l.contains("hello")),
                "{ps}"
            );
            (crictl, pod, created)
        })
        .await
        .unwrap();
        let (crictl, pod, created) = result;

        // logs: what the container printed.
        let crictl = std::sync::Arc::new(crictl);
        let c = crictl.clone();
        let id = created.clone();
        eventually("crictl logs shows the greeting", move || {
            let c = c.clone();
            let id = id.clone();
            async move {
                let out = c.run(&["logs", &id]);
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                if text.contains("hello from crictl") {
                    Ok(())
                } else {
                    Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
                }
            }
        })
        .await;

        let crictl = std::sync::Arc::try_unwrap(crictl).ok().unwrap();
        let busybox = node.busybox.clone();
        tokio::task::spawn_blocking(move || {
            let repo = busybox.rsplit_once(':').unwrap().0;
            // inspect / inspectp: JSON with the state and the pod's address.
            let inspect: serde_json::Value =
                serde_json::from_str(&crictl.ok(&["inspect", &created])).unwrap();
            assert_eq!(inspect["status"]["state"], "CONTAINER_RUNNING", "{inspect}");
            assert_eq!(inspect["status"]["metadata"]["name"], "hello", "{inspect}");
            let inspectp: serde_json::Value =
                serde_json::from_str(&crictl.ok(&["inspectp", &pod])).unwrap();
            assert_eq!(inspectp["status"]["state"], "SANDBOX_READY", "{inspectp}");
            let ip = inspectp["status"]["network"]["ip"]
                .as_str()
                .unwrap_or_default();
            assert!(ip.starts_with("10.88.11."), "{inspectp}");

            // exec -s: a synchronous exec with its output and exit code.
            let hostname = crictl.ok(&["exec", "-s", &created, "hostname"]);
            assert_eq!(hostname.trim(), "demo");
            let failing = crictl.run(&["exec", "-s", &created, "sh", "-c", "exit 3"]);
            assert!(!failing.status.success());

            // stats: a row for the running container.
            let stats = crictl.ok(&["stats"]);
            assert!(
                stats.lines().any(|l| l.starts_with(&created[..13])),
                "{stats}"
            );

            // rmp -fa: every pod stopped and removed, with its containers.
            crictl.ok(&["rmp", "-fa"]);
            assert_eq!(crictl.ok(&["pods", "-q"]).trim(), "");
            assert_eq!(crictl.ok(&["ps", "-aq"]).trim(), "");

            // rmi: the image is gone from the list.
            crictl.ok(&["rmi", &busybox]);
            let left = crictl.ok(&["images"]);
            assert!(!left.contains(repo), "{left}");
            // A person's typo: a clear error, not a crash.
            let missing = crictl.run(&["inspect", "does-not-exist"]);
            assert!(!missing.status.success());
            let said = String::from_utf8_lossy(&missing.stderr);
            assert!(said.contains("does-not-exist"), "{said}");
        })
        .await
        .unwrap();
        // The pod's address went back to the pool.
        assert_eq!(allocated_ips(ipam.path(), "crictl"), Vec::<String>::new());
    });
}
