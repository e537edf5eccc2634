//! From cached Kubernetes objects to target groups, role by role, with the
//! `__meta_kubernetes_*` labels Prometheus documents.
//!
//! Each object gives one group, named `<kind>/<namespace>/<name>` (`node/<name>` for
//! nodes). Label names built from Kubernetes label and annotation keys have every
//! character outside `[a-zA-Z0-9_]` replaced by `_`.

use std::collections::{BTreeMap, BTreeSet};

use kiln_model::Labels;

use super::objects::{
    Cache, Container, EndpointSlice, Endpoints, Ingress, Node, ObjectMeta, ObjectReference, Pod,
    Service,
};
use crate::group::{ADDRESS_LABEL, TargetGroup};

const META: &str = "__meta_kubernetes_";
const NAMESPACE_LABEL: &str = "__meta_kubernetes_namespace";

type LabelMap = BTreeMap<String, String>;

/// What besides the role's own objects goes onto targets (`attach_metadata`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attach {
    pub node: bool,
    pub namespace: bool,
}

fn to_labels(map: &LabelMap) -> Labels {
    Labels::from_pairs(&map.iter().collect::<Vec<_>>())
}

fn group(source: String, labels: &LabelMap, targets: Vec<LabelMap>) -> TargetGroup {
    TargetGroup {
        source,
        targets: targets.iter().map(to_labels).collect(),
        labels: to_labels(labels),
    }
}

/// Replaces every character outside `[a-zA-Z0-9_]` with `_`.
pub fn sanitize_label_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn set(map: &mut LabelMap, name: impl Into<String>, value: impl Into<String>) {
    map.insert(name.into(), value.into());
}

/// `<role>_name`, and `<role>_label_*`, `_labelpresent_*`, `_annotation_*`,
/// `_annotationpresent_*` for the object's labels and annotations.
fn add_object_meta(map: &mut LabelMap, meta: &ObjectMeta, role: &str) {
    set(map, format!("{META}{role}_name"), &meta.name);
    for (kind, entries) in [("label", &meta.labels), ("annotation", &meta.annotations)] {
        for (k, v) in entries {
            let k = sanitize_label_name(k);
            set(map, format!("{META}{role}_{kind}_{k}"), v);
            set(map, format!("{META}{role}_{kind}present_{k}"), "true");
        }
    }
}

/// `host:port`, with brackets around IPv6 addresses.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn add_node_labels(map: &mut LabelMap, cache: &Cache, node_name: Option<&str>) {
    let Some(name) = node_name else { return };
    let Some(node) = cache.nodes.get(&(String::new(), name.to_owned())) else {
        return;
    };
    add_object_meta(map, &node.metadata, "node");
}

fn add_namespace_labels(map: &mut LabelMap, cache: &Cache, namespace: &str) {
    let Some(ns) = cache.namespaces.get(&(String::new(), namespace.to_owned())) else {
        return;
    };
    // The name is already `__meta_kubernetes_namespace`; only labels and annotations.
    for (kind, entries) in [
        ("label", &ns.metadata.labels),
        ("annotation", &ns.metadata.annotations),
    ] {
        for (k, v) in entries {
            let k = sanitize_label_name(k);
            set(map, format!("{META}namespace_{kind}_{k}"), v);
            set(map, format!("{META}namespace_{kind}present_{k}"), "true");
        }
    }
}

// --- node -------------------------------------------------------------------------

/// The address of a node: the first of InternalIP, ExternalIP, LegacyHostIP, Hostname.
fn node_address(node: &Node) -> Option<&str> {
    ["InternalIP", "ExternalIP", "LegacyHostIP", "Hostname"]
        .iter()
        .find_map(|kind| {
            node.status
                .addresses
                .iter()
                .find(|a| a.kind == *kind)
                .map(|a| a.address.as_str())
        })
}

