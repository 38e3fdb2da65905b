//! NetworkPolicy parsing, defaulting and validation: an object as the API server returns it, a
//! hand-written YAML one, the `policyTypes` defaulting table, and one case per validation error.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::names::Port;

fn parse(v: Value) -> NetworkPolicy {
    serde_json::from_value(v).unwrap()
}

fn policy(spec: Value) -> Result<Policy, PolicyError> {
    parse(json!({"metadata": {"name": "p", "namespace": "x"}, "spec": spec})).check()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// What `kubectl get networkpolicy -o json` prints, server-set fields and all.
const API_OBJECT: &str = r#"{
  "apiVersion": "networking.k8s.io/v1",
  "kind": "NetworkPolicy",
  "metadata": {
    "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
    "creationTimestamp": "2025-01-07T10:00:00Z",
    "generation": 1,
    "managedFields": [{"apiVersion": "networking.k8s.io/v1", "fieldsType": "FieldsV1", "manager": "kubectl"}],
    "name": "allow-pd",
    "namespace": "tidb",
    "resourceVersion": "4242",
    "uid": "6a1c2f0e-0000-4000-8000-000000000000"
  },
  "spec": {
    "podSelector": {"matchLabels": {"app.kubernetes.io/component": "pd"}},
    "policyTypes": ["Ingress", "Egress"],
    "ingress": [{
      "from": [
        {"namespaceSelector": {"matchLabels": {"team": "db"}},
         "podSelector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]}},
        {"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}}
      ],
      "ports": [{"protocol": "TCP", "port": 2379}, {"port": "peer"}, {"protocol": "UDP", "port": 30000, "endPort": 30100}]
    }],
    "egress": [{"to": null, "ports": [{"protocol": "SCTP"}]}]
  },
  "status": {}
}"#;

#[test]
fn reads_a_policy_as_the_api_server_returns_it() {
    let wire: NetworkPolicy = serde_json::from_str(API_OBJECT).unwrap();
    let p = wire.check().unwrap();
    assert_eq!(p.id().to_string(), "tidb/allow-pd");
    assert!(p.pod_selector().matches(&labels(&[("app.kubernetes.io/component", "pd")])));
    assert!(!p.pod_selector().matches(&labels(&[("app.kubernetes.io/component", "tikv")])));

    let ingress = p.ingress().unwrap();
    assert_eq!(ingress.len(), 1);
    let Peer::Pods { pods, namespaces: Some(namespaces) } = &ingress[0].peers()[0] else {
        panic!("first peer is pods in selected namespaces: {:?}", ingress[0].peers()[0]);
    };
    assert!(pods.matches(&labels(&[])), "NotIn matches a pod without the key");
    assert!(!pods.matches(&labels(&[("tier", "web")])));
    assert!(namespaces.matches(&labels(&[("team", "db")])));
    let Peer::IpBlock(block) = &ingress[0].peers()[1] else { panic!("second peer is an ipBlock") };
    assert!(block.contains("172.17.2.3".parse().unwrap()));
    assert!(!block.contains("172.17.1.3".parse().unwrap()));
    assert_eq!(block.to_string(), "172.17.0.0/16 except 172.17.1.0/24");

    let port = |n| Port::new(n).unwrap();
    assert_eq!(
        ingress[0].ports(),
        [
            PortRule { protocol: PolicyProtocol::Tcp, port: PolicyPort::Number(port(2379)) },
            PortRule { protocol: PolicyProtocol::Tcp, port: PolicyPort::Named("peer".into()) },
            PortRule {
                protocol: PolicyProtocol::Udp,
                port: PolicyPort::Range { start: port(30000), end: port(30100) }
            },
        ]
    );
    let egress = p.egress().unwrap();
    assert!(egress[0].peers().is_empty(), "`to: null` matches every destination");
    assert_eq!(egress[0].ports(), [PortRule { protocol: PolicyProtocol::Sctp, port: PolicyPort::Any }]);
}

#[test]
fn reads_a_hand_written_yaml_policy_with_omitted_fields() {
    let yaml = "
metadata: {name: deny-all, namespace: x}
spec:
  podSelector: {}
  ingress:
    - ports: [{port: 80}]
";
    let wire: NetworkPolicy = serde_saphyr::from_str(yaml).unwrap();
    let p = wire.check().unwrap();
    assert!(p.pod_selector().is_everything());
    assert!(p.egress().is_none());
    let rule = &p.ingress().unwrap()[0];
    assert!(rule.peers().is_empty());
    assert_eq!(rule.ports()[0].protocol, PolicyProtocol::Tcp, "protocol defaults to TCP");

    // The smallest policy there is: no spec at all is a default-deny for ingress.
    let bare: NetworkPolicy = serde_saphyr::from_str("metadata: {name: d, namespace: x}").unwrap();
    let p = bare.check().unwrap();
    assert_eq!(p.ingress(), Some(&[][..]));
    assert!(p.egress().is_none());
}

#[test]
fn policy_types_are_defaulted_as_the_api_server_does() {
    // (what, spec, isolates ingress, isolates egress)
    let cases = [
        ("nothing", json!({}), true, false),
        ("ingress rules only", json!({"ingress": [{}]}), true, false),
        ("an empty egress list", json!({"egress": []}), true, false),
        ("an egress rule", json!({"egress": [{}]}), true, true),
        ("empty policyTypes is defaulted too", json!({"policyTypes": [], "egress": [{}]}), true, true),
        ("Egress only", json!({"policyTypes": ["Egress"], "ingress": [{}]}), false, true),
        (
            "Ingress only ignores egress rules",
            json!({"policyTypes": ["Ingress"], "egress": [{}]}),
            true,
            false,
        ),
        ("both, no rules", json!({"policyTypes": ["Ingress", "Egress"]}), true, true),
    ];
    for (what, spec, ingress, egress) in cases {
        let p = policy(spec).unwrap();
        assert_eq!(p.ingress().is_some(), ingress, "{what}: ingress");
        assert_eq!(p.egress().is_some(), egress, "{what}: egress");
    }
    let p = policy(json!({"policyTypes": ["Ingress", "Egress"], "egress": [{"to": [{"podSelector": {}}]}]}))
        .unwrap();
    assert_eq!(p.egress().unwrap().len(), 1);
    assert_eq!(p.ingress().unwrap().len(), 0);
}

#[test]
fn each_invalid_spec_is_rejected_naming_the_field() {
    use PolicyProblem as P;
    let peer = |p: Value| json!({"ingress": [{"from": [p]}]});
    let port = |p: Value| json!({"egress": [{"ports": [{"port": 1}, p]}]});
    let cases: Vec<(&str, Value, &str, P)> = vec![
        (
            "unknown policy type",
            json!({"policyTypes": ["Ingress", "ingress"]}),
            "spec.policyTypes[1]",
            P::UnknownPolicyType("ingress".into()),
        ),
        (
            "three policy types",
            json!({"policyTypes": ["Ingress", "Egress", "Ingress"]}),
            "spec.policyTypes",
            P::TooManyPolicyTypes(3),
        ),
        ("peer with no field", peer(json!({})), "spec.ingress[0].from[0]", P::EmptyPeer),
        (
            "ipBlock and podSelector",
            peer(json!({"podSelector": {}, "ipBlock": {"cidr": "10.0.0.0/8"}})),
            "spec.ingress[0].from[0]",
            P::IpBlockWithSelector,
        ),
        (
            "ipBlock and namespaceSelector",
            peer(json!({"namespaceSelector": {}, "ipBlock": {"cidr": "10.0.0.0/8"}})),
            "spec.ingress[0].from[0]",
            P::IpBlockWithSelector,
        ),
        (
            "ipBlock without cidr",
            peer(json!({"ipBlock": {}})),
            "spec.ingress[0].from[0].ipBlock.cidr",
            P::Missing,
        ),
        (
            "cidr without prefix",
            peer(json!({"ipBlock": {"cidr": "10.0.0.1"}})),
            "spec.ingress[0].from[0].ipBlock.cidr",
            P::BadCidr("10.0.0.1".into()),
        ),
        (
            "except equal to cidr",
            peer(json!({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}})),
            "spec.ingress[0].from[0].ipBlock.except[0]",
            P::ExceptNotStrictSubset { except: "10.0.0.0/8".into(), cidr: "10.0.0.0/8".into() },
        ),
        (
            "except outside cidr",
            peer(json!({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "11.0.0.0/16"]}})),
            "spec.ingress[0].from[0].ipBlock.except[1]",
            P::ExceptNotStrictSubset { except: "11.0.0.0/16".into(), cidr: "10.0.0.0/8".into() },
        ),
        (
            "except of another family",
            peer(json!({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["fd00::/64"]}})),
            "spec.ingress[0].from[0].ipBlock.except[0]",
            P::ExceptNotStrictSubset { except: "fd00::/64".into(), cidr: "10.0.0.0/8".into() },
        ),
        (
            "bad except",
            peer(json!({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["ten"]}})),
            "spec.ingress[0].from[0].ipBlock.except[0]",
            P::BadCidr("ten".into()),
        ),
        (
            "endPort with a named port",
            port(json!({"port": "http", "endPort": 90})),
            "spec.egress[0].ports[1].endPort",
            P::EndPortWithNamedPort,
        ),
        (
            "endPort without a port",
            port(json!({"endPort": 90})),
            "spec.egress[0].ports[1].endPort",
            P::EndPortWithoutPort,
        ),
        (
            "endPort below port",
            port(json!({"port": 90, "endPort": 80})),
            "spec.egress[0].ports[1].endPort",
            P::EndPortBelowPort { port: 90, end_port: 80 },
        ),
        (
            "endPort too big",
            port(json!({"port": 90, "endPort": 65536})),
            "spec.egress[0].ports[1].endPort",
            P::BadPortNumber(65536),
        ),
        ("port zero", port(json!({"port": 0})), "spec.egress[0].ports[1].port", P::BadPortNumber(0)),
        ("negative port", port(json!({"port": -80})), "spec.egress[0].ports[1].port", P::BadPortNumber(-80)),
        (
            "port too big",
            port(json!({"port": 70000})),
            "spec.egress[0].ports[1].port",
            P::BadPortNumber(70000),
        ),
        (
            "numeric port as a string",
            port(json!({"port": "80"})),
            "spec.egress[0].ports[1].port",
            P::BadPortName("80".into()),
        ),
        (
            "port name too long",
            port(json!({"port": "a-very-long-port-name"})),
            "spec.egress[0].ports[1].port",
            P::BadPortName("a-very-long-port-name".into()),
        ),
        (
            "port name with --",
            port(json!({"port": "a--b"})),
            "spec.egress[0].ports[1].port",
            P::BadPortName("a--b".into()),
        ),
        (
            "uppercase port name",
            port(json!({"port": "HTTP"})),
            "spec.egress[0].ports[1].port",
            P::BadPortName("HTTP".into()),
        ),
        (
            "unknown protocol",
            port(json!({"protocol": "ICMP"})),
            "spec.egress[0].ports[1].protocol",
            P::UnknownProtocol("ICMP".into()),
        ),
        (
            "lowercase protocol",
            port(json!({"protocol": "tcp"})),
            "spec.egress[0].ports[1].protocol",
            P::UnknownProtocol("tcp".into()),
        ),
        (
            "unknown operator",
            json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["b"]}]}}),
            "spec.podSelector.matchExpressions[0].operator",
            P::UnknownOperator("Equals".into()),
        ),
        (
            "In without values",
            peer(json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}})),
            "spec.ingress[0].from[0].podSelector.matchExpressions[0].values",
            P::ValuesRequired("In"),
        ),
        (
            "NotIn with empty values",
            peer(
                json!({"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]}}),
            ),
            "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values",
            P::ValuesRequired("NotIn"),
        ),
        (
            "Exists with values",
            json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["b"]}]}}),
            "spec.podSelector.matchExpressions[0].values",
            P::ValuesForbidden("Exists"),
        ),
        (
            "DoesNotExist with values",
            json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "DoesNotExist", "values": ["b"]}]}}),
            "spec.podSelector.matchExpressions[0].values",
            P::ValuesForbidden("DoesNotExist"),
        ),
        (
            "empty expression key",
            json!({"podSelector": {"matchExpressions": [{"operator": "Exists"}]}}),
            "spec.podSelector.matchExpressions[0].key",
            P::EmptyLabelKey,
        ),
        (
            "empty matchLabels key",
            json!({"podSelector": {"matchLabels": {"": "b"}}}),
            "spec.podSelector.matchLabels",
            P::EmptyLabelKey,
        ),
        (
            "bad rule in an unlisted direction",
            json!({"policyTypes": ["Ingress"], "egress": [{"to": [{}]}]}),
            "spec.egress[0].to[0]",
            P::EmptyPeer,
        ),
    ];
    for (what, spec, field, problem) in cases {
        let err = policy(spec).expect_err(what);
        assert_eq!((err.field.as_str(), &err.problem), (field, &problem), "{what}");
        assert_eq!(err.object, "network policy x/p", "{what}");
        let text = err.to_string();
        assert!(text.starts_with("network policy x/p: ") && text.contains(field), "{what}: {text}");
    }
}

