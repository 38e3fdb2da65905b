//! The lab enforces NetworkPolicies (`lab/topologies/default.yaml`) and what it enforces is
//! what the expected-verdict evaluator (`netdiag_diagnose::policy::PolicySet::evaluate`, written
//! independently) says: for a set of (source, destination, port) triples, a real TCP connect
//! from inside the source's namespace succeeds exactly when the verdict is Allow and times out
//! when it is Deny. The two policy faults change exactly the triples they should. Needs root.

// Helpers here panic on purpose: a panic is how a test reports what it found.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use netdiag_diagnose::policy::{
    Endpoint, HostKind, PodEndpoint, PolicySet, Traffic, Transport, Verdict, Via,
};
use netdiag_lab::topology::DEFAULT_TOPOLOGY;
use netdiag_model::Port;
use netdiag_model::inventory::Inventory;
use netdiag_tests::lab::TestLab;
use netdiag_tests::probe::{self, Reach};

/// Long enough for any allowed connect in the lab; a dropped SYN waits this long.
const T: Duration = Duration::from_millis(1500);

/// (source: pod `ns/name` or `node/<name>`, destination pod, TCP port).
const TRIPLES: &[(&str, &str, u16)] = &[
    ("tidb/demo-tidb-0", "tidb/demo-pd-0", 2379),
    ("tidb/demo-tikv-2", "tidb/demo-pd-0", 2379),
    ("monitoring/prometheus-0", "tidb/demo-pd-1", 2379),
    ("kube-system/coredns-0", "tidb/demo-pd-0", 2379),
    ("monitoring/prometheus-0", "tidb/demo-tikv-1", 20160),
    ("monitoring/prometheus-0", "tidb/demo-tikv-0", 20160),
    ("monitoring/prometheus-0", "tidb/demo-discovery-7c9f8d6b5-x2k8p", 10261),
    ("kube-system/coredns-0", "tidb/demo-tikv-2", 20160),
    ("tidb/demo-tikv-0", "tidb/demo-pd-2", 2380),
    ("tidb/demo-pd-0", "tidb/demo-pd-2", 2380),
    ("tidb/demo-tikv-1", "monitoring/prometheus-0", 9090),
    ("tidb/demo-tikv-0", "monitoring/prometheus-0", 9090),
    ("tidb/demo-tidb-1", "monitoring/prometheus-0", 9090),
    ("tidb/demo-tikv-2", "tidb/demo-tidb-0", 4000),
    ("tidb/demo-tikv-0", "kube-system/coredns-0", 53),
    ("node/node-1", "tidb/demo-pd-0", 2379),
    ("node/node-2", "tidb/demo-pd-0", 2379),
];

/// The fault each triple's expectation is computed under.
#[derive(Clone, Copy)]
enum Under<'a> {
    Healthy,
    /// No policy rule on this node's pods: their own sides (egress as source, ingress as
    /// destination) admit everything.
    NotEnforcedOn(&'a str),
    /// The destination pod also drops new connections from these pods.
    ExtraDeny {
        pod: &'a str,
        from: &'a [&'a str],
    },
}

struct Case<'a> {
    lab: &'a TestLab,
    inventory: Inventory,
    set: PolicySet,
}