pub fn node_groups(cache: &Cache) -> Vec<TargetGroup> {
    cache
        .nodes
        .values()
        .map(|node| {
            let source = format!("node/{}", node.metadata.name);
            let Some(address) = node_address(node) else {
                tracing::warn!(node = %node.metadata.name, "kubernetes_sd: node has no address; skipped");
                return group(source, &LabelMap::new(), Vec::new());
            };
            let mut labels = LabelMap::new();
            add_object_meta(&mut labels, &node.metadata, "node");
            set(&mut labels, format!("{META}node_provider_id"), &node.spec.provider_id);
            for c in &node.status.conditions {
                set(
                    &mut labels,
                    format!("{META}node_condition_{}", sanitize_label_name(&c.kind.to_lowercase())),
                    c.status.to_lowercase(),
                );
            }
            let port = node.status.daemon_endpoints.kubelet_endpoint.port;
            let mut target = LabelMap::new();
            set(&mut target, ADDRESS_LABEL, join_host_port(address, port));
            set(&mut target, "instance", &node.metadata.name);
            let mut seen = BTreeSet::new();
            for a in &node.status.addresses {
                if seen.insert(a.kind.as_str()) {
                    set(
                        &mut target,
                        format!("{META}node_address_{}", sanitize_label_name(&a.kind)),
                        &a.address,
                    );
                }
            }
            group(source, &labels, vec![target])
        })
        .collect()
}

// --- pod --------------------------------------------------------------------------

/// The labels of a pod shared by all its targets (the group labels of the pod role,
/// and what endpoints attach for a pod-backed address).
fn pod_labels(pod: &Pod) -> LabelMap {
    let mut m = LabelMap::new();
    add_object_meta(&mut m, &pod.metadata, "pod");
    set(&mut m, format!("{META}pod_ip"), &pod.status.pod_ip);
    let ready = pod
        .status
        .conditions
        .iter()
        .find(|c| c.kind == "Ready")
        .map_or("unknown".to_owned(), |c| c.status.to_lowercase());
    set(&mut m, format!("{META}pod_ready"), ready);
    set(&mut m, format!("{META}pod_phase"), &pod.status.phase);
    set(&mut m, format!("{META}pod_node_name"), &pod.spec.node_name);
    set(&mut m, format!("{META}pod_host_ip"), &pod.status.host_ip);
    set(&mut m, format!("{META}pod_uid"), &pod.metadata.uid);
    if let Some(owner) = pod
        .metadata
        .owner_references
        .iter()
        .find(|o| o.controller == Some(true))
    {
        if !owner.kind.is_empty() {
            set(&mut m, format!("{META}pod_controller_kind"), &owner.kind);
        }
        if !owner.name.is_empty() {
            set(&mut m, format!("{META}pod_controller_name"), &owner.name);
        }
    }
    m
}

/// The container labels of a target for `container` (and one of its ports).
fn container_labels(target: &mut LabelMap, container: &Container, port: Option<usize>) {
    set(target, format!("{META}pod_container_name"), &container.name);
    set(
        target,
        format!("{META}pod_container_image"),
        &container.image,
    );
    if let Some(p) = port.and_then(|i| container.ports.get(i)) {
        set(target, format!("{META}pod_container_port_name"), &p.name);
        set(
            target,
            format!("{META}pod_container_port_number"),
            p.container_port.to_string(),
        );
        set(
            target,
            format!("{META}pod_container_port_protocol"),
            &p.protocol,
        );
    }
}

pub fn pod_groups(cache: &Cache, attach: Attach) -> Vec<TargetGroup> {
    cache
        .pods
        .values()
        .map(|pod| {
            let source = format!("pod/{}/{}", pod.metadata.namespace, pod.metadata.name);
            // A pod without an IP (starting, evicted) has no targets yet.
            if pod.status.pod_ip.is_empty() {
                return group(source, &LabelMap::new(), Vec::new());
            }
            let mut labels = pod_labels(pod);
            set(&mut labels, NAMESPACE_LABEL, &pod.metadata.namespace);
            if attach.node {
                add_node_labels(&mut labels, cache, Some(&pod.spec.node_name));
            }
            if attach.namespace {
                add_namespace_labels(&mut labels, cache, &pod.metadata.namespace);
            }
            let ip = &pod.status.pod_ip;
            let mut targets = Vec::new();
            let all = pod
                .spec
                .containers
                .iter()
                .map(|c| (c, false))
                .chain(pod.spec.init_containers.iter().map(|c| (c, true)));
            for (c, init) in all {
                let statuses = if init {
                    &pod.status.init_container_statuses
                } else {
                    &pod.status.container_statuses
                };
                let id = statuses
                    .iter()
                    .find(|s| s.name == c.name)
                    .map_or("", |s| s.container_id.as_str());
                let base = |address: String, port: Option<usize>| {
                    let mut t = LabelMap::new();
                    set(&mut t, ADDRESS_LABEL, address);
                    container_labels(&mut t, c, port);
                    set(&mut t, format!("{META}pod_container_id"), id);
                    set(
                        &mut t,
                        format!("{META}pod_container_init"),
                        init.to_string(),
                    );
                    t
                };
                if c.ports.is_empty() {
                    // No declared port: the pod IP alone, for relabeling to add one.
                    targets.push(base(ip.clone(), None));
                }
                for (i, p) in c.ports.iter().enumerate() {
                    targets.push(base(join_host_port(ip, p.container_port), Some(i)));
                }
            }
            group(source, &labels, targets)
        })
        .collect()
}

