//! Table tests for topology parsing: the default lab, and one bad file per rule.

use super::*;

#[test]
fn default_topology_is_the_seed_cluster() {
    let t = Topology::default_lab().unwrap();
    assert_eq!(t.name, "lab");
    assert_eq!(t.nodes.len(), 3);
    assert_eq!(t.proxy_mode, ProxyMode::Iptables);
    let names: Vec<String> = t.pods.iter().map(|p| p.pod.to_string()).collect();
    for want in
        ["tidb/demo-pd-0", "tidb/demo-pd-2", "tidb/demo-tikv-1", "tidb/demo-tidb-1", "kube-system/coredns-0"]
    {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    assert!(names.iter().any(|n| n.starts_with("tidb/demo-discovery-")));
    let pd = t.services.iter().find(|s| s.service.to_string() == "tidb/demo-pd").unwrap();
    assert_eq!(t.selected_pods(pd).count(), 3);
    let peer = t.services.iter().find(|s| s.service.to_string() == "tidb/demo-pd-peer").unwrap();
    assert_eq!(peer.kind, ServiceType::Headless);
    let tidb = t.services.iter().find(|s| s.service.to_string() == "tidb/demo-tidb").unwrap();
    assert_eq!(tidb.ports[0].node_port.map(Port::get), Some(30400));
}

const MINIMAL: &str = "
nodes:
  - name: node-1
pods:
  - { namespace: kube-system, name: coredns-0, node: node-1, app: dns }
";

fn err_of(text: &str) -> TopologyError {
    Topology::parse(text).expect_err("should be rejected")
}

#[test]
fn minimal_file_gets_defaults() {
    let t = Topology::parse(MINIMAL).unwrap();
    assert_eq!(t.pod_cidr.to_string(), "10.244.0.0/16");
    assert_eq!(t.cluster_domain, "cluster.local");
    assert_eq!(t.overlay, Overlay::Routed);
}

const DNS_POD: &str = "  - { namespace: kube-system, name: coredns-0, node: node-1, app: dns }\n";

#[test]
fn each_mistake_names_its_line_and_field() {
    // (file, expected line, expected field, a fragment of the message)
    let cases: Vec<(String, u64, &str, &str)> = vec![
        (
            format!(
                "nodes:\n  - name: node-1\npods:\n{DNS_POD}  - {{ namespace: tidb, name: pd, node: node-9 }}\n"
            ),
            5,
            "pods[].node",
            "node-9",
        ),
        ("nodes:\n  - name: Node_1\n".into(), 2, "nodes[].name", "Node_1"),
        (format!("nodes:\n  - name: node-1\n  - name: node-1\npods:\n{DNS_POD}"), 3, "nodes[].name", "twice"),
        (
            format!("pod_cidr: 10.96.0.0/12\nnodes:\n  - name: node-1\npods:\n{DNS_POD}"),
            1,
            "pod_cidr",
            "overlaps",
        ),
        (
            format!(
                "nodes:\n  - name: node-1\npods:\n{DNS_POD}services:\n  - {{ namespace: tidb, name: x, cluster_ip: 10.97.0.1, ports: [{{port: 1}}] }}\n"
            ),
            6,
            "services[].cluster_ip",
            "outside service_cidr",
        ),
        (
            format!(
                "nodes:\n  - name: node-1\npods:\n{DNS_POD}services:\n  - {{ namespace: tidb, name: x, type: NodePort, ports: [{{port: 1, node_port: 80}}] }}\n"
            ),
            6,
            "services[].ports[].node_port",
            "30000-32767",
        ),
        (
            format!(
                "nodes:\n  - name: node-1\npods:\n{DNS_POD}  - {{ namespace: tidb, name: pd, node: node-1, ports: [0] }}\n"
            ),
            5,
            "pods[].ports",
            "1 to 65535",
        ),
        ("name: Lab!\nnodes:\n  - name: node-1\n".into(), 1, "name", "lowercase"),
    ];
    for (text, line, field, fragment) in &cases {
        match err_of(text) {
            TopologyError::Field { line: l, field: f, message } => {
                assert_eq!((l, f.as_str()), (*line, *field), "{text}\n→ {message}");
                assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
            }
            other => panic!("{text}: expected a field error, got {other}"),
        }
    }
}

#[test]
fn syntax_and_unknown_fields_are_reported_with_position() {
    let e = err_of("nodes:\n  - name: node-1\n    colour: red\n").to_string();
    assert!(e.contains("colour"), "{e}");
    assert!(e.contains('3'), "names the line: {e}");
    let e = err_of("nodes: [\n").to_string();
    assert!(e.starts_with("topology file"), "{e}");
    let e = err_of("pod_cidr: 10.244.0.0/33\nnodes: [{name: a}]\n").to_string();
    assert!(e.contains("line 1") || e.contains("1:"), "{e}");
}

#[test]
fn a_lab_needs_dns() {
    let e = err_of("nodes:\n  - name: node-1\n").to_string();
    assert!(e.contains("app: dns"), "{e}");
}

proptest::proptest! {
    #[test]
    fn parse_never_panics(s in "\\PC{0,400}") {
        let _ = Topology::parse(&s);
    }

    #[test]
    fn parse_never_panics_on_mutated_default(cut in 0usize..4000, junk in "[ -~\\n]{0,8}") {
        let mut text = DEFAULT_TOPOLOGY.to_owned();
        let mut at = cut.min(text.len());
        while !text.is_char_boundary(at) { at -= 1; }
        text.insert_str(at, &junk);
        let _ = Topology::parse(&text);
    }
}