impl Case<'_> {
    fn new(lab: &TestLab) -> Case<'_> {
        let inventory = lab.plan.inventory(&lab.state.dir);
        let set = PolicySet::from_objects(&inventory.network_policies, &inventory.namespaces)
            .expect("the lab's policies check");
        assert_eq!(set.len(), 5);
        Case { lab, inventory, set }
    }

    fn pod_info(&self, name: &str) -> &netdiag_model::inventory::PodInfo {
        self.inventory
            .pods
            .iter()
            .find(|p| p.pod_ref().to_string() == name)
            .unwrap_or_else(|| panic!("{name}"))
    }

    /// The evaluator's verdict, turned into "should connect" under `under`.
    fn expect(
        &self,
        (src, dst, port): (&str, &str, u16),
        ip_of: impl Fn(&[IpAddr]) -> IpAddr,
        under: Under<'_>,
    ) -> bool {
        let d = self.pod_info(dst);
        let destination = Endpoint::Pod(PodEndpoint::of(d).at(ip_of(&d.ips)));
        let node_name;
        let source = match src.strip_prefix("node/") {
            Some(n) => {
                let node = self.inventory.nodes.iter().find(|x| x.name.as_str() == n).unwrap();
                node_name = node.name.clone();
                Endpoint::Host { ip: ip_of(&node.ips), node: &node_name, kind: HostKind::Node }
            }
            None => {
                let s = self.pod_info(src);
                Endpoint::Pod(PodEndpoint::of(s).at(ip_of(&s.ips)))
            }
        };
        let traffic = Traffic {
            source,
            destination,
            transport: Transport::Tcp(Port::new(u32::from(port)).unwrap()),
            via: Via::Direct,
        };
        let v = self.set.evaluate(&traffic);
        assert!(
            matches!(v.verdict, Verdict::Allow | Verdict::Deny),
            "{src} -> {dst}:{port}: the triples are chosen to have a defined verdict, got {v:?}"
        );
        match under {
            Under::Healthy => v.verdict == Verdict::Allow,
            Under::NotEnforcedOn(node) => {
                let on = |name: &str| !name.starts_with("node/") && self.pod_info(name).node.as_str() == node;
                (v.egress.allows() || on(src)) && (v.ingress.allows() || on(dst))
            }
            Under::ExtraDeny { pod, from } => {
                v.verdict == Verdict::Allow && !(dst == pod && from.contains(&src))
            }
        }
    }

    fn netns(&self, src: &str) -> String {
        match src.strip_prefix("node/") {
            Some(n) => self.lab.node(n).netns.clone(),
            None => self.lab.pod(src).netns.clone(),
        }
    }

    /// Connects every triple at once (in one family) and compares with the expectations.
    fn check(&self, v6: bool, under: Under<'_>, what: &str) {
        let ip_of =
            |ips: &[IpAddr]| *ips.iter().find(|ip| ip.is_ipv6() == v6).expect("an address in the family");
        let results: Vec<(String, bool, Reach)> = std::thread::scope(|s| {
            let handles: Vec<_> = TRIPLES
                .iter()
                .map(|&(src, dst, port)| {
                    let want = self.expect((src, dst, port), ip_of, under);
                    let netns = self.netns(src);
                    let addr = SocketAddr::new(ip_of(&self.pod_info(dst).ips), port);
                    s.spawn(move || (format!("{src} -> {dst}:{port}"), want, probe::tcp(&netns, addr, T)))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("probe thread")).collect()
        });
        let wrong: Vec<String> = results
            .iter()
            .filter(|(_, want, got)| if *want { *got != Reach::Ok } else { *got != Reach::Timeout })
            .map(|(t, want, got)| {
                format!("{t}: evaluator says {}, connect gave {got:?}", if *want { "allow" } else { "deny" })
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "{what} ({}): enforcement differs from the evaluator:\n{}",
            if v6 { "v6" } else { "v4" },
            wrong.join("\n")
        );
        // The table must exercise both outcomes, or it proves nothing.
        assert!(results.iter().any(|r| r.1) && results.iter().any(|r| !r.1), "{what}: one-sided triples");
    }

    fn expected(&self, under: Under<'_>) -> Vec<bool> {
        TRIPLES.iter().map(|&t| self.expect(t, |ips| ips[0], under)).collect()
    }
}

fn enforcement_matches_the_evaluator(lab: TestLab, families: &[bool]) {
    let case = Case::new(&lab);
    for &v6 in families {
        case.check(v6, Under::Healthy, "healthy");
    }

    // policy-not-enforced node-1: what changes is exactly what node-1's pods' own sides denied.
    let healthy = case.expected(Under::Healthy);
    let under = Under::NotEnforcedOn("node-1");
    let changed: Vec<usize> = case
        .expected(under)
        .iter()
        .zip(&healthy)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, _)| i)
        .collect();
    let names: Vec<String> = changed.iter().map(|&i| format!("{:?}", TRIPLES[i])).collect();
    assert_eq!(
        names,
        [
            r#"("kube-system/coredns-0", "tidb/demo-pd-0", 2379)"#,
            r#"("tidb/demo-tikv-0", "monitoring/prometheus-0", 9090)"#,
            r#"("node/node-2", "tidb/demo-pd-0", 2379)"#,
        ],
        "the triples policy-not-enforced node-1 must open"
    );
    lab.fault("policy-not-enforced node-1");
    case.check(false, under, "policy-not-enforced node-1");
    lab.heal();
    case.check(false, Under::Healthy, "healed");

    // extra-deny: one allowed triple closes (an isolated destination), and one more on a pod
    // no policy isolates.
    let from: &[&str] = &["tidb/demo-tidb-0"];
    let under = Under::ExtraDeny { pod: "tidb/demo-pd-0", from };
    let changed = case.expected(under).iter().zip(&healthy).filter(|(a, b)| a != b).count();
    assert_eq!(changed, 1);
    lab.fault("extra-deny tidb/demo-pd-0 tidb/demo-tidb-0");
    case.check(false, under, "extra-deny tidb/demo-pd-0 tidb/demo-tidb-0");
    lab.heal();
    let tidb_pods: Vec<String> = lab
        .plan
        .pods
        .iter()
        .filter(|p| p.pod.namespace.as_str() == "tidb")
        .map(|p| p.pod.to_string())
        .collect();
    let tidb_pods: Vec<&str> = tidb_pods.iter().map(String::as_str).collect();
    let under = Under::ExtraDeny { pod: "monitoring/prometheus-0", from: &tidb_pods };
    assert_eq!(case.expected(under).iter().zip(&healthy).filter(|(a, b)| a != b).count(), 1);
    lab.fault("extra-deny monitoring/prometheus-0 namespace/tidb");
    case.check(false, under, "extra-deny monitoring/prometheus-0 namespace/tidb");
    lab.heal();
    for &v6 in families {
        case.check(v6, Under::Healthy, "healed again");
    }
}