#[test]
fn metadata_must_name_the_policy_and_its_namespace() {
    let missing_ns = parse(json!({"metadata": {"name": "p"}})).check().unwrap_err();
    assert_eq!(
        (missing_ns.object.as_str(), missing_ns.field.as_str()),
        ("network policy ?/p", "metadata.namespace")
    );
    assert_eq!(missing_ns.problem, PolicyProblem::Missing);
    let missing_name = parse(json!({"metadata": {"namespace": "x"}})).check().unwrap_err();
    assert_eq!(missing_name.field, "metadata.name");
    let bad = parse(json!({"metadata": {"name": "P!", "namespace": "x"}})).check().unwrap_err();
    assert!(matches!(bad.problem, PolicyProblem::BadName(_)), "{bad}");
}

#[test]
fn host_bits_in_a_cidr_are_cleared_and_huge_values_are_quoted_short() {
    let p = policy(
        json!({"ingress": [{"from": [{"ipBlock": {"cidr": "10.244.1.3/4", "except": ["10.244.1.3/32"]}}]}]}),
    )
    .unwrap();
    let Peer::IpBlock(block) = &p.ingress().unwrap()[0].peers()[0] else { panic!() };
    assert_eq!(block.cidr().to_string(), "0.0.0.0/4");
    assert!(block.contains("10.244.1.4".parse().unwrap()));
    assert!(!block.contains("10.244.1.3".parse().unwrap()));

    let huge = "x".repeat(100_000);
    let err = policy(json!({"egress": [{"ports": [{"protocol": huge}]}]})).unwrap_err();
    assert!(err.to_string().len() < 300, "{}", err.to_string().len());
}