// --- service ----------------------------------------------------------------------

fn service_labels(svc: &Service) -> LabelMap {
    let mut m = LabelMap::new();
    set(&mut m, NAMESPACE_LABEL, &svc.metadata.namespace);
    add_object_meta(&mut m, &svc.metadata, "service");
    set(&mut m, format!("{META}service_type"), &svc.spec.kind);
    if svc.spec.kind == "ExternalName" {
        set(
            &mut m,
            format!("{META}service_external_name"),
            &svc.spec.external_name,
        );
    } else {
        set(
            &mut m,
            format!("{META}service_cluster_ip"),
            &svc.spec.cluster_ip,
        );
    }
    if svc.spec.kind == "LoadBalancer" {
        let ips: Vec<&str> = svc
            .status
            .load_balancer
            .ingress
            .iter()
            .filter(|i| !i.ip.is_empty())
            .map(|i| i.ip.as_str())
            .collect();
        let ip = if ips.is_empty() {
            svc.spec.load_balancer_ip.clone()
        } else {
            ips.join(",")
        };
        if !ip.is_empty() {
            set(&mut m, format!("{META}service_loadbalancer_ip"), ip);
        }
    }
    m
}

pub fn service_groups(cache: &Cache, attach: Attach) -> Vec<TargetGroup> {
    cache
        .services
        .values()
        .map(|svc| {
            let mut labels = service_labels(svc);
            if attach.namespace {
                add_namespace_labels(&mut labels, cache, &svc.metadata.namespace);
            }
            let host = format!("{}.{}.svc", svc.metadata.name, svc.metadata.namespace);
            let targets = svc
                .spec
                .ports
                .iter()
                .map(|p| {
                    let mut t = LabelMap::new();
                    set(&mut t, ADDRESS_LABEL, join_host_port(&host, p.port));
                    set(&mut t, format!("{META}service_port_name"), &p.name);
                    set(
                        &mut t,
                        format!("{META}service_port_number"),
                        p.port.to_string(),
                    );
                    set(&mut t, format!("{META}service_port_protocol"), &p.protocol);
                    t
                })
                .collect();
            let source = format!("svc/{}/{}", svc.metadata.namespace, svc.metadata.name);
            group(source, &labels, targets)
        })
        .collect()
}

// --- endpoints and endpointslice ----------------------------------------------------

/// The pod an address points to, when it is a pod the cache knows.
fn resolve_pod<'c>(cache: &'c Cache, target: Option<&ObjectReference>) -> Option<&'c Pod> {
    let r = target.filter(|r| r.kind == "Pod")?;
    cache.pods.get(&(r.namespace.clone(), r.name.clone()))
}

/// Pods seen behind a group's addresses, with the ports already given targets.
#[derive(Default)]
struct SeenPods<'c> {
    pods: BTreeMap<(String, String), (&'c Pod, Vec<i64>)>,
}

impl<'c> SeenPods<'c> {
    /// Adds the pod labels to `target` (and the container labels of the container
    /// that declares `port`), and remembers the port.
    fn attach(&mut self, pod: &'c Pod, port: Option<i64>, target: &mut LabelMap) {
        let entry = self
            .pods
            .entry((pod.metadata.namespace.clone(), pod.metadata.name.clone()))
            .or_insert((pod, Vec::new()));
        target.extend(pod_labels(pod));
        if let Some(port) = port {
            'find: for c in &pod.spec.containers {
                for (i, p) in c.ports.iter().enumerate() {
                    if p.container_port == port {
                        container_labels(target, c, Some(i));
                        break 'find;
                    }
                }
            }
            entry.1.push(port);
        }
    }

    /// One target per container port of the seen pods that no address covered.
    fn remaining_targets(&self) -> Vec<LabelMap> {
        let mut out = Vec::new();
        for (pod, ports) in self.pods.values() {
            if pod.status.pod_ip.is_empty() {
                continue;
            }
            for c in &pod.spec.containers {
                for (i, p) in c.ports.iter().enumerate() {
                    if ports.contains(&p.container_port) {
                        continue;
                    }
                    let mut t = pod_labels(pod);
                    set(
                        &mut t,
                        ADDRESS_LABEL,
                        join_host_port(&pod.status.pod_ip, p.container_port),
                    );
                    container_labels(&mut t, c, Some(i));
                    out.push(t);
                }
            }
        }
        out
    }
}