#[test]
fn iptables_lab_enforces_policies_as_the_evaluator_expects() {
    enforcement_matches_the_evaluator(TestLab::from_yaml(DEFAULT_TOPOLOGY), &[false]);
}

#[test]
fn nftables_dual_stack_lab_enforces_policies_as_the_evaluator_expects() {
    let text = DEFAULT_TOPOLOGY
        .replace("proxy_mode: iptables", "proxy_mode: nftables")
        .replace("ipv6: false", "ipv6: true");
    enforcement_matches_the_evaluator(TestLab::from_yaml(&text), &[false, true]);
}

/// Through a Service VIP the policy meets the backend after DNAT (NETPOL §6): the lab's egress
/// rules sit on the node after kube-proxy's DNAT, so a VIP connects exactly when the evaluator
/// allows its backends (here every backend agrees, so one connect decides).
#[test]
fn policies_meet_service_traffic_after_dnat() {
    let lab = TestLab::from_yaml(DEFAULT_TOPOLOGY);
    let case = Case::new(&lab);
    let vips = [
        ("tidb/demo-tikv-0", "kube-system/kube-dns", 53),
        ("monitoring/prometheus-0", "tidb/demo-discovery", 10261),
        ("monitoring/prometheus-0", "tidb/demo-pd", 2379),
        ("tidb/demo-tikv-1", "tidb/demo-pd", 2379),
    ];
    let mut outcomes = Vec::new();
    for (src, svc, port) in vips {
        let service = case.inventory.services.iter().find(|s| s.service_ref().to_string() == svc).unwrap();
        let s = case.pod_info(src);
        let verdicts: Vec<Verdict> = service
            .endpoints
            .iter()
            .map(|e| {
                let backend = case.pod_info(&e.pod.as_ref().unwrap().to_string());
                case.set
                    .evaluate(&Traffic {
                        source: Endpoint::Pod(PodEndpoint::of(s)),
                        destination: Endpoint::Pod(PodEndpoint::of(backend)),
                        transport: Transport::Tcp(Port::new(u32::from(port)).unwrap()),
                        via: Via::ClusterIp,
                    })
                    .verdict
            })
            .collect();
        assert!(verdicts.windows(2).all(|w| w[0] == w[1]), "{src} -> {svc}: backends disagree {verdicts:?}");
        let want = if verdicts[0] == Verdict::Allow { Reach::Ok } else { Reach::Timeout };
        let vip = SocketAddr::new(service.cluster_ips[0], port);
        let got = probe::tcp(&lab.pod(src).netns, vip, T);
        assert_eq!(got, want, "{src} -> {svc} {vip}: evaluator {:?}", verdicts[0]);
        outcomes.push(got);
    }
    assert!(outcomes.contains(&Reach::Ok) && outcomes.contains(&Reach::Timeout));
}