#[test]
fn selectors_and_with_not_in_and_does_not_exist_matching_absent_keys() {
    let s = LabelSelector {
        match_labels: Some(labels(&[("app", "db")])),
        match_expressions: Some(vec![
            LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["web".into()]),
            },
            LabelSelectorRequirement { key: "canary".into(), operator: "DoesNotExist".into(), values: None },
            LabelSelectorRequirement {
                key: "zone".into(),
                operator: "In".into(),
                values: Some(vec!["a".into(), "b".into()]),
            },
            LabelSelectorRequirement { key: "zone".into(), operator: "Exists".into(), values: None },
        ]),
    }
    .check()
    .unwrap();
    assert!(s.matches(&labels(&[("app", "db"), ("zone", "b")])));
    assert!(s.matches(&labels(&[("app", "db"), ("zone", "a"), ("tier", "api")])));
    assert!(!s.matches(&labels(&[("app", "db"), ("zone", "a"), ("tier", "web")])), "NotIn");
    assert!(!s.matches(&labels(&[("app", "db"), ("zone", "a"), ("canary", "")])), "DoesNotExist");
    assert!(!s.matches(&labels(&[("app", "db"), ("zone", "c")])), "In");
    assert!(!s.matches(&labels(&[("app", "db")])), "In needs the key");
    assert!(!s.matches(&labels(&[("zone", "a")])), "matchLabels");
    assert!(Selector::everything().matches(&labels(&[])));
}

