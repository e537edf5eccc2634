//! Kubernetes discovery against the recorded-style API responses of
//! `tests/fixtures/kubernetes`, served on loopback by a small fake API server that also
//! delivers one watch event.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use kiln_config::{
    HttpClientConfig, KubernetesAttachMetadata, KubernetesNamespaces, KubernetesRole,
    KubernetesSdConfig,
};
use kiln_model::Labels;

use super::KubernetesDiscovery;
use crate::group::TargetGroup;
use crate::manager::Publisher;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kubernetes");

const NEW_POD: &str = r#"{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"trainer-1","namespace":"ml-training","uid":"u-new","resourceVersion":"6001"},"spec":{"nodeName":"gpu-node-2","containers":[{"name":"trainer","image":"registry.example.com/ml/trainer:2.3.1","ports":[{"name":"metrics","containerPort":8000,"protocol":"TCP"}]}]},"status":{"phase":"Running","podIP":"10.244.2.30","conditions":[{"type":"Ready","status":"True"}]}}}"#;

/// Serves the fixture lists (filtered by namespace for namespaced paths); the first
/// cluster-wide pod watch gets one ADDED event.
async fn fake_api_server() -> String {
    let sent = Arc::new(AtomicBool::new(false));
    let app = Router::new()
        .fallback(
            |State(sent): State<Arc<AtomicBool>>, req: Request| async move {
                let path = req.uri().path().to_owned();
                let query = req.uri().query().unwrap_or_default().to_owned();
                let json = |body: String| {
                    (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                };
                if query.contains("watch=1") {
                    if path == "/api/v1/pods" && !sent.swap(true, Ordering::SeqCst) {
                        return json(format!("{NEW_POD}\n"));
                    }
                    // Nothing new: the watch ends after a while, as a server timeout would.
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    return json(String::new());
                }
                let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
                let (namespace, kind) = match parts.as_slice() {
                    ["api", "v1", kind] | ["apis", _, "v1", kind] => (None, *kind),
                    ["api", "v1", "namespaces", ns, kind]
                    | ["apis", _, "v1", "namespaces", ns, kind] => (Some(*ns), *kind),
                    _ => {
                        return (
                            StatusCode::NOT_FOUND,
                            [(header::CONTENT_TYPE, "text/plain")],
                            path,
                        );
                    }
                };
                let Ok(text) = std::fs::read_to_string(format!("{FIXTURES}/{kind}.json")) else {
                    return (
                        StatusCode::NOT_FOUND,
                        [(header::CONTENT_TYPE, "text/plain")],
                        path,
                    );
                };
                let mut list: serde_json::Value =
                    serde_json::from_str(&text).expect("fixture json");
                if let Some(ns) = namespace
                    && let Some(items) = list["items"].as_array_mut()
                {
                    items.retain(|i| i["metadata"]["namespace"] == ns);
                }
                json(list.to_string())
            },
        )
        .with_state(sent);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn config(api: &str, role: KubernetesRole) -> KubernetesSdConfig {
    KubernetesSdConfig {
        role,
        api_server: kiln_config::SecretUrl::new(api),
        kubeconfig_file: String::new(),
        namespaces: KubernetesNamespaces::default(),
        selectors: Vec::new(),
        attach_metadata: KubernetesAttachMetadata::default(),
        http_client: HttpClientConfig::default(),
    }
}

async fn discover(config: KubernetesSdConfig) -> Vec<TargetGroup> {
    let (publisher, published) = Publisher::for_test();
    let task = tokio::spawn(
        KubernetesDiscovery::new(config)
            .expect("discovery")
            .run(publisher),
    );
    let groups = published.next_where(|g| !g.is_empty()).await;
    task.abort();
    groups
}

fn group<'g>(groups: &'g [TargetGroup], source: &str) -> &'g TargetGroup {
    groups
        .iter()
        .find(|g| g.source == source)
        .unwrap_or_else(|| panic!("no group {source}"))
}

/// The target of `g` with this address (and, when given, this container port name).
fn target<'g>(g: &'g TargetGroup, address: &str) -> &'g Labels {
    g.targets
        .iter()
        .find(|t| t.get("__address__") == Some(address))
        .unwrap_or_else(|| panic!("no target {address} in {}", g.source))
}

fn has(labels: &Labels, want: &[(&str, &str)]) {
    let map: BTreeMap<&str, &str> = labels.iter().map(|l| (l.name, l.value)).collect();
    for (n, v) in want {
        assert_eq!(map.get(n), Some(v), "{n} in {labels}");
    }
}

