//! Conversion tables: real-shaped API JSON (as `kubectl get -o json` shows it) in, inventory
//! out; and the round trip through the fake API server's seed objects.

#![allow(clippy::unwrap_used)]

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use netdiag_model::inventory::{Inventory, ProxyMode, ServiceKind, TrafficPolicy};
use serde_json::{Value, json};

use super::convert::{ClusterSettings, Converted, Objects, inventory};

fn settings() -> ClusterSettings {
    ClusterSettings {
        name: "prod".into(),
        domain: "cluster.local".into(),
        service_cidrs: vec!["10.96.0.0/12".parse().unwrap()],
        node_cidrs: Vec::new(),
        dns_service: "kube-system/kube-dns".parse().unwrap(),
        proxy_mode: ProxyMode::Nftables,
    }
}

fn node(name: &str, ip: &str, cidr: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "uid": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "resourceVersion": "101",
                     "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr], "providerID": "kind://docker/kind/kind-worker"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            "nodeInfo": {"kubeletVersion": "v1.33.1", "architecture": "amd64", "bootID": "x", "containerRuntimeVersion": "containerd://2.0.0",
                         "kernelVersion": "6.8.0", "kubeProxyVersion": "", "machineID": "m", "operatingSystem": "linux",
                         "osImage": "Debian GNU/Linux 12", "systemUUID": "s"}
        }
    })
}

fn pod(ns: &str, name: &str, node: &str, phase: &str, ips: &[&str]) -> Value {
    let pod_ips: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": "6a1e0b0c-0000-4000-8000-000000000001", "resourceVersion": "202",
                     "labels": {"app.kubernetes.io/component": "pd"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "demo-pd", "uid": "u", "controller": true}]},
        "spec": {
            "nodeName": node,
            "containers": [
                {"name": "pd", "image": "pingcap/pd:v8.5.0",
                 "ports": [{"name": "client", "containerPort": 2379, "protocol": "TCP"},
                           {"name": "peer", "containerPort": 2380}]},
                {"name": "metrics", "image": "exporter", "ports": [{"containerPort": 9100, "protocol": "SCTP"},
                                                                  {"name": "stats", "containerPort": 8125, "protocol": "UDP"}]}
            ],
            "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "serviceAccountName": "default"
        },
        "status": {"phase": phase, "hostIP": "172.18.0.2", "qosClass": "BestEffort",
                   "conditions": [{"type": "Ready", "status": "True"}]}
    });
    if let Some(first) = ips.first() {
        p["status"]["podIP"] = json!(first);
        p["status"]["podIPs"] = json!(pod_ips);
    }
    p
}

fn service(ns: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "uid": "u", "resourceVersion": "303"},
        "spec": spec,
        "status": {"loadBalancer": {}}
    })
}

fn slice(ns: &str, name: &str, svc: &str, ports: Value, endpoints: Value) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns, "generateName": format!("{svc}-"), "resourceVersion": "404",
                     "labels": {"kubernetes.io/service-name": svc, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": svc, "uid": "u", "controller": true, "blockOwnerDeletion": true}]},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports
    })
}

fn from<T: serde::de::DeserializeOwned>(v: &[Value]) -> Vec<T> {
    v.iter().map(|o| serde_json::from_value(o.clone()).unwrap()).collect()
}

fn convert(nodes: &[Value], pods: &[Value], services: &[Value], slices: &[Value]) -> Converted {
    let (nodes, pods, services, slices): (Vec<Node>, Vec<Pod>, Vec<Service>, Vec<EndpointSlice>) =
        (from(nodes), from(pods), from(services), from(slices));
    let out = inventory(
        &settings(),
        Objects { nodes: &nodes, pods: &pods, services: &services, endpoint_slices: &slices },
    );
    out.inventory.validate().unwrap();
    out
}

fn two_nodes() -> Vec<Value> {
    vec![node("node-1", "172.18.0.2", "10.244.1.0/24"), node("node-2", "172.18.0.3", "10.244.2.0/24")]
}

