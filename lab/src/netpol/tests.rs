//! Rule generation tables: given policies and pods, the exact rules a pod (or its node) gets.

use super::*;
use crate::faults::FaultSpec;
use crate::topology::{DEFAULT_TOPOLOGY, Topology};

/// node-1: a/web (10.244.1.2; ports web=80, 81), b/other (10.244.1.3);
/// node-2: a/client (10.244.2.2), kube-system/dns (10.244.2.3).
const BASE: &str = "
nodes: [{ name: node-1 }, { name: node-2 }]
pods:
  - { namespace: a, name: web, node: node-1, ports: [{ name: web, port: 80 }, 81], labels: { app: web } }
  - { namespace: b, name: other, node: node-1, labels: { app: other } }
  - { namespace: a, name: client, node: node-2, labels: { app: client } }
  - { namespace: kube-system, name: dns, node: node-2, app: dns, labels: { k8s-app: dns } }
services:
  - { namespace: kube-system, name: dns, cluster_ip: 10.96.0.10, selector: { k8s-app: dns }, ports: [{ port: 53, protocol: UDP }] }
namespaces:
  - { name: a, labels: { team: a } }
  - { name: b, labels: { team: b } }
";

fn plan_with(policies: &str) -> LabPlan {
    let text = format!("{BASE}network_policies:\n{policies}");
    let topo = Topology::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    LabPlan::from_topology(&topo).unwrap()
}

fn pod<'a>(plan: &'a LabPlan, name: &str) -> &'a PodPlan {
    plan.pods.iter().find(|p| p.pod.to_string() == name).unwrap()
}

fn ingress(plan: &LabPlan, name: &str) -> Vec<String> {
    let e = Enforcement::new(plan);
    e.pod_chains(plan, &[], pod(plan, name), Family::V4).rules(INGRESS_CHAIN).to_vec()
}

fn egress(plan: &LabPlan, name: &str) -> Vec<String> {
    let e = Enforcement::new(plan);
    let p = pod(plan, name);
    let node = plan.node(&p.node).unwrap();
    e.node_chains(plan, &[], node, Family::V4).rules(&egress_pod_chain(&p.pod)).to_vec()
}

const EST: &str = "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT";
const LO: &str = "-i lo -j ACCEPT";
const NODE1: &str = "-s 172.29.0.11/32 -m comment --comment \"netpol own node\" -j ACCEPT";
const DENY: &str = "-m comment --comment \"netpol default deny\" -j DROP";

fn with_head(rules: &[&str]) -> Vec<String> {
    [EST, LO, NODE1].iter().chain(rules).chain(std::iter::once(&DENY)).map(|s| (*s).to_owned()).collect()
}