#[tokio::test]
async fn node_role() {
    let api = fake_api_server().await;
    let groups = discover(config(&api, KubernetesRole::Node)).await;
    assert_eq!(groups.len(), 3);
    let g = group(&groups, "node/gpu-node-2");
    has(
        &g.labels,
        &[
            ("__meta_kubernetes_node_name", "gpu-node-2"),
            (
                "__meta_kubernetes_node_label_nvidia_com_gpu_product",
                "NVIDIA-A100-SXM4-40GB",
            ),
            (
                "__meta_kubernetes_node_labelpresent_nvidia_com_gpu_product",
                "true",
            ),
            (
                "__meta_kubernetes_node_annotation_node_alpha_kubernetes_io_ttl",
                "0",
            ),
            (
                "__meta_kubernetes_node_provider_id",
                "aws:///us-east-1a/i-0a1b2c3d4e5f60002",
            ),
            ("__meta_kubernetes_node_condition_ready", "true"),
            ("__meta_kubernetes_node_condition_memorypressure", "false"),
        ],
    );
    has(
        target(g, "10.0.1.12:10250"),
        &[
            ("instance", "gpu-node-2"),
            ("__meta_kubernetes_node_address_InternalIP", "10.0.1.12"),
            ("__meta_kubernetes_node_address_ExternalIP", "54.210.0.12"),
            ("__meta_kubernetes_node_address_Hostname", "gpu-node-2"),
        ],
    );
    let cpu = group(&groups, "node/cpu-node-1");
    has(
        &cpu.labels,
        &[("__meta_kubernetes_node_condition_ready", "unknown")],
    );
}

#[tokio::test]
async fn pod_role_with_attached_metadata_and_watch_updates() {
    let api = fake_api_server().await;
    let mut c = config(&api, KubernetesRole::Pod);
    c.attach_metadata = KubernetesAttachMetadata {
        node: true,
        namespace: true,
        ..KubernetesAttachMetadata::default()
    };
    let (publisher, published) = Publisher::for_test();
    let task = tokio::spawn(
        KubernetesDiscovery::new(c)
            .expect("discovery")
            .run(publisher),
    );
    let groups = published.next_where(|g| !g.is_empty()).await;

    let trainer = group(&groups, "pod/ml-training/trainer-0");
    has(
        &trainer.labels,
        &[
            ("__meta_kubernetes_namespace", "ml-training"),
            ("__meta_kubernetes_pod_name", "trainer-0"),
            ("__meta_kubernetes_pod_ip", "10.244.1.5"),
            ("__meta_kubernetes_pod_ready", "true"),
            ("__meta_kubernetes_pod_phase", "Running"),
            ("__meta_kubernetes_pod_node_name", "gpu-node-1"),
            ("__meta_kubernetes_pod_host_ip", "10.0.1.11"),
            (
                "__meta_kubernetes_pod_uid",
                "5f0d9a0c-2222-4c1e-b1f0-000000000001",
            ),
            ("__meta_kubernetes_pod_controller_kind", "StatefulSet"),
            ("__meta_kubernetes_pod_controller_name", "trainer"),
            (
                "__meta_kubernetes_pod_label_app_kubernetes_io_name",
                "trainer",
            ),
            (
                "__meta_kubernetes_pod_annotation_prometheus_io_port",
                "8000",
            ),
            (
                "__meta_kubernetes_pod_annotationpresent_prometheus_io_scrape",
                "true",
            ),
            // attach_metadata: the node's and the namespace's labels.
            ("__meta_kubernetes_node_name", "gpu-node-1"),
            (
                "__meta_kubernetes_node_label_nvidia_com_gpu_product",
                "NVIDIA-A100-SXM4-40GB",
            ),
            ("__meta_kubernetes_namespace_label_team", "ml-platform"),
            (
                "__meta_kubernetes_namespace_annotation_owner_example_com_slack",
                "#ml-infra",
            ),
        ],
    );
    // Two ports of the trainer, one of the exporter, the port-less sidecar and the
    // init container: five targets.
    assert_eq!(trainer.targets.len(), 5, "{:?}", trainer.targets);
    has(
        target(trainer, "10.244.1.5:9400"),
        &[
            ("__meta_kubernetes_pod_container_name", "dcgm-exporter"),
            ("__meta_kubernetes_pod_container_port_name", "gpu-metrics"),
            ("__meta_kubernetes_pod_container_port_number", "9400"),
            ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
            (
                "__meta_kubernetes_pod_container_id",
                "containerd://2222bbbb",
            ),
            ("__meta_kubernetes_pod_container_init", "false"),
        ],
    );
    let portless: Vec<&Labels> = trainer
        .targets
        .iter()
        .filter(|t| t.get("__address__") == Some("10.244.1.5"))
        .collect();
    assert_eq!(portless.len(), 2);
    assert!(portless.iter().any(|t| {
        t.get("__meta_kubernetes_pod_container_name") == Some("fetch-dataset")
            && t.get("__meta_kubernetes_pod_container_init") == Some("true")
            && t.get("__meta_kubernetes_pod_container_id") == Some("containerd://1111aaaa")
    }));
    // The pending pod has no IP, hence no targets.
    assert!(
        group(&groups, "pod/ml-training/etl-28895040-hq7zd")
            .targets
            .is_empty()
    );
    let unready = group(&groups, "pod/ml-training/triton-7d9f8b6c5-9vwzt");
    has(
        &unready.labels,
        &[
            ("__meta_kubernetes_pod_ready", "false"),
            ("__meta_kubernetes_pod_controller_kind", "ReplicaSet"),
        ],
    );

    // The watch delivers a new pod.
    let groups = published
        .next_where(|g| g.iter().any(|g| g.source == "pod/ml-training/trainer-1"))
        .await;
    target(
        group(&groups, "pod/ml-training/trainer-1"),
        "10.244.2.30:8000",
    );
    task.abort();
}