fn add_service_of(labels: &mut LabelMap, cache: &Cache, namespace: &str, name: Option<&str>) {
    if let Some(svc) = name.and_then(|n| cache.services.get(&(namespace.to_owned(), n.to_owned())))
    {
        labels.extend(service_labels(svc));
    }
}

pub fn endpoints_groups(cache: &Cache, attach: Attach) -> Vec<TargetGroup> {
    cache
        .endpoints
        .values()
        .map(|eps: &Endpoints| {
            let ns = &eps.metadata.namespace;
            let mut labels = LabelMap::new();
            set(&mut labels, NAMESPACE_LABEL, ns);
            add_service_of(&mut labels, cache, ns, Some(&eps.metadata.name));
            add_object_meta(&mut labels, &eps.metadata, "endpoints");
            if attach.namespace {
                add_namespace_labels(&mut labels, cache, ns);
            }
            let mut seen = SeenPods::default();
            let mut targets = Vec::new();
            for subset in &eps.subsets {
                for port in &subset.ports {
                    let addresses = subset
                        .addresses
                        .iter()
                        .map(|a| (a, "true"))
                        .chain(subset.not_ready_addresses.iter().map(|a| (a, "false")));
                    for (addr, ready) in addresses {
                        let mut t = LabelMap::new();
                        set(&mut t, ADDRESS_LABEL, join_host_port(&addr.ip, port.port));
                        set(&mut t, format!("{META}endpoint_port_name"), &port.name);
                        set(
                            &mut t,
                            format!("{META}endpoint_port_protocol"),
                            &port.protocol,
                        );
                        set(&mut t, format!("{META}endpoint_ready"), ready);
                        if let Some(r) = &addr.target_ref {
                            set(
                                &mut t,
                                format!("{META}endpoint_address_target_kind"),
                                &r.kind,
                            );
                            set(
                                &mut t,
                                format!("{META}endpoint_address_target_name"),
                                &r.name,
                            );
                        }
                        if let Some(n) = &addr.node_name {
                            set(&mut t, format!("{META}endpoint_node_name"), n);
                        }
                        if !addr.hostname.is_empty() {
                            set(&mut t, format!("{META}endpoint_hostname"), &addr.hostname);
                        }
                        if attach.node {
                            add_node_labels(&mut t, cache, addr.node_name.as_deref());
                        }
                        if let Some(pod) = resolve_pod(cache, addr.target_ref.as_ref()) {
                            seen.attach(pod, Some(port.port), &mut t);
                        }
                        targets.push(t);
                    }
                }
            }
            targets.extend(seen.remaining_targets());
            let source = format!("endpoints/{ns}/{}", eps.metadata.name);
            group(source, &labels, targets)
        })
        .collect()
}