/// A running lab's policies change without a rebuild (`netdiag lab policies`): from none to
/// policies.yaml's set (the connects then match the evaluator, faults survive the change) and
/// back to none (everything connects again); a file that changes pods is refused.
#[test]
fn policies_change_on_a_running_lab() {
    let without = DEFAULT_TOPOLOGY.split("\nnamespaces:").next().expect("policies.yaml has namespaces");
    let lab = TestLab::from_yaml(without);
    let tidb0 = lab.pod("tidb/demo-tidb-0");
    let pd0 = SocketAddr::new(lab.pod("tidb/demo-pd-0").ip.into(), 2379);
    let coredns = lab.pod("kube-system/coredns-0");
    assert_eq!(probe::tcp(&coredns.netns, pd0, T), Reach::Ok, "no policy yet");
    lab.fault("extra-deny tidb/demo-pd-0 tidb/demo-tidb-0");
    assert_eq!(probe::tcp(&tidb0.netns, pd0, T), Reach::Timeout);

    let with = netdiag_lab::topology::Topology::parse(DEFAULT_TOPOLOGY).unwrap();
    let plan = netdiag_lab::control::set_policies(lab.name(), &with).expect("set policies");
    assert_eq!(plan.network_policies.len(), 5);
    assert_eq!(probe::tcp(&coredns.netns, pd0, T), Reach::Timeout, "default deny in tidb now");
    assert_eq!(probe::tcp(&tidb0.netns, pd0, T), Reach::Timeout, "the extra deny is still there");
    let inventory = std::fs::read_to_string(lab.state.inventory_path()).unwrap();
    assert_eq!(Inventory::from_yaml(&inventory).unwrap().network_policies.len(), 5, "the inventory follows");
    lab.heal();
    assert_eq!(probe::tcp(&tidb0.netns, pd0, T), Reach::Ok);
    // Applying the same set again changes nothing.
    netdiag_lab::control::set_policies(lab.name(), &with).expect("set the same policies");
    assert_eq!(probe::tcp(&coredns.netns, pd0, T), Reach::Timeout);
    assert_eq!(probe::tcp(&tidb0.netns, pd0, T), Reach::Ok);

    let none = netdiag_lab::topology::Topology::parse(without).unwrap();
    netdiag_lab::control::set_policies(lab.name(), &none).expect("remove policies");
    assert_eq!(probe::tcp(&coredns.netns, pd0, T), Reach::Ok, "policies removed");
    let tikv0 = lab.pod("tidb/demo-tikv-0");
    let prom = SocketAddr::new(lab.pod("monitoring/prometheus-0").ip.into(), 9090);
    assert_eq!(probe::tcp(&tikv0.netns, prom, T), Reach::Ok, "egress policies removed");

    let err =
        netdiag_lab::control::set_policies(lab.name(), &netdiag_lab::topology::Topology::open_lab().unwrap())
            .expect_err("another pod set");
    assert!(err.to_string().contains("more than namespaces and network_policies (pods)"), "{err}");
}
