//! Table tests for topology parsing: the default lab, and one bad file per rule.

use super::*;

#[test]
fn the_default_topology_is_the_open_one_plus_policies_and_monitoring() {
    let (open, default) = (Topology::open_lab().unwrap(), Topology::default_lab().unwrap());
    assert!(open.network_policies.is_empty());
    assert!(!default.network_policies.is_empty(), "the default lab enforces a policy set");
    for pod in &open.pods {
        assert!(default.pods.iter().any(|p| p.pod == pod.pod), "{} missing from the default", pod.pod);
    }
    assert!(default.pods.iter().any(|p| p.pod.namespace.as_str() == "monitoring"));
    assert_eq!(default.services.len(), open.services.len());
}

#[test]
fn open_topology_is_the_seed_cluster() {
    let t = Topology::open_lab().unwrap();
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
        let mut text = OPEN_TOPOLOGY.to_owned();
        let mut at = cut.min(text.len());
        while !text.is_char_boundary(at) { at -= 1; }
        text.insert_str(at, &junk);
        let _ = Topology::parse(&text);
    }

    #[test]
    fn parse_never_panics_on_mutated_policies(cut in 0usize..8000, junk in "[ -~\\n]{0,8}") {
        let mut text = DEFAULT_TOPOLOGY.to_owned();
        let mut at = cut.min(text.len());
        while !text.is_char_boundary(at) { at -= 1; }
        text.insert_str(at, &junk);
        if let Ok(t) = Topology::parse(&text) {
            // Whatever loads, plans and enforces without a panic.
            if let Ok(plan) = crate::plan::LabPlan::from_topology(&t) {
                let e = crate::netpol::Enforcement::new(&plan);
                for pod in &plan.pods {
                    let _ = e.pod_chains(&plan, &[], pod, crate::rules::Family::V4);
                }
            }
        }
    }
}

#[test]
fn policies_topology_has_namespaces_policies_and_named_ports() {
    let t = Topology::parse(DEFAULT_TOPOLOGY).unwrap();
    let names: Vec<String> =
        t.network_policies.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect();
    assert_eq!(
        names,
        [
            "default-deny-ingress",
            "allow-same-namespace-and-monitoring",
            "pd-client-and-peers",
            "tikv-egress",
            "prometheus-egress"
        ]
    );
    let ns: Vec<(String, BTreeMap<String, String>)> = t
        .namespaces
        .iter()
        .map(|n| (n.metadata.name.clone().unwrap(), n.metadata.labels.clone().unwrap()))
        .collect();
    assert_eq!(ns.len(), 3, "{ns:?}");
    assert_eq!(ns[2].0, "monitoring");
    assert_eq!(ns[2].1.get("team").map(String::as_str), Some("monitoring"));
    assert_eq!(ns[2].1.get(METADATA_NAME_LABEL).map(String::as_str), Some("monitoring"));
    let pd = t.pods.iter().find(|p| p.pod.to_string() == "tidb/demo-pd-0").unwrap();
    assert_eq!(pd.ports.iter().map(|p| p.get()).collect::<Vec<_>>(), [2379, 2380]);
    assert_eq!(pd.port_names.get(&Port::new(2379).unwrap()).map(String::as_str), Some("client"));
}

#[test]
fn a_policy_free_topology_lists_no_namespaces() {
    let t = Topology::open_lab().unwrap();
    assert!(t.namespaces.is_empty() && t.network_policies.is_empty());
}

#[test]
fn namespaces_named_by_pods_get_the_default_label_only() {
    let t =
        Topology::parse(&format!("{MINIMAL}namespaces: [{{ name: tidb, labels: {{ a: b }} }}]\n")).unwrap();
    let ns: Vec<String> = t.namespaces.iter().map(|n| format!("{:?}", n.metadata.labels)).collect();
    assert_eq!(
        ns,
        [
            r#"Some({"a": "b", "kubernetes.io/metadata.name": "tidb"})"#,
            r#"Some({"kubernetes.io/metadata.name": "kube-system"})"#
        ]
    );
}

#[test]
fn bad_policies_and_namespaces_name_their_line_and_field() {
    let policy = |spec: &str| {
        format!(
            "{MINIMAL}network_policies:\n  - metadata: {{ namespace: tidb, name: p }}\n    spec: {spec}\n"
        )
    };
    let cases: Vec<(String, &str, u64, &str)> = vec![
        (
            policy("{ policyTypes: [Sideways] }"),
            "network_policies[0].spec.policyTypes[0]",
            7,
            "unsupported policy type \"Sideways\"",
        ),
        (
            policy("{ ingress: [{ from: [{ ipBlock: { cidr: 10.0.0.0/8, except: [11.0.0.0/24] } }] }] }"),
            "network_policies[0].spec.ingress[0].from[0].ipBlock.except[0]",
            7,
            "must be a strict subset",
        ),
        (
            policy("{ ingress: [{ ports: [{ port: 80, endPort: 79 }] }] }"),
            "network_policies[0].spec.ingress[0].ports[0].endPort",
            7,
            "greater than or equal to port 80",
        ),
        (
            policy("{ podselector: { matchLabels: { a: b } } }"),
            "network_policies[0].spec.podselector",
            7,
            "unknown field",
        ),
        (
            policy("{ ingress: [{ from: [{ podSelector: { matchLabel: { a: b } } }] }] }"),
            "network_policies[0].spec.ingress[0].from[0].podSelector.matchLabel",
            7,
            "unknown field",
        ),
        (
            format!("{MINIMAL}network_policies:\n  - metadata: {{ name: p }}\n"),
            "network_policies[0].metadata.namespace",
            7,
            "is required",
        ),
        (
            format!("{MINIMAL}network_policies:\n  - kind: Pod\n    metadata: {{ namespace: a, name: p }}\n"),
            "network_policies[0].kind",
            7,
            "is not NetworkPolicy",
        ),
        (
            format!(
                "{MINIMAL}network_policies:\n  - metadata: {{ namespace: a, name: p }}\n  - metadata: {{ namespace: a, name: p }}\n"
            ),
            "network_policies[1].metadata.name",
            8,
            "listed twice",
        ),
        (format!("{MINIMAL}namespaces: [{{ name: Bad }}]\n"), "namespaces[].name", 6, "not a valid name"),
        (format!("{MINIMAL}namespaces:\n  - {{ name: a }}\n  - {{ name: a }}\n"), "namespaces[].name", 8, "twice"),
        (
            format!("{MINIMAL}namespaces: [{{ name: a, labels: {{ kubernetes.io/metadata.name: b }} }}]\n"),
            "namespaces[].labels",
            6,
            "always the namespace's name",
        ),
        (
            "nodes: [{ name: n }]\npods:\n  - { namespace: a, name: dns, node: n, app: dns }\n  - { namespace: a, name: p, node: n, ports: [{ name: Client, port: 80 }] }\n".to_owned(),
            "pods[].ports[].name",
            4,
            "not a container port name",
        ),
        (
            "nodes: [{ name: n }]\npods:\n  - { namespace: a, name: dns, node: n, app: dns }\n  - { namespace: a, name: p, node: n, ports: [{ name: web, port: 80 }, { name: web, port: 81 }] }\n".to_owned(),
            "pods[].ports[].name",
            4,
            "used twice",
        ),
    ];
    for (text, want_field, want_line, want_message) in cases {
        match Topology::parse(&text) {
            Err(TopologyError::Field { line, field, message }) => {
                assert_eq!(field, want_field, "{text}");
                assert_eq!(line, want_line, "{text}: {message}");
                assert!(message.contains(want_message), "{text}: {message}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
}
