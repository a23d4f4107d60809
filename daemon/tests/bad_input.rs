//! Bad input gets InvalidArgument with a message naming what was wrong, and
//! changes nothing.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::{debian_ctr, fails, ok, workspace_bin, Daemon};
use crated_api::containerd::services::introspection::v1 as intro;
use crated_api::containerd::services::namespaces::v1 as pb;
use std::collections::HashMap;

fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("containerd-namespace", "default".parse().unwrap());
    request
}

fn create(name: &str, labels: &[(&str, &str)]) -> tonic::Request<pb::CreateNamespaceRequest> {
    request(pb::CreateNamespaceRequest {
        namespace: Some(pb::Namespace {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }),
    })
}

#[tokio::test]
async fn invalid_names_labels_and_filters_are_invalid_argument() {
    let daemon = Daemon::start();
    let mut ns = pb::namespaces_client::NamespacesClient::new(daemon.channel().await);
    let long = "a".repeat(80);
    let big = "v".repeat(4100);
    let cases: Vec<(&str, tonic::Request<pb::CreateNamespaceRequest>, &str)> = vec![
        (
            "path-like name",
            create("Foo/../x", &[]),
            "identifier \"Foo/../x\" must match",
        ),
        (
            "80 chars",
            create(&long, &[]),
            "greater than maximum length (76 characters)",
        ),
        ("empty", create("", &[]), "identifier must not be empty"),
        (
            "oversized label",
            create("ok", &[("k", &big)]),
            "label key and value greater than maximum size (4096 bytes)",
        ),
    ];
    for (what, req, message) in cases {
        let status = ns.create(req).await.expect_err(what);
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{what}: {status:?}"
        );
        assert!(
            status.message().contains(message),
            "{what}: {}",
            status.message()
        );
    }
    let status = ns
        .update(request(pb::UpdateNamespaceRequest {
            namespace: Some(pb::Namespace {
                name: "x".into(),
                labels: HashMap::new(),
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into()],
            }),
        }))
        .await
        .expect_err("unknown field path");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("cannot update \"name\""),
        "{}",
        status.message()
    );

    let mut introspection =
        intro::introspection_client::IntrospectionClient::new(daemon.channel().await);
    let status = introspection
        .plugins(request(intro::PluginsRequest {
            filters: vec!["id==".into()],
        }))
        .await
        .expect_err("malformed filter");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("position"),
        "{}",
        status.message()
    );

    // Nothing was created by any of it.
    let list = ns
        .list(request(pb::ListNamespacesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(list.namespaces.is_empty(), "{:?}", list.namespaces);

    let status = ns
        .delete(request(pb::DeleteNamespaceRequest {
            name: "nosuch".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(status.message(), "namespace \"nosuch\" not found");
}

#[test]
fn both_ctrs_report_bad_input_and_change_nothing() {
    let daemon = Daemon::start();
    let long = "a".repeat(80);
    let label = format!("k={}", "v".repeat(4100));
    for ctr in [debian_ctr(), workspace_bin("ctr")] {
        let bad: [(&[&str], &str); 4] = [
            (&["namespaces", "create", "Foo/../x"], "must match"),
            (
                &["namespaces", "create", &long],
                "greater than maximum length",
            ),
            (
                &["namespaces", "create", "ok", &label],
                "greater than maximum size",
            ),
            (&["plugins", "ls", "id=="], "position"),
        ];
        for (args, message) in bad {
            let stderr = fails(daemon.ctr(&ctr, args));
            assert!(stderr.contains("ctr: "), "{ctr:?} {args:?}: {stderr}");
            assert!(stderr.contains(message), "{ctr:?} {args:?}: {stderr}");
        }
        assert_eq!(
            ok(daemon.ctr(&ctr, &["namespaces", "ls", "-q"])),
            "",
            "{ctr:?}"
        );
    }
}