#[tokio::test]
async fn pod_role_in_chosen_namespaces() {
    let api = fake_api_server().await;
    let mut c = config(&api, KubernetesRole::Pod);
    c.namespaces.names = vec!["monitoring".into()];
    let groups = discover(c).await;
    assert_eq!(groups.len(), 1);
    has(
        target(&groups[0], "10.0.2.21:9100"),
        &[("__meta_kubernetes_pod_container_name", "node-exporter")],
    );
}

#[tokio::test]
async fn service_role() {
    let api = fake_api_server().await;
    let groups = discover(config(&api, KubernetesRole::Service)).await;
    let triton = group(&groups, "svc/ml-training/triton");
    has(
        &triton.labels,
        &[
            ("__meta_kubernetes_namespace", "ml-training"),
            ("__meta_kubernetes_service_name", "triton"),
            ("__meta_kubernetes_service_type", "ClusterIP"),
            ("__meta_kubernetes_service_cluster_ip", "10.96.14.2"),
            ("__meta_kubernetes_service_label_app", "triton"),
            (
                "__meta_kubernetes_service_annotation_prometheus_io_port",
                "8002",
            ),
        ],
    );
    has(
        target(triton, "triton.ml-training.svc:8002"),
        &[
            ("__meta_kubernetes_service_port_name", "metrics"),
            ("__meta_kubernetes_service_port_number", "8002"),
            ("__meta_kubernetes_service_port_protocol", "TCP"),
        ],
    );
    let external = group(&groups, "svc/ml-training/feature-store");
    has(
        &external.labels,
        &[(
            "__meta_kubernetes_service_external_name",
            "features.db.example.com",
        )],
    );
    assert!(
        external
            .labels
            .get("__meta_kubernetes_service_cluster_ip")
            .is_none()
    );
    let lb = group(&groups, "svc/ml-training/inference-gateway");
    has(
        &lb.labels,
        &[(
            "__meta_kubernetes_service_loadbalancer_ip",
            "203.0.113.10,203.0.113.11",
        )],
    );
}