#[test]
fn namespaces_always_carry_their_metadata_name_label() {
    let ns: NamespaceObject =
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "y", "labels": {"ns": "y"}}, "status": {"phase": "Active"}}))
            .unwrap();
    let ns = ns.check().unwrap();
    assert_eq!(ns.labels(), &labels(&[("ns", "y"), (METADATA_NAME_LABEL, "y")]));
    let lying = NamespaceLabels::new("y".parse().unwrap(), labels(&[(METADATA_NAME_LABEL, "z")]));
    assert_eq!(lying.labels()[METADATA_NAME_LABEL], "y", "the control plane's value wins");
    let err = NamespaceObject::default().check().unwrap_err();
    assert_eq!((err.field.as_str(), &err.problem), ("metadata.name", &PolicyProblem::Missing));
    assert!(err.to_string().starts_with("namespace ?: metadata.name"), "{err}");
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
        (-5i64..70_000).prop_map(Value::from),
        prop::sample::select(vec![
            "",
            "TCP",
            "UDP",
            "SCTP",
            "In",
            "NotIn",
            "Exists",
            "DoesNotExist",
            "Ingress",
            "Egress",
            "http",
            "10.0.0.0/8",
            "10.1.0.0/16",
            "0.0.0.0/0",
            "::/0",
            "fd00::/8",
            "10.0.0.1",
            "x",
            "-",
        ])
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ]
}

/// Values shaped like policies (known keys at every level) with hostile leaves.
fn policy_like() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "podSelector",
        "namespaceSelector",
        "ipBlock",
        "cidr",
        "except",
        "ports",
        "port",
        "endPort",
        "protocol",
        "from",
        "to",
        "ingress",
        "egress",
        "policyTypes",
        "matchLabels",
        "matchExpressions",
        "key",
        "operator",
        "values",
    ]);
    leaf().prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(keys.clone().prop_map(str::to_owned), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn hostile_policies_are_errors_never_panics(spec in policy_like()) {
        let v = json!({"metadata": {"name": "p", "namespace": "x"}, "spec": spec});
        if let Ok(wire) = serde_json::from_value::<NetworkPolicy>(v) {
            let _ = wire.check();
        }
    }
}
