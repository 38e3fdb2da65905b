//! Kubernetes objects to the collector's inventory: Nodes, Pods, Services and EndpointSlices
//! deserialized from API-server JSON as kube-rs does (k8s-openapi's types), then converted.
//! The input is one JSON object `{"nodes": [...], "pods": [...], "services": [...],
//! "endpointSlices": [...]}`. Properties: no panic, and the inventory always validates (what
//! would not is skipped and named, never passed on).

#![no_main]

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use libfuzzer_sys::fuzz_target;
use netdiag_collector::kube_inventory::convert::{ClusterSettings, Objects, inventory};
use netdiag_model::inventory::ProxyMode;

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Input {
    #[serde(default)]
    nodes: Vec<Node>,
    #[serde(default)]
    pods: Vec<Pod>,
    #[serde(default)]
    services: Vec<Service>,
    #[serde(default)]
    endpoint_slices: Vec<EndpointSlice>,
}

/// The collector's defaults (`--cluster-domain`, `--service-cidr`, `--dns-service`); the node
/// CIDRs empty so they come from the nodes' own addresses.
fn settings() -> Option<ClusterSettings> {
    Some(ClusterSettings {
        name: "fuzz".into(),
        domain: "cluster.local".into(),
        service_cidrs: vec!["10.96.0.0/12".parse().ok()?, "fd00:10:96::/108".parse().ok()?],
        node_cidrs: Vec::new(),
        dns_service: "kube-system/kube-dns".parse().ok()?,
        proxy_mode: ProxyMode::Iptables,
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Input>(data) else { return };
    let Some(settings) = settings() else { return };
    let objects = Objects {
        nodes: &input.nodes,
        pods: &input.pods,
        services: &input.services,
        endpoint_slices: &input.endpoint_slices,
    };
    let converted = inventory(&settings, objects);
    if let Err(e) = converted.inventory.validate() {
        panic!("the converted inventory does not validate: {e}");
    }
    for s in &converted.skipped {
        assert!(
            s.reason.len() < 1024,
            "{} byte skip reason: {}",
            s.reason.len(),
            netdiag_fuzz::head(&s.reason)
        );
    }
});