pub fn endpointslice_groups(cache: &Cache, attach: Attach) -> Vec<TargetGroup> {
    let p = |s: &str| format!("{META}endpointslice_{s}");
    cache
        .endpoint_slices
        .values()
        .map(|eps: &EndpointSlice| {
            let ns = &eps.metadata.namespace;
            let mut labels = LabelMap::new();
            set(&mut labels, NAMESPACE_LABEL, ns);
            set(&mut labels, p("address_type"), &eps.address_type);
            add_object_meta(&mut labels, &eps.metadata, "endpointslice");
            let service = eps.metadata.labels.get("kubernetes.io/service-name");
            add_service_of(&mut labels, cache, ns, service.map(String::as_str));
            if attach.namespace {
                add_namespace_labels(&mut labels, cache, ns);
            }
            let mut seen = SeenPods::default();
            let mut targets = Vec::new();
            for ep in &eps.endpoints {
                for port in &eps.ports {
                    for addr in &ep.addresses {
                        let mut t = LabelMap::new();
                        let address = match port.port {
                            Some(n) => join_host_port(addr, n),
                            None => addr.clone(),
                        };
                        set(&mut t, ADDRESS_LABEL, address);
                        if let Some(v) = &port.name {
                            set(&mut t, p("port_name"), v);
                        }
                        if let Some(v) = &port.protocol {
                            set(&mut t, p("port_protocol"), v);
                        }
                        if let Some(v) = port.port {
                            set(&mut t, p("port"), v.to_string());
                        }
                        if let Some(v) = &port.app_protocol {
                            set(&mut t, p("port_app_protocol"), v);
                        }
                        let c = &ep.conditions;
                        for (name, v) in [
                            ("ready", c.ready),
                            ("serving", c.serving),
                            ("terminating", c.terminating),
                        ] {
                            if let Some(v) = v {
                                set(
                                    &mut t,
                                    p(&format!("endpoint_conditions_{name}")),
                                    v.to_string(),
                                );
                            }
                        }
                        if let Some(v) = &ep.hostname {
                            set(&mut t, p("endpoint_hostname"), v);
                        }
                        if let Some(r) = &ep.target_ref {
                            set(&mut t, p("address_target_kind"), &r.kind);
                            set(&mut t, p("address_target_name"), &r.name);
                        }
                        if let Some(v) = &ep.node_name {
                            set(&mut t, p("endpoint_node_name"), v);
                        }
                        if let Some(v) = &ep.zone {
                            set(&mut t, p("endpoint_zone"), v);
                        }
                        for (k, v) in &ep.deprecated_topology {
                            let k = sanitize_label_name(k);
                            set(&mut t, p(&format!("endpoint_topology_{k}")), v);
                            set(&mut t, p(&format!("endpoint_topology_present_{k}")), "true");
                        }
                        if attach.node {
                            let node = match &ep.target_ref {
                                Some(r) if r.kind == "Node" => Some(r.name.as_str()),
                                _ => ep.node_name.as_deref(),
                            };
                            add_node_labels(&mut t, cache, node);
                        }
                        if let Some(pod) = resolve_pod(cache, ep.target_ref.as_ref()) {
                            seen.attach(pod, port.port, &mut t);
                        }
                        targets.push(t);
                    }
                }
            }
            targets.extend(seen.remaining_targets());
            let source = format!("endpointslice/{ns}/{}", eps.metadata.name);
            group(source, &labels, targets)
        })
        .collect()
}

// --- ingress ----------------------------------------------------------------------

/// Whether `host` is covered by a TLS host entry (`*.example.com` covers one label).
fn tls_covers(tls_hosts: &[&str], host: &str) -> bool {
    tls_hosts.iter().any(|h| {
        if let Some(suffix) = h.strip_prefix("*.") {
            host.split_once('.').is_some_and(|(_, rest)| rest == suffix)
        } else {
            *h == host
        }
    })
}

pub fn ingress_groups(cache: &Cache, attach: Attach) -> Vec<TargetGroup> {
    cache
        .ingresses
        .values()
        .map(|ing: &Ingress| {
            let ns = &ing.metadata.namespace;
            let mut labels = LabelMap::new();
            set(&mut labels, NAMESPACE_LABEL, ns);
            add_object_meta(&mut labels, &ing.metadata, "ingress");
            if let Some(class) = &ing.spec.ingress_class_name {
                set(&mut labels, format!("{META}ingress_class_name"), class);
            }
            if attach.namespace {
                add_namespace_labels(&mut labels, cache, ns);
            }
            let tls_hosts: Vec<&str> = ing
                .spec
                .tls
                .iter()
                .flat_map(|t| t.hosts.iter().map(String::as_str))
                .collect();
            let mut targets = Vec::new();
            for rule in &ing.spec.rules {
                let scheme = if tls_covers(&tls_hosts, &rule.host) {
                    "https"
                } else {
                    "http"
                };
                let paths: Vec<String> = match &rule.http {
                    Some(http) if !http.paths.is_empty() => http
                        .paths
                        .iter()
                        .map(|p| match p.path.as_deref() {
                            None | Some("") => "/".to_owned(),
                            Some(p) => p.to_owned(),
                        })
                        .collect(),
                    _ => vec!["/".to_owned()],
                };
                for path in paths {
                    let mut t = LabelMap::new();
                    set(&mut t, ADDRESS_LABEL, &rule.host);
                    set(&mut t, format!("{META}ingress_scheme"), scheme);
                    set(&mut t, format!("{META}ingress_path"), path);
                    targets.push(t);
                }
            }
            let source = format!("ingress/{ns}/{}", ing.metadata.name);
            group(source, &labels, targets)
        })
        .collect()
}