#[test]
fn ingress_rule_tables() {
    let c = |name: &str| format!("-m comment --comment \"netpol a/{name}\"");
    let cases: Vec<(&str, &str, Vec<String>)> = vec![
        (
            "deny-all: isolation and nothing else",
            "  - metadata: { namespace: a, name: p }\n    spec: { podSelector: {} }\n",
            with_head(&[]),
        ),
        (
            "own namespace by podSelector: every pod of a at its address",
            "  - metadata: { namespace: a, name: p }\n    spec: { ingress: [{ from: [{ podSelector: {} }] }] }\n",
            with_head(&[
                &format!("-s 10.244.1.2/32 {} -j ACCEPT", c("p")),
                &format!("-s 10.244.2.2/32 {} -j ACCEPT", c("p")),
            ]),
        ),
        (
            "namespace selector by label, numeric port and a range",
            "  - metadata: { namespace: a, name: p }\n    spec:\n      ingress:\n        - from: [{ namespaceSelector: { matchLabels: { team: b } } }]\n          ports: [{ port: 81 }, { protocol: UDP, port: 1000, endPort: 1010 }]\n",
            with_head(&[
                &format!("-s 10.244.1.3/32 -p tcp -m tcp --dport 81 {} -j ACCEPT", c("p")),
                &format!("-s 10.244.1.3/32 -p udp -m udp --dport 1000:1010 {} -j ACCEPT", c("p")),
            ]),
        ),
        (
            "AND in one peer: pods labelled app=dns in namespace kube-system (by its default label)",
            "  - metadata: { namespace: a, name: p }\n    spec:\n      ingress:\n        - from:\n            - namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: kube-system } }\n              podSelector: { matchLabels: { k8s-app: dns } }\n",
            with_head(&[&format!("-s 10.244.2.3/32 {} -j ACCEPT", c("p"))]),
        ),
        (
            "named port resolved on the pod itself; an unknown name and a protocol mismatch admit nothing",
            "  - metadata: { namespace: a, name: p }\n    spec:\n      ingress:\n        - ports: [{ port: web }, { port: nope }, { protocol: UDP, port: web }]\n        - from: [{ podSelector: {} }]\n          ports: [{ port: nope }]\n",
            with_head(&[&format!("-p tcp -m tcp --dport 80 {} -j ACCEPT", c("p"))]),
        ),
        (
            "ipBlock with except: a chain returning early for the except",
            "  - metadata: { namespace: a, name: p }\n    spec:\n      ingress:\n        - from: [{ ipBlock: { cidr: 10.244.0.0/16, except: [10.244.2.0/24] } }, { ipBlock: { cidr: 'fd00::/8' } }]\n          ports: [{ protocol: TCP }]\n",
            with_head(&[&format!("-s 10.244.0.0/16 {} -j NETDIAG-NETPOL-IN-E0", c("p"))]),
        ),
        (
            "the rule {} admits everything; a second policy's rule is ORed",
            "  - metadata: { namespace: a, name: p }\n    spec: { ingress: [{}] }\n  - metadata: { namespace: a, name: q }\n    spec: { ingress: [{ ports: [{ port: 81 }] }] }\n",
            with_head(&[
                &format!("{} -j ACCEPT", c("p")),
                &format!("-p tcp -m tcp --dport 81 {} -j ACCEPT", c("q")),
            ]),
        ),
        (
            "egress-only policy: ingress not isolated, no chain",
            "  - metadata: { namespace: a, name: p }\n    spec: { policyTypes: [Egress] }\n",
            vec![],
        ),
        (
            "a policy in another namespace or selecting other pods does not isolate a/web",
            "  - metadata: { namespace: b, name: p }\n    spec: { podSelector: {} }\n  - metadata: { namespace: a, name: q }\n    spec: { podSelector: { matchLabels: { app: client } } }\n",
            vec![],
        ),
    ];
    for (what, policies, want) in cases {
        let plan = plan_with(policies);
        assert_eq!(ingress(&plan, "a/web"), want, "{what}");
    }
    // The except chain of the ipBlock case.
    let plan = plan_with(
        "  - metadata: { namespace: a, name: p }\n    spec:\n      ingress:\n        - from: [{ ipBlock: { cidr: 10.244.0.0/16, except: [10.244.2.0/24] } }]\n          ports: [{ protocol: TCP }, { port: web }]\n",
    );
    let chains = Enforcement::new(&plan).pod_chains(&plan, &[], pod(&plan, "a/web"), Family::V4);
    assert_eq!(
        chains.rules("NETDIAG-NETPOL-IN-E0"),
        [
            "-s 10.244.2.0/24 -j RETURN".to_owned(),
            format!("-p tcp {} -j ACCEPT", c("p")),
            format!("-p tcp -m tcp --dport 80 {} -j ACCEPT", c("p")),
        ]
    );
    assert_eq!(chains.hooks, [("INPUT", INGRESS_CHAIN.to_owned())]);
}

