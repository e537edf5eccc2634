//! The Kubernetes API objects discovery reads, reduced to the fields it uses, and the
//! cache of them that the watchers keep.
//!
//! Every field defaults when missing, so an object from a newer or older API server
//! (or with fields it leaves out) still decodes; unknown fields are ignored.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub resource_version: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub owner_references: Vec<OwnerReference>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct OwnerReference {
    pub kind: String,
    pub name: String,
    pub controller: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ObjectReference {
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
}

// --- Node -------------------------------------------------------------------------

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Node {
    pub metadata: ObjectMeta,
    pub spec: NodeSpec,
    pub status: NodeStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NodeSpec {
    #[serde(rename = "providerID")]
    pub provider_id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeStatus {
    pub addresses: Vec<NodeAddress>,
    pub conditions: Vec<Condition>,
    pub daemon_endpoints: DaemonEndpoints,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NodeAddress {
    #[serde(rename = "type")]
    pub kind: String,
    pub address: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DaemonEndpoints {
    pub kubelet_endpoint: PortHolder,
}

/// `kubeletEndpoint`, whose one field the API spells `Port`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PortHolder {
    #[serde(rename = "Port")]
    pub port: i64,
}

// --- Pod --------------------------------------------------------------------------

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Pod {
    pub metadata: ObjectMeta,
    pub spec: PodSpec,
    pub status: PodStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodSpec {
    pub node_name: String,
    pub containers: Vec<Container>,
    pub init_containers: Vec<Container>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Container {
    pub name: String,
    pub image: String,
    pub ports: Vec<ContainerPort>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerPort {
    pub name: String,
    pub container_port: i64,
    pub protocol: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodStatus {
    pub phase: String,
    #[serde(rename = "podIP")]
    pub pod_ip: String,
    #[serde(rename = "hostIP")]
    pub host_ip: String,
    pub conditions: Vec<Condition>,
    pub container_statuses: Vec<ContainerStatus>,
    pub init_container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ContainerStatus {
    pub name: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
}

// --- Service ----------------------------------------------------------------------

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Service {
    pub metadata: ObjectMeta,
    pub spec: ServiceSpec,
    pub status: ServiceStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceSpec {
    pub ports: Vec<ServicePort>,
    #[serde(rename = "clusterIP")]
    pub cluster_ip: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub external_name: String,
    #[serde(rename = "loadBalancerIP")]
    pub load_balancer_ip: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServicePort {
    pub name: String,
    pub port: i64,
    pub protocol: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceStatus {
    pub load_balancer: LoadBalancerStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LoadBalancerStatus {
    pub ingress: Vec<LoadBalancerIngress>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LoadBalancerIngress {
    pub ip: String,
    pub hostname: String,
}

// --- Endpoints --------------------------------------------------------------------

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Endpoints {
    pub metadata: ObjectMeta,
    pub subsets: Vec<EndpointSubset>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EndpointSubset {
    pub addresses: Vec<EndpointAddress>,
    pub not_ready_addresses: Vec<EndpointAddress>,
    pub ports: Vec<EndpointPort>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EndpointAddress {
    pub ip: String,
    pub hostname: String,
    pub node_name: Option<String>,
    pub target_ref: Option<ObjectReference>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EndpointPort {
    pub name: String,
    pub port: i64,
    pub protocol: String,
}

// --- EndpointSlice (discovery.k8s.io/v1) ------------------------------------------

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EndpointSlice {
    pub metadata: ObjectMeta,
    pub address_type: String,
    pub endpoints: Vec<SliceEndpoint>,
    pub ports: Vec<SlicePort>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SliceEndpoint {
    pub addresses: Vec<String>,
    pub conditions: SliceConditions,
    pub hostname: Option<String>,
    pub target_ref: Option<ObjectReference>,
    pub node_name: Option<String>,
    pub zone: Option<String>,
    pub deprecated_topology: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SliceConditions {
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SlicePort {
    pub name: Option<String>,
    pub port: Option<i64>,
    pub protocol: Option<String>,
    pub app_protocol: Option<String>,
}

// --- Ingress (networking.k8s.io/v1) -----------------------------------------------

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Ingress {
    pub metadata: ObjectMeta,
    pub spec: IngressSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct IngressSpec {
    pub ingress_class_name: Option<String>,
    pub rules: Vec<IngressRule>,
    pub tls: Vec<IngressTls>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct IngressRule {
    pub host: String,
    pub http: Option<IngressHttp>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct IngressHttp {
    pub paths: Vec<IngressPath>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct IngressPath {
    pub path: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct IngressTls {
    pub hosts: Vec<String>,
}

// --- Namespace --------------------------------------------------------------------

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Namespace {
    pub metadata: ObjectMeta,
}

// --- The cache --------------------------------------------------------------------

/// `(namespace, name)`; cluster-scoped objects have an empty namespace.
pub type ObjectKey = (String, String);

/// What the watchers know, by kind.
#[derive(Debug, Default)]
pub struct Cache {
    pub nodes: BTreeMap<ObjectKey, Node>,
    pub pods: BTreeMap<ObjectKey, Pod>,
    pub services: BTreeMap<ObjectKey, Service>,
    pub endpoints: BTreeMap<ObjectKey, Endpoints>,
    pub endpoint_slices: BTreeMap<ObjectKey, EndpointSlice>,
    pub ingresses: BTreeMap<ObjectKey, Ingress>,
    pub namespaces: BTreeMap<ObjectKey, Namespace>,
}

/// A kind of object the API serves and the cache holds.
pub trait KubeObject: DeserializeOwned + Send + 'static {
    /// The collection's path below the API root: `api/v1/pods`, with `{ns}` where a
    /// namespaced list goes (`api/v1/namespaces/{ns}/pods`).
    const ALL_PATH: &'static str;
    const NAMESPACED_PATH: Option<&'static str>;
    fn meta(&self) -> &ObjectMeta;
    fn slot(cache: &mut Cache) -> &mut BTreeMap<ObjectKey, Self>;

    fn key(&self) -> ObjectKey {
        (self.meta().namespace.clone(), self.meta().name.clone())
    }
}

macro_rules! kube_object {
    ($t:ty, $field:ident, $all:expr, $ns:expr) => {
        impl KubeObject for $t {
            const ALL_PATH: &'static str = $all;
            const NAMESPACED_PATH: Option<&'static str> = $ns;
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn slot(cache: &mut Cache) -> &mut BTreeMap<ObjectKey, Self> {
                &mut cache.$field
            }
        }
    };
}

kube_object!(Node, nodes, "api/v1/nodes", None);
kube_object!(Namespace, namespaces, "api/v1/namespaces", None);
kube_object!(
    Pod,
    pods,
    "api/v1/pods",
    Some("api/v1/namespaces/{ns}/pods")
);
kube_object!(
    Service,
    services,
    "api/v1/services",
    Some("api/v1/namespaces/{ns}/services")
);
kube_object!(
    Endpoints,
    endpoints,
    "api/v1/endpoints",
    Some("api/v1/namespaces/{ns}/endpoints")
);
kube_object!(
    EndpointSlice,
    endpoint_slices,
    "apis/discovery.k8s.io/v1/endpointslices",
    Some("apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices")
);
kube_object!(
    Ingress,
    ingresses,
    "apis/networking.k8s.io/v1/ingresses",
    Some("apis/networking.k8s.io/v1/namespaces/{ns}/ingresses")
);