#[test]
fn nodes_and_cluster_facts() {
    let svc = service(
        "kube-system",
        "kube-dns",
        json!({"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
               "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53}]}),
    );
    let out = convert(&two_nodes(), &[], &[svc], &[]);
    let inv = out.inventory;
    assert_eq!(inv.nodes.len(), 2);
    assert_eq!(inv.nodes[0].ips, vec!["172.18.0.2".parse::<std::net::IpAddr>().unwrap()]);
    assert_eq!(inv.nodes[1].pod_cidrs, vec!["10.244.2.0/24".parse().unwrap()]);
    let c = &inv.cluster;
    assert_eq!(
        (c.name.as_str(), c.domain.as_str(), c.proxy_mode),
        ("prod", "cluster.local", ProxyMode::Nftables)
    );
    assert_eq!(c.pod_cidrs.len(), 2);
    assert_eq!(c.node_cidrs, vec!["172.18.0.2/32".parse().unwrap(), "172.18.0.3/32".parse().unwrap()]);
    assert_eq!(c.dns_ips, vec!["10.96.0.10".parse::<std::net::IpAddr>().unwrap()]);
    assert_eq!(c.service_cidrs, vec!["10.96.0.0/12".parse().unwrap()]);
}

#[test]
fn pods_table() {
    let mut host = pod("kube-system", "kube-proxy-x", "node-1", "Running", &["172.18.0.2"]);
    host["spec"]["hostNetwork"] = json!(true);
    let mut only_pod_ip = pod("tidb", "legacy", "node-2", "Running", &[]);
    only_pod_ip["status"]["podIP"] = json!("10.244.2.9");
    let cases: Vec<(Value, Option<&str>)> = vec![
        (pod("tidb", "demo-pd-0", "node-1", "Running", &["10.244.1.5", "fd00:10:244:1::5"]), None),
        (pod("tidb", "pending", "node-1", "Pending", &[]), Some("not Running")),
        (pod("tidb", "done", "node-1", "Succeeded", &["10.244.1.6"]), Some("not Running")),
        (pod("tidb", "no-ip", "node-1", "Running", &[]), Some("no IP")),
        (pod("tidb", "lost", "node-9", "Running", &["10.244.9.5"]), Some("unknown node")),
        (host, Some("hostNetwork")),
        (only_pod_ip, None),
    ];
    for (p, left_out) in cases {
        let name = p["metadata"]["name"].as_str().unwrap().to_string();
        let out = convert(&two_nodes(), &[p], &[], &[]);
        assert_eq!(out.inventory.pods.is_empty(), left_out.is_some(), "{name}: {left_out:?}");
        if left_out == Some("unknown node") {
            assert_eq!(out.skipped.len(), 1, "{name}: {:?}", out.skipped);
            assert!(out.skipped[0].reason.contains("node-9"), "{:?}", out.skipped);
        } else {
            assert!(out.skipped.is_empty(), "{name}: {:?}", out.skipped);
        }
    }
    let out =
        convert(&two_nodes(), &[pod("tidb", "demo-pd-0", "node-1", "Running", &["10.244.1.5"])], &[], &[]);
    let p = &out.inventory.pods[0];
    assert_eq!(p.node.as_str(), "node-1");
    assert_eq!(p.labels.get("app.kubernetes.io/component").map(String::as_str), Some("pd"));
    let ports: Vec<String> = p
        .ports
        .iter()
        .map(|c| format!("{}/{}/{}", c.name.as_deref().unwrap_or("-"), c.port, c.protocol))
        .collect();
    // SCTP is left out; a missing protocol is TCP.
    assert_eq!(ports, ["client/2379/tcp", "peer/2380/tcp", "stats/8125/udp"]);
}

fn pd_pods() -> Vec<Value> {
    vec![
        pod("tidb", "demo-pd-0", "node-1", "Running", &["10.244.1.5"]),
        pod("tidb", "demo-pd-1", "node-2", "Running", &["10.244.2.5"]),
    ]
}

fn pd_endpoints(second_ready: Option<bool>) -> Value {
    let mut second = json!({"addresses": ["10.244.2.5"], "nodeName": "node-2", "hostname": "demo-pd-1",
                             "targetRef": {"kind": "Pod", "namespace": "tidb", "name": "demo-pd-1", "uid": "u"}});
    if let Some(r) = second_ready {
        second["conditions"] = json!({"ready": r, "serving": r, "terminating": false});
    }
    json!([
        {"addresses": ["10.244.1.5"], "conditions": {"ready": true, "serving": true, "terminating": false},
         "nodeName": "node-1", "hostname": "demo-pd-0", "zone": "z1",
         "targetRef": {"kind": "Pod", "namespace": "tidb", "name": "demo-pd-0", "uid": "u"}},
        second,
        // A pod the inventory does not hold (Pending): the endpoint stays, without its pod.
        {"addresses": ["10.244.1.77"], "conditions": {"ready": false},
         "targetRef": {"kind": "Pod", "namespace": "tidb", "name": "demo-pd-9"}}
    ])
}

#[test]
fn services_and_endpoints_table() {
    let ports = json!([{"name": "client", "port": 2379, "protocol": "TCP"}]);
    let services = vec![
        service(
            "tidb",
            "demo-pd",
            json!({"type": "ClusterIP", "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"], "ipFamilies": ["IPv4"],
                   "ports": [{"name": "client", "port": 2379, "protocol": "TCP", "targetPort": "client"}],
                   "selector": {"app.kubernetes.io/component": "pd"}, "sessionAffinity": "None"}),
        ),
        service(
            "tidb",
            "demo-pd-peer",
            json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"],
                   "ports": [{"name": "peer", "port": 2380, "targetPort": 2380}], "publishNotReadyAddresses": true}),
        ),
        service(
            "tidb",
            "demo-tidb",
            json!({"type": "NodePort", "clusterIP": "10.96.0.40", "clusterIPs": ["10.96.0.40"], "externalTrafficPolicy": "Local",
                   "ports": [{"name": "mysql", "port": 4000, "protocol": "TCP", "targetPort": 4000, "nodePort": 30400},
                             {"name": "sctp", "port": 9, "protocol": "SCTP", "targetPort": 9, "nodePort": 30009}]}),
        ),
        service(
            "tidb",
            "lb",
            json!({"type": "LoadBalancer", "clusterIP": "10.96.0.41", "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]}),
        ),
        service("tidb", "external", json!({"type": "ExternalName", "externalName": "db.example.com"})),
        service(
            "tidb",
            "unresolved",
            json!({"type": "ClusterIP", "clusterIP": "10.96.0.42",
                                                "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}),
        ),
        service("tidb", "new", json!({"type": "ClusterIP", "ports": [{"port": 80}]})),
    ];
    let slices = vec![
        slice("tidb", "demo-pd-abcde", "demo-pd", ports, pd_endpoints(None)),
        slice("tidb", "stray", "gone-service", json!([]), json!([{"addresses": ["10.244.1.99"]}])),
    ];
    let out = convert(&two_nodes(), &pd_pods(), &services, &slices);
    let inv = &out.inventory;
    let names: Vec<&str> = inv.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["demo-pd", "demo-pd-peer", "demo-tidb", "lb", "unresolved"]);
    let skipped: Vec<String> = out.skipped.iter().map(|s| format!("{} {}", s.what, s.name)).collect();
    assert_eq!(
        skipped,
        ["service tidb/new", "service port tidb/demo-tidb:sctp", "service port tidb/unresolved:web"]
    );

    let pd = &inv.services[0];
    assert_eq!((pd.kind, pd.ports[0].target_port.get()), (ServiceKind::ClusterIP, 2379), "named targetPort");
    let eps: Vec<String> = pd
        .endpoints
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {} {}",
                e.ip,
                e.ready,
                e.pod.as_ref().map(|p| p.to_string()).unwrap_or("-".into()),
                e.node.as_ref().map(|n| n.to_string()).unwrap_or("-".into()),
                e.hostname.as_deref().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        eps,
        [
            "10.244.1.5 true tidb/demo-pd-0 node-1 demo-pd-0",
            "10.244.1.77 false - - -",
            "10.244.2.5 true tidb/demo-pd-1 node-2 demo-pd-1",
        ],
        "ready unset means ready"
    );
    assert!(inv.services[1].is_headless());
    let tidb = &inv.services[2];
    assert_eq!(tidb.kind, ServiceKind::NodePort);
    assert_eq!(tidb.external_traffic_policy, TrafficPolicy::Local);
    assert_eq!(tidb.ports.len(), 1);
    assert_eq!(tidb.ports[0].node_port.map(|p| p.get()), Some(30400));
    let lb = &inv.services[3];
    assert_eq!((lb.kind, lb.ports[0].target_port.get()), (ServiceKind::NodePort, 8080));
    assert!(inv.cluster.dns_ips.is_empty(), "no kube-dns service");
}

#[test]
fn unready_endpoint_and_named_port_from_pods() {
    // No port in the slice: the named target resolves through the backing pods' ports.
    let svc = service(
        "tidb",
        "demo-pd",
        json!({"type": "ClusterIP", "clusterIP": "10.96.0.20", "ports": [{"name": "c", "port": 12379, "targetPort": "client"}]}),
    );
    let s = slice("tidb", "demo-pd-abcde", "demo-pd", json!([]), pd_endpoints(Some(false)));
    let out = convert(&two_nodes(), &pd_pods(), &[svc], &[s]);
    let pd = &out.inventory.services[0];
    assert_eq!(pd.ports[0].target_port.get(), 2379);
    let ready: Vec<bool> = pd.endpoints.iter().map(|e| e.ready).collect();
    assert_eq!(ready, [true, false, false]);
    assert_eq!(pd.ready_endpoints().count(), 1);
}

/// A lab-shaped inventory, through the fake API server's seed objects and back.
#[test]
fn seed_objects_convert_back_to_the_inventory() {
    let text = r#"{
  "version": 1,
  "cluster": {"name": "prod", "domain": "cluster.local", "pod_cidrs": ["10.244.1.0/24", "10.244.2.0/24"],
              "service_cidrs": ["10.96.0.0/12"], "node_cidrs": ["172.29.0.11/32", "172.29.0.12/32"],
              "dns_ips": ["10.96.0.10"], "proxy_mode": "nftables"},
  "nodes": [{"name": "node-1", "ips": ["172.29.0.11"], "pod_cidrs": ["10.244.1.0/24"]},
            {"name": "node-2", "ips": ["172.29.0.12"], "pod_cidrs": ["10.244.2.0/24"]}],
  "pods": [
    {"namespace": "kube-system", "name": "coredns-0", "node": "node-1", "ips": ["10.244.1.2"], "labels": {"k8s-app": "kube-dns"},
     "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}]},
    {"namespace": "tidb", "name": "demo-pd-0", "node": "node-1", "ips": ["10.244.1.3"], "ports": [{"port": 2379}, {"port": 2380}]},
    {"namespace": "tidb", "name": "demo-pd-1", "node": "node-2", "ips": ["10.244.2.3"], "ports": [{"port": 2379}, {"port": 2380}]}
  ],
  "services": [
    {"namespace": "kube-system", "name": "kube-dns", "type": "ClusterIP", "cluster_ips": ["10.96.0.10"],
     "ports": [{"name": "dns", "port": 53, "target_port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "target_port": 53}],
     "endpoints": [{"ip": "10.244.1.2", "pod": "kube-system/coredns-0", "node": "node-1", "ready": true}]},
    {"namespace": "tidb", "name": "demo-pd-peer", "type": "ClusterIP", "cluster_ips": [],
     "ports": [{"name": "peer", "port": 2380, "target_port": 2380}],
     "endpoints": [{"ip": "10.244.1.3", "pod": "tidb/demo-pd-0", "node": "node-1", "hostname": "demo-pd-0", "ready": true},
                   {"ip": "10.244.2.3", "pod": "tidb/demo-pd-1", "node": "node-2", "hostname": "demo-pd-1", "ready": false}]},
    {"namespace": "tidb", "name": "demo-tidb", "type": "NodePort", "cluster_ips": ["10.96.0.40"],
     "ports": [{"name": "mysql", "port": 4000, "target_port": 2379, "node_port": 30400}], "external_traffic_policy": "Local",
     "endpoints": [{"ip": "10.244.2.3", "pod": "tidb/demo-pd-1", "node": "node-2", "ready": true}]}
  ]
}"#;
    let original = Inventory::from_yaml(text).unwrap();
    let o = netdiag_fakekube::seed::objects(&original);
    // Through JSON, as the API server sends them.
    let json = |v: &[serde_json::Value]| v.to_vec();
    let nodes: Vec<Value> =
        json(&o.nodes.iter().map(|x| serde_json::to_value(x).unwrap()).collect::<Vec<_>>());
    let pods: Vec<Value> = o.pods.iter().map(|x| serde_json::to_value(x).unwrap()).collect();
    let services: Vec<Value> = o.services.iter().map(|x| serde_json::to_value(x).unwrap()).collect();
    let slices: Vec<Value> = o.endpoint_slices.iter().map(|x| serde_json::to_value(x).unwrap()).collect();
    assert_eq!(pods[0]["status"]["podIPs"][0]["ip"], "10.244.1.2");
    assert_eq!(slices[1]["metadata"]["labels"]["kubernetes.io/service-name"], "demo-pd-peer");
    assert_eq!(services[1]["spec"]["clusterIP"], "None");
    let out = convert(&nodes, &pods, &services, &slices);
    assert!(out.skipped.is_empty(), "{:?}", out.skipped);
    assert_eq!(out.inventory, original);
}

#[test]
fn flags_have_defaults_and_parse() {
    use clap::Parser;

    use super::KubeArgs;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        kube: KubeArgs,
    }
    let d = Cli::try_parse_from(["x"]).unwrap().kube.settings();
    assert_eq!(d.service_cidrs, vec!["10.96.0.0/12".parse::<ipnet::IpNet>().unwrap()]);
    assert_eq!(d.dns_service.to_string(), "kube-system/kube-dns");
    assert_eq!((d.domain.as_str(), d.proxy_mode), ("cluster.local", ProxyMode::Iptables));
    assert!(d.node_cidrs.is_empty());
    let s = Cli::try_parse_from([
        "x",
        "--service-cidr",
        "10.0.0.0/16",
        "--service-cidr",
        "fd00::/108",
        "--dns-service",
        "kube-system/coredns",
        "--proxy-mode",
        "nftables",
        "--node-cidr",
        "192.168.0.0/24",
        "--kubeconfig",
        "/etc/kube.conf",
    ])
    .unwrap()
    .kube;
    assert_eq!(s.kubeconfig.as_deref(), Some(std::path::Path::new("/etc/kube.conf")));
    let s = s.settings();
    assert_eq!(s.service_cidrs.len(), 2);
    assert_eq!(
        (s.dns_service.to_string().as_str(), s.proxy_mode),
        ("kube-system/coredns", ProxyMode::Nftables)
    );
    for bad in [["--proxy-mode", "ipvs"], ["--dns-service", "kube-dns"], ["--service-cidr", "10.0.0.0/33"]] {
        assert!(Cli::try_parse_from(["x", bad[0], bad[1]]).is_err(), "{bad:?}");
    }
}

#[test]
fn namespaces_and_network_policies_are_read_in_the_apis_own_shape_sorted() {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    let policy = |ns: &str, name: &str| -> NetworkPolicy {
        serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": ns, "name": name, "uid": "u-1", "resourceVersion": "7",
                         "creationTimestamp": "2026-12-01T10:00:00Z", "generation": 1},
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/component": "pd"}},
                "policyTypes": ["Ingress"],
                "ingress": [{
                    "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "tidb"}},
                              "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["tidb"]}]}},
                             {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                    "ports": [{"protocol": "TCP", "port": 2379}, {"port": "metrics", "protocol": "TCP"},
                              {"port": 30000, "endPort": 30100}]
                }]
            }
        }))
        .unwrap()
    };
    let namespace: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "tidb", "uid": "u-2", "labels": {"kubernetes.io/metadata.name": "tidb", "team": "db"}},
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}
    }))
    .unwrap();
    let mut skipped = Vec::new();
    let (namespaces, policies) = super::convert::policies(
        &[namespace],
        &[policy("tidb", "z-last"), policy("monitoring", "a-first"), policy("tidb", "pd-client")],
        &mut skipped,
    );
    assert!(skipped.is_empty(), "{skipped:?}");
    let names: Vec<String> = policies
        .iter()
        .map(|p| {
            format!("{}/{}", p.metadata.namespace.as_deref().unwrap(), p.metadata.name.as_deref().unwrap())
        })
        .collect();
    assert_eq!(names, ["monitoring/a-first", "tidb/pd-client", "tidb/z-last"]);
    let checked = policies[1].check().unwrap();
    assert_eq!(checked.id().to_string(), "tidb/pd-client");
    assert!(checked.ingress().is_some_and(|rules| rules.len() == 1 && rules[0].peers().len() == 2));
    assert!(checked.egress().is_none(), "Ingress only, as written");
    assert_eq!(namespaces.len(), 1);
    let labels = namespaces[0].check().unwrap();
    assert_eq!(labels.labels().get("team").map(String::as_str), Some("db"));
}