#[test]
fn egress_rule_tables() {
    let c = |name: &str| format!("-m comment --comment \"netpol a/{name}\"");
    let head = |rules: &[String]| {
        let mut v = vec![EST.to_owned()];
        v.extend(rules.iter().cloned());
        v.push(DENY.to_owned());
        v
    };
    let cases: Vec<(&str, &str, &str, Vec<String>)> = vec![
        (
            "egress deny-all",
            "a/client",
            "  - metadata: { namespace: a, name: p }\n    spec: { policyTypes: [Egress] }\n",
            head(&[]),
        ),
        (
            "to DNS pods in any namespace on UDP 53 (after DNAT the backend's address)",
            "a/client",
            "  - metadata: { namespace: a, name: p }\n    spec:\n      policyTypes: [Egress]\n      egress:\n        - to: [{ namespaceSelector: {}, podSelector: { matchLabels: { k8s-app: dns } } }]\n          ports: [{ protocol: UDP, port: 53 }]\n",
            head(&[format!("-d 10.244.2.3/32 -p udp -m udp --dport 53 {} -j ACCEPT", c("p"))]),
        ),
        (
            "a named port with no `to`: every pod declaring it, at its own number",
            "a/client",
            "  - metadata: { namespace: a, name: p }\n    spec: { policyTypes: [Egress], egress: [{ ports: [{ port: web }] }] }\n",
            head(&[format!("-d 10.244.1.2/32 -p tcp -m tcp --dport 80 {} -j ACCEPT", c("p"))]),
        ),
        (
            "a named port within an ipBlock that leaves a/web out admits nothing",
            "a/client",
            "  - metadata: { namespace: a, name: p }\n    spec: { policyTypes: [Egress], egress: [{ to: [{ ipBlock: { cidr: 10.244.0.0/16, except: [10.244.1.0/24] } }], ports: [{ port: web }] }] }\n",
            head(&[]),
        ),
    ];
    for (what, who, policies, want) in cases {
        let plan = plan_with(policies);
        assert_eq!(egress(&plan, who), want, "{what}");
        assert!(ingress(&plan, who).is_empty(), "{what}: egress policies leave ingress alone");
    }
    // Without policyTypes, a policy with egress rules isolates both directions (the API's
    // defaulting).
    let plan = plan_with("  - metadata: { namespace: a, name: p }\n    spec: { egress: [{}] }\n");
    assert_eq!(egress(&plan, "a/client"), head(&[format!("{} -j ACCEPT", c("p"))]));
    assert_eq!(ingress(&plan, "a/client").last().map(String::as_str), Some(DENY));
    // Dispatch on node-2 for a/client only; node-1 has the (empty) dispatch chain and hooks.
    let plan = plan_with(
        "  - metadata: { namespace: a, name: p }\n    spec: { podSelector: { matchLabels: { app: client } }, policyTypes: [Egress] }\n",
    );
    let e = Enforcement::new(&plan);
    let n2 = e.node_chains(&plan, &[], plan.node(&"node-2".parse().unwrap()).unwrap(), Family::V4);
    let client = pod(&plan, "a/client");
    assert_eq!(
        n2.rules(EGRESS_CHAIN),
        [format!(
            "-i {} -m comment --comment \"netpol egress a/client\" -j {}",
            client.host_if,
            egress_pod_chain(&client.pod)
        )]
    );
    assert_eq!(n2.hooks, [("INPUT", EGRESS_CHAIN.to_owned()), ("FORWARD", EGRESS_CHAIN.to_owned())]);
    let n1 = e.node_chains(&plan, &[], plan.node(&"node-1".parse().unwrap()).unwrap(), Family::V4);
    assert!(n1.rules(EGRESS_CHAIN).is_empty());
    assert_eq!(n1.chains.len(), 1);
}

#[test]
fn a_lab_without_policies_gets_no_policy_chain() {
    let plan = LabPlan::from_topology(&Topology::open_lab().unwrap()).unwrap();
    let e = Enforcement::new(&plan);
    for p in &plan.pods {
        assert!(e.pod_chains(&plan, &[], p, Family::V4).is_empty());
    }
    for n in &plan.nodes {
        assert!(e.node_chains(&plan, &[], n, Family::V4).is_empty());
    }
}

fn fault(plan: &LabPlan, id: u32, text: &str) -> ActiveFault {
    let mut words = text.split_whitespace();
    let name = words.next().unwrap();
    let args: Vec<String> = words.map(str::to_owned).collect();
    let spec = FaultSpec::parse(name, &args, plan).unwrap_or_else(|e| panic!("{text}: {e}"));
    ActiveFault { id, description: spec.to_string(), spec, since_unix_ms: 0 }
}