#[tokio::test]
async fn endpoints_role() {
    let api = fake_api_server().await;
    let groups = discover(config(&api, KubernetesRole::Endpoints)).await;
    let g = group(&groups, "endpoints/ml-training/triton");
    has(
        &g.labels,
        &[
            ("__meta_kubernetes_endpoints_name", "triton"),
            ("__meta_kubernetes_endpoints_label_app", "triton"),
            ("__meta_kubernetes_service_name", "triton"),
            (
                "__meta_kubernetes_service_annotation_prometheus_io_scrape",
                "true",
            ),
        ],
    );
    // 2 addresses x 2 ports, plus each pod's grpc port that no endpoint port covers.
    assert_eq!(g.targets.len(), 6, "{:?}", g.targets);
    has(
        target(g, "10.244.1.9:8002"),
        &[
            ("__meta_kubernetes_endpoint_ready", "false"),
            ("__meta_kubernetes_endpoint_port_name", "metrics"),
            ("__meta_kubernetes_endpoint_node_name", "gpu-node-1"),
            ("__meta_kubernetes_endpoint_address_target_kind", "Pod"),
            (
                "__meta_kubernetes_endpoint_address_target_name",
                "triton-7d9f8b6c5-9vwzt",
            ),
            ("__meta_kubernetes_pod_name", "triton-7d9f8b6c5-9vwzt"),
            ("__meta_kubernetes_pod_container_port_name", "metrics"),
        ],
    );
    let grpc = target(g, "10.244.2.7:8001");
    has(
        grpc,
        &[("__meta_kubernetes_pod_container_port_name", "grpc")],
    );
    assert!(grpc.get("__meta_kubernetes_endpoint_ready").is_none());
    let api_server = group(&groups, "endpoints/default/kubernetes");
    let t = target(api_server, "10.0.0.1:6443");
    assert!(t.get("__meta_kubernetes_pod_name").is_none());
}

#[tokio::test]
async fn endpointslice_role() {
    let api = fake_api_server().await;
    let groups = discover(config(&api, KubernetesRole::EndpointSlice)).await;
    let g = group(&groups, "endpointslice/ml-training/triton-abc12");
    has(
        &g.labels,
        &[
            ("__meta_kubernetes_endpointslice_name", "triton-abc12"),
            ("__meta_kubernetes_endpointslice_address_type", "IPv4"),
            (
                "__meta_kubernetes_endpointslice_label_kubernetes_io_service_name",
                "triton",
            ),
            ("__meta_kubernetes_service_name", "triton"),
        ],
    );
    assert_eq!(g.targets.len(), 6);
    has(
        target(g, "10.244.2.7:8002"),
        &[
            ("__meta_kubernetes_endpointslice_port", "8002"),
            ("__meta_kubernetes_endpointslice_port_name", "metrics"),
            ("__meta_kubernetes_endpointslice_port_protocol", "TCP"),
            ("__meta_kubernetes_endpointslice_port_app_protocol", "http"),
            (
                "__meta_kubernetes_endpointslice_endpoint_conditions_ready",
                "true",
            ),
            (
                "__meta_kubernetes_endpointslice_endpoint_conditions_serving",
                "true",
            ),
            (
                "__meta_kubernetes_endpointslice_endpoint_conditions_terminating",
                "false",
            ),
            (
                "__meta_kubernetes_endpointslice_endpoint_node_name",
                "gpu-node-2",
            ),
            (
                "__meta_kubernetes_endpointslice_endpoint_zone",
                "us-east-1a",
            ),
            ("__meta_kubernetes_endpointslice_address_target_kind", "Pod"),
            ("__meta_kubernetes_pod_container_name", "triton"),
        ],
    );
}

#[tokio::test]
async fn ingress_role() {
    let api = fake_api_server().await;
    let groups = discover(config(&api, KubernetesRole::Ingress)).await;
    let g = group(&groups, "ingress/ml-training/triton");
    has(
        &g.labels,
        &[
            ("__meta_kubernetes_ingress_name", "triton"),
            ("__meta_kubernetes_ingress_class_name", "nginx"),
            ("__meta_kubernetes_ingress_label_app", "triton"),
        ],
    );
    let paths: Vec<(String, String, String)> = g
        .targets
        .iter()
        .map(|t| {
            let get = |n: &str| t.get(n).unwrap_or_default().to_owned();
            (
                get("__address__"),
                get("__meta_kubernetes_ingress_scheme"),
                get("__meta_kubernetes_ingress_path"),
            )
        })
        .collect();
    let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        paths,
        [
            s("infer.example.com", "https", "/v2"),
            s("infer.example.com", "https", "/metrics"),
            s("status.example.com", "http", "/"),
        ]
    );
}

#[tokio::test]
async fn an_unreachable_api_server_publishes_nothing() {
    // Nothing listens on the port: the watchers retry; no (empty) groups are published
    // that would wipe targets known before.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let (publisher, published) = Publisher::for_test();
    let task = tokio::spawn(
        KubernetesDiscovery::new(config(
            &format!("http://127.0.0.1:{port}"),
            KubernetesRole::Pod,
        ))
        .expect("discovery")
        .run(publisher),
    );
    let waited = tokio::time::timeout(
        std::time::Duration::from_millis(1500),
        published.next_where(|_| true),
    )
    .await;
    assert!(waited.is_err(), "published before any list succeeded");
    task.abort();
}
