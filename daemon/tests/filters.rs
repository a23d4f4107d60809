//! Filters on labels through `crated`: a label key with dots in it is
//! reached with or without quotes (`labels.a.b==x`, `labels."a.b"==x`),
//! as containerd joins the rest of the field path, on every record a list
//! filters.

#![allow(clippy::unwrap_used)]

mod common;

use common::blobs::{blob, ctr_with_stdin};
use common::{debian_ctr, ok, workspace_bin, Daemon};
use crated_api::containerd::services::containers::v1 as containers;
use crated_api::containerd::services::images::v1 as images;
use crated_api::containerd::services::namespaces::v1 as namespaces;
use crated_api::containerd::types::Descriptor;
use crated_api::metadata::set_grpc_namespace;
use crated_core::Namespace;

const NS: &str = "filters";

fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    set_grpc_namespace(&mut request, &Namespace::new(NS).unwrap());
    request
}

/// The filters every list is asked with: the dotted key unquoted and
/// quoted match the record labelled `a.b=x`; the other record carries `a=x`
/// and `b=x`, which must not make `a.b` match.
const MATCHING: [&str; 2] = ["labels.a.b==x", r#"labels."a.b"==x"#];

/// Runs `list` (a ctr list command printing one id per line with `-q`)
/// with each filter through both ctrs; what did not list `want` only.
fn lists_only(daemon: &Daemon, list: &[&str], want: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    for ctr in [debian_ctr(), workspace_bin("ctr")] {
        for filter in MATCHING {
            let mut args = vec!["-n", NS];
            args.extend_from_slice(list);
            args.push(filter);
            let out = ok(daemon.ctr(&ctr, &args));
            let ids: Vec<&str> = out.lines().map(str::trim).collect();
            if ids != [want] {
                wrong.push(format!("{} {args:?}: {ids:?}", ctr.display()));
            }
        }
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dotted_label_keys_filter_images_containers_leases_namespaces_and_content() {
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let channel = daemon.channel().await;

    for (name, labels) in [
        ("dotted", vec![("a.b", "x")]),
        ("split", vec![("a", "x"), ("b", "x")]),
    ] {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<std::collections::HashMap<_, _>>();
        images::images_client::ImagesClient::new(channel.clone())
            .create(request(images::CreateImageRequest {
                image: Some(images::Image {
                    name: format!("example.com/{name}:latest"),
                    labels: labels.clone(),
                    target: Some(Descriptor {
                        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                        digest: format!("sha256:{}", "ab".repeat(32)),
                        size: 100,
                        annotations: Default::default(),
                    }),
                    ..Default::default()
                }),
                source_date_epoch: None,
            }))
            .await
            .unwrap();
        containers::containers_client::ContainersClient::new(channel.clone())
            .create(request(containers::CreateContainerRequest {
                container: Some(containers::Container {
                    id: name.into(),
                    labels: labels.clone(),
                    runtime: Some(containers::container::Runtime {
                        name: "io.containerd.runc.v2".into(),
                        options: None,
                    }),
                    spec: Some(prost_types::Any {
                        type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
                        value: b"{}".to_vec(),
                    }),
                    ..Default::default()
                }),
            }))
            .await
            .unwrap();
        let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut lease = vec!["-n", NS, "leases", "create", "--id", name];
        lease.extend(pairs.iter().map(String::as_str));
        ok(daemon.ctr(&debian_ctr(), &lease));
        let mut namespace = vec!["namespaces", "create", name];
        namespace.extend(pairs.iter().map(String::as_str));
        ok(daemon.ctr(&debian_ctr(), &namespace));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut digests = Vec::new();
    for (name, seed) in [("dotted", 3), ("split", 5)] {
        let (file, digest) = blob(dir.path(), name, 1024, seed);
        ok(ctr_with_stdin(
            &daemon,
            &debian_ctr(),
            &["-n", NS, "content", "ingest", name],
            &file,
        ));
        digests.push(digest);
    }
    ok(daemon.ctr(
        &debian_ctr(),
        &["-n", NS, "content", "label", &digests[0], "a.b=x"],
    ));
    ok(daemon.ctr(
        &debian_ctr(),
        &["-n", NS, "content", "label", &digests[1], "a=x", "b=x"],
    ));

    let mut wrong = lists_only(
        &daemon,
        &["images", "ls", "-q"],
        "example.com/dotted:latest",
    );
    wrong.extend(lists_only(&daemon, &["containers", "ls", "-q"], "dotted"));
    wrong.extend(lists_only(&daemon, &["leases", "ls", "-q"], "dotted"));
    wrong.extend(lists_only(&daemon, &["content", "ls", "-q"], &digests[0]));
    // Neither ctr sends a filter for namespaces: the API does.
    for filter in MATCHING {
        let listed = namespaces::namespaces_client::NamespacesClient::new(channel.clone())
            .list(tonic::Request::new(namespaces::ListNamespacesRequest {
                filter: filter.into(),
            }))
            .await
            .unwrap()
            .into_inner()
            .namespaces;
        let names: Vec<&str> = listed.iter().map(|n| n.name.as_str()).collect();
        if names != ["dotted"] {
            wrong.push(format!("Namespaces.List {filter:?}: {names:?}"));
        }
    }
    assert!(wrong.is_empty(), "wrong lists:\n{}", wrong.join("\n"));
}