#[test]
fn policy_not_enforced_drops_exactly_that_nodes_policy_rules() {
    let plan = LabPlan::from_topology(&Topology::parse(DEFAULT_TOPOLOGY).unwrap()).unwrap();
    let e = Enforcement::new(&plan);
    let f = [fault(&plan, 3, "policy-not-enforced node-1")];
    for p in &plan.pods {
        let healthy = e.pod_chains(&plan, &[], p, Family::V4);
        let faulty = e.pod_chains(&plan, &f, p, Family::V4);
        if p.node.as_str() == "node-1" {
            assert!(faulty.is_empty(), "{}", p.pod);
        } else {
            assert_eq!(faulty, healthy, "{}", p.pod);
        }
    }
    for n in &plan.nodes {
        let healthy = e.node_chains(&plan, &[], n, Family::V4);
        let faulty = e.node_chains(&plan, &f, n, Family::V4);
        if n.name.as_str() == "node-1" {
            // tidb/demo-tikv-0 is egress-isolated there: its dispatch and chain are gone, the
            // hooks and the empty dispatch chain stay.
            assert_eq!(healthy.rules(EGRESS_CHAIN).len(), 1);
            assert!(faulty.rules(EGRESS_CHAIN).is_empty());
            assert_eq!(faulty.hooks, healthy.hooks);
        } else {
            assert_eq!(faulty, healthy, "{}", n.name);
        }
    }
}

#[test]
fn extra_deny_is_a_stateful_drop_first_in_the_ingress_chain() {
    let plan = LabPlan::from_topology(&Topology::parse(DEFAULT_TOPOLOGY).unwrap()).unwrap();
    let e = Enforcement::new(&plan);
    // An isolated pod: the drop comes right after ESTABLISHED, before any accept.
    let pd = pod(&plan, "tidb/demo-pd-0");
    let f = [fault(&plan, 7, "extra-deny tidb/demo-pd-0 tidb/demo-tidb-0")];
    let rules = e.pod_chains(&plan, &f, pd, Family::V4).rules(INGRESS_CHAIN).to_vec();
    let tidb0 = pod(&plan, "tidb/demo-tidb-0").ip;
    assert_eq!(rules[0], EST);
    assert_eq!(
        rules[1],
        format!("-s {tidb0}/32 -m comment --comment \"netdiag-fault-7 extra-deny\" -j DROP")
    );
    assert_eq!(&rules[2..], e.pod_chains(&plan, &[], pd, Family::V4).rules(INGRESS_CHAIN)[1..].to_vec());
    // A pod no policy isolates: a chain with just the deny (and no default DROP).
    let dns = pod(&plan, "kube-system/coredns-0");
    let f = [fault(&plan, 8, "extra-deny kube-system/coredns-0 namespace/monitoring")];
    let prom = pod(&plan, "monitoring/prometheus-0").ip;
    assert_eq!(
        e.pod_chains(&plan, &f, dns, Family::V4).rules(INGRESS_CHAIN),
        [EST.to_owned(), format!("-s {prom}/32 -m comment --comment \"netdiag-fault-8 extra-deny\" -j DROP")]
    );
    // It survives policy-not-enforced on the same node: it is not a policy's rule.
    let both = [f[0].clone(), fault(&plan, 9, "policy-not-enforced node-1")];
    assert_eq!(e.pod_chains(&plan, &both, dns, Family::V4).rules(INGRESS_CHAIN).len(), 2);
}

#[test]
fn policy_fault_arguments_are_checked() {
    let plan = LabPlan::from_topology(&Topology::parse(DEFAULT_TOPOLOGY).unwrap()).unwrap();
    let err = |text: &str| {
        let mut w = text.split_whitespace();
        let name = w.next().unwrap();
        let args: Vec<String> = w.map(str::to_owned).collect();
        FaultSpec::parse(name, &args, &plan).unwrap_err().to_string()
    };
    assert!(err("policy-not-enforced node-9").contains("no node node-9"));
    assert!(err("policy-not-enforced").contains("takes <node>"));
    assert!(err("extra-deny tidb/demo-pd-0 tidb/demo-pd-0").contains("cannot block itself"));
    assert!(err("extra-deny tidb/demo-pd-0 tidb/nope").contains("no pod tidb/nope"));
    assert!(err("extra-deny tidb/demo-pd-0 namespace/nope").contains("no pod other than tidb/demo-pd-0"));
    assert!(err("extra-deny tidb/demo-pd-0").contains("takes <ns>/<pod> <ns>/<pod>|namespace/<ns>"));
    let default = LabPlan::from_topology(&Topology::open_lab().unwrap()).unwrap();
    let e = FaultSpec::parse("policy-not-enforced", &["node-1".into()], &default).unwrap_err().to_string();
    assert!(e.contains("no NetworkPolicy isolates a pod on node-1"), "{e}");
}

/// The example in the report: PD's ingress chain and TiKV's egress chain in policies.yaml.
#[test]
fn the_policies_topology_rules_for_pd_and_tikv() {
    let plan = LabPlan::from_topology(&Topology::parse(DEFAULT_TOPOLOGY).unwrap()).unwrap();
    let ip = |name: &str| pod(&plan, name).ip;
    let c = "-m comment --comment \"netpol tidb/pd-client-and-peers\"";
    let mut want = vec![EST.to_owned(), LO.to_owned(), NODE1.to_owned()];
    let tidb_pods = [
        "tidb/demo-pd-0",
        "tidb/demo-pd-1",
        "tidb/demo-pd-2",
        "tidb/demo-tikv-0",
        "tidb/demo-tikv-1",
        "tidb/demo-tikv-2",
        "tidb/demo-tidb-0",
        "tidb/demo-tidb-1",
        "tidb/demo-discovery-7c9f8d6b5-x2k8p",
    ];
    for p in tidb_pods {
        want.push(format!("-s {}/32 -p tcp -m tcp --dport 2379 {c} -j ACCEPT", ip(p)));
    }
    for p in &tidb_pods[..3] {
        want.push(format!("-s {}/32 -p tcp -m tcp --dport 2380 {c} -j ACCEPT", ip(p)));
    }
    want.push(DENY.to_owned());
    assert_eq!(ingress(&plan, "tidb/demo-pd-0"), want);

    let tikv = egress(&plan, "tidb/demo-tikv-0");
    let c = "-m comment --comment \"netpol tidb/tikv-egress\"";
    let mut want = vec![EST.to_owned()];
    for p in tidb_pods {
        want.push(format!("-d {}/32 {c} -j ACCEPT", ip(p)));
    }
    let dns = ip("kube-system/coredns-0");
    want.push(format!("-d {dns}/32 -p udp -m udp --dport 53 {c} -j ACCEPT"));
    want.push(format!("-d {dns}/32 -p tcp -m tcp --dport 53 {c} -j ACCEPT"));
    want.push(DENY.to_owned());
    assert_eq!(tikv, want);
}

#[test]
fn v6_chains_let_neighbour_discovery_through_and_use_v6_addresses() {
    let text = DEFAULT_TOPOLOGY.replace("ipv6: false", "ipv6: true");
    let plan = LabPlan::from_topology(&Topology::parse(&text).unwrap()).unwrap();
    let e = Enforcement::new(&plan);
    let pd = pod(&plan, "tidb/demo-pd-0");
    let rules = e.pod_chains(&plan, &[], pd, Family::V6).rules(INGRESS_CHAIN).to_vec();
    assert!(rules.iter().any(|r| r.contains("--icmpv6-type neighbour-solicitation")), "{rules:#?}");
    let node_v6 = plan.node(&pd.node).unwrap().ip_v6.unwrap();
    assert!(rules.contains(&format!("-s {node_v6}/128 -m comment --comment \"netpol own node\" -j ACCEPT")));
    assert!(rules.iter().filter(|r| r.starts_with("-s ")).all(|r| r.contains(':')), "{rules:#?}");
    // prometheus-egress's ipBlock is v4 only: in v6 it admits nothing but DNS.
    let prom = pod(&plan, "monitoring/prometheus-0");
    let node = plan.node(&prom.node).unwrap();
    let chain = e.node_chains(&plan, &[], node, Family::V6);
    let rules = chain.rules(&egress_pod_chain(&prom.pod));
    assert!(rules.iter().all(|r| !r.contains("10.244.")), "{rules:#?}");
    assert!(rules.iter().any(|r| r.contains("--dport 53")), "{rules:#?}");
}
