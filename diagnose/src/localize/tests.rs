//! Localization, table-driven: each row is a lab scenario (the faults of `lab/src/faults.rs`
//! and a few the runbook names besides) built by [`sim`], and the one finding it must give —
//! id, culprit kind and name, and the runbook's words in the verdict. Healthy, flaky and silent
//! agents must give nothing. A proptest feeds arbitrary outcomes and checks `diagnose` neither
//! panics nor wavers.

use std::collections::BTreeMap;

use netdiag_model::probe::{ProbeKind, Source, Target};
use netdiag_model::result::{Burst, Detail, PathMtu, ProbeResult};
use netdiag_model::{CulpritKind, Finding, Outcome, Severity, UnixMillis};
use proptest::prelude::*;

use super::report::ids;
use super::rules::parse_path_mtu;
use super::{Thresholds, diagnose, diagnose_with};
use crate::matrix::{InventoryIndex, Matrix};
use crate::sim::{self, World, now};

mod classes;
mod policies;

fn run(world: &World) -> Vec<Finding> {
    diagnose(&world.matrix(), &world.inspections(), &world.inventory(), now())
}

pub(crate) fn summary(findings: &[Finding]) -> Vec<(String, CulpritKind, String)> {
    findings
        .iter()
        .map(|f| {
            let c = f.culprit.as_ref().unwrap();
            (f.id.as_str().to_owned(), c.kind, c.name.as_str().to_owned())
        })
        .collect()
}

/// Every finding is complete: verdict, culprit, evidence, runbook section, suggestion.
fn check_shape(f: &Finding, max_affected: usize) {
    assert!(!f.verdict.is_empty(), "{f:?}");
    assert!(f.culprit.is_some(), "{f:?}");
    assert!(!f.evidence.is_empty(), "no evidence: {f:?}");
    assert!(["1.2", "1.3", "1.5", "1.6", "2.3"].contains(&f.runbook.as_ref().unwrap().as_str()), "{f:?}");
    assert!(!f.suggestion.is_empty(), "{f:?}");
    assert!(f.affected.len() <= max_affected + 1, "{f:?}");
    assert!(!f.verdict.as_str().contains('\n'), "one line: {}", f.verdict);
}

struct Row {
    name: &'static str,
    world: World,
    /// (id, culprit kind, culprit name, words the verdict must hold)
    want: Vec<(&'static str, CulpritKind, &'static str, &'static str)>,
}

fn row(
    name: &'static str,
    world: World,
    want: Vec<(&'static str, CulpritKind, &'static str, &'static str)>,
) -> Row {
    Row { name, world, want }
}

#[test]
fn one_finding_per_runbook_verdict() {
    use CulpritKind::*;
    let rows = vec![
        row("healthy", World::healthy(), vec![]),
        row(
            "one flaky agent: 10% of node-2's cells fail, no common cause",
            World::healthy().flaky("node-2", 0.10),
            vec![(ids::UNEXPLAINED_FAILURES, Path, "unexplained paths", "no single component explains them")],
        ),
        row(
            "silent agent: node-3's last results failed, then nothing",
            World::healthy().silent("node-3"),
            vec![],
        ),
        row("no inspections at all", World::healthy().no_inspections(), vec![]),
        // Symptoms alone scatter over the node's pods, ports and pairs; its inspection says why.
        row(
            "node-2 does not forward (ip_forward = 0)",
            World::healthy().forwarding_off("node-2"),
            vec![(ids::NODE_FORWARDING_DISABLED, Node, "node-2", "net.ipv4.ip_forward = 0")],
        ),
        // A hand-made host firewall rule: port 2379 of every pod on node-2 dropped. The
        // symptoms read as the port dropped on one pod; the node's inspection has the rule.
        // A hand-made fault from the lab: the pod's own OUTPUT chain drops UDP to port 53.
        // Its lookups and its direct UDP queries fail, direct TCP queries answer.
        row(
            "tidb/demo-pd-0 drops its own DNS over UDP",
            World::healthy().udp_dns_blocked("tidb/demo-pd-0"),
            vec![(ids::DNS_POD_RESOLVER, Pod, "tidb/demo-pd-0", "over udp")],
        ),
        row(
            "node-2 forwards nothing, no setting says why",
            World::healthy().forwarding_broken("node-2"),
            vec![(ids::NODE_FORWARDING_BROKEN, Node, "node-2", "forwards nothing for its pods")],
        ),
        row(
            "a rule inside pod demo-pd-1 drops what demo-tidb-0 sends it",
            World::healthy().pod_firewall_drops("tidb/demo-pd-1", "tidb/demo-tidb-0"),
            vec![(ids::FIREWALL_DROP, Pod, "tidb/demo-pd-1", "pod tidb/demo-pd-1's firewall drops")],
        ),
        row(
            "a rule inside pod demo-tikv-1 rejects its port with resets: refused on the wire",
            World::healthy().pod_rejects_port("tidb/demo-tikv-1", 20160),
            vec![(
                ids::FIREWALL_DROP,
                Port,
                "tidb/demo-tikv-1:20160",
                "pod tidb/demo-tikv-1's firewall rejects",
            )],
        ),
        row(
            "node-2's firewall drops what node-1's pods send through it, replies included",
            World::healthy().forward_drop_from("node-2", "node-1"),
            vec![(ids::FIREWALL_DROP, Node, "node-2", "FORWARD: -s 10.244.1.0/24 -j DROP")],
        ),
        row(
            "a pod's own firewall drops TCP to every service VIP",
            World::healthy().pod_blocks_services("tidb/demo-tidb-0"),
            vec![(ids::FIREWALL_DROP, Pod, "tidb/demo-tidb-0", "OUTPUT: -d 10.96.0.0/16 -p tcp -j DROP")],
        ),
        row(
            "the DNS pod's own firewall drops queries over UDP",
            World::healthy().dns_server_drops_udp(),
            vec![(ids::FIREWALL_DROP, Port, "kube-system/coredns-0:53", "--dport 53 -j DROP")],
        ),
        row(
            "node-2's firewall drops TCP to port 2379",
            World::healthy().firewall_drop("node-2", 2379),
            vec![(ids::FIREWALL_DROP, Node, "node-2", "--dport 2379 -j DROP")],
        ),
        row(
            "node-2's FORWARD policy drops new connections, pings keep their conntrack entries",
            World::healthy().forward_policy_drop("node-2"),
            vec![(ids::FIREWALL_DROP, Node, "node-2", "FORWARD: policy DROP")],
        ),
        row(
            "a pod whose default route was deleted",
            World::healthy().pod_unrouted("tidb/demo-pd-1"),
            vec![(ids::ROUTE_MISSING, Pod, "tidb/demo-pd-1", "its routing table has no route to")],
        ),
        row(
            "pod-down",
            World::healthy().pod_down("tidb/demo-pd-1"),
            vec![(ids::POD_DOWN, Pod, "tidb/demo-pd-1", "pod tidb/demo-pd-1 (10.244.2.2) does not answer")],
        ),
        row(
            "port-closed",
            World::healthy().port_closed("tidb/demo-pd-1", 2379),
            vec![(
                ids::PORT_REFUSED,
                Port,
                "tidb/demo-pd-1:2379",
                "port 2379 refused on pod tidb/demo-pd-1: nothing listens there (containerPort / app config mismatch)",
            )],
        ),
        row(
            "port-drop",
            World::healthy().port_dropped("tidb/demo-tikv-2", 20160),
            vec![(ids::PORT_DROPPED, Port, "tidb/demo-tikv-2:20160", "times out while ICMP answers")],
        ),
        row(
            "node-isolate, its agent silent",
            World::healthy().isolate("node-3").silent("node-3"),
            vec![(ids::NODE_ISOLATED, Node, "node-3", "node node-3 is cut off")],
        ),
        row(
            "node-isolate, its agent still reporting",
            World::healthy().isolate("node-3"),
            vec![(ids::NODE_ISOLATED, Node, "node-3", "every path in and out of it fails")],
        ),
        row(
            "node-isolate, its agent quiet but not yet stale (its cells frozen healthy)",
            World::healthy().isolate("node-3").quiet("node-3"),
            vec![(ids::NODE_ISOLATED, Node, "node-3", "node node-3 is cut off")],
        ),
        row(
            "node-isolate of CoreDNS's node: DNS failures elsewhere are its doing",
            World::healthy().isolate("node-1").silent("node-1"),
            vec![(ids::NODE_ISOLATED, Node, "node-1", "node node-1 is cut off")],
        ),
        row(
            "port-closed on a service's only backend",
            World::healthy().port_closed("tidb/demo-discovery-7c9f8d6b5-x2k8p", 10261),
            vec![(
                ids::PORT_REFUSED,
                Port,
                "tidb/demo-discovery-7c9f8d6b5-x2k8p:10261",
                "port 10261 refused on pod tidb/demo-discovery-7c9f8d6b5-x2k8p",
            )],
        ),
        row(
            "dnat-missing on every node",
            World::healthy()
                .dnat_missing("node-1", "tidb/demo-pd", 2379)
                .dnat_missing("node-2", "tidb/demo-pd", 2379)
                .dnat_missing("node-3", "tidb/demo-pd", 2379),
            vec![(ids::SERVICE_PATH_BROKEN, Service, "tidb/demo-pd", "from any node")],
        ),
        row(
            "node-pair",
            World::healthy().cut_pair("node-1", "node-2"),
            vec![(
                ids::NODE_PAIR_BROKEN,
                NodePair,
                "node-1↔node-2",
                "pods on node-1 cannot reach pods on node-2, all other pairs fine: link or route node-1↔node-2",
            )],
        ),
        row(
            "route-missing",
            World::healthy().route_missing("node-1", "node-3"),
            vec![(ids::ROUTE_MISSING, NodePair, "node-1→node-3", "no route to 10.244.3.0/24 on node-1")],
        ),
        row(
            "node-1 routes node-3's pods via an address nobody holds",
            World::healthy().route_via("node-1", "node-3", "172.29.0.99"),
            vec![(
                ids::ROUTE_MISSING,
                NodePair,
                "node-1→node-3",
                "a route to the wrong gateway on node-1 (`10.244.3.0/24 via 172.29.0.99",
            )],
        ),
        row(
            "node-1 routes node-3's pods via node-2",
            World::healthy().route_via("node-1", "node-3", "172.29.0.12"),
            vec![(ids::ROUTE_MISSING, NodePair, "node-1→node-3", "a route to the wrong gateway on node-1")],
        ),
        row(
            "a pod whose address was taken off its interface",
            World::healthy().pod_unaddressed("tidb/demo-pd-1"),
            vec![(ids::POD_DOWN, Pod, "tidb/demo-pd-1", "is not on any of its interfaces")],
        ),
        row(
            "a blackhole route on node-2 for node-1's own address",
            World::healthy().node_address_blackholed("node-2", "node-1"),
            vec![(
                ids::ROUTE_MISSING,
                NodePair,
                "node-2→node-1",
                "a blackhole route on node-2 (`blackhole 172.29.0.11/32`) sends 172.29.0.11/32 (node-1's address) nowhere",
            )],
        ),
        row(
            "node-2's uplink MTU lowered by hand",
            World::healthy().uplink_mtu("node-2", 1200),
            vec![(
                ids::MTU_BLACKHOLE,
                Node,
                "node-2",
                "node-2's uplink eth0 has MTU 1200 where the other nodes' have 1500",
            )],
        ),
        row(
            "a wrong static ARP entry on node-2 for node-1",
            World::healthy().wrong_neighbour("node-2", "node-1"),
            vec![(
                ids::NEIGHBOUR_MISMATCH,
                NodePair,
                "node-2→node-1",
                "node-2's ARP entry for node-1's address 172.29.0.11 points at 02:00:00:de:ad:01",
            )],
        ),
        row(
            "a blackhole route on node-1 for node-3's pods",
            World::healthy().route_blackholed("node-1", "node-3"),
            vec![(
                ids::ROUTE_MISSING,
                NodePair,
                "node-1→node-3",
                "a blackhole route for 10.244.3.0/24 on node-1",
            )],
        ),
        row(
            "an `ip rule … prohibit` on node-1 for node-3's pods, the main table intact",
            World::healthy().rule_prohibits("node-1", "node-3"),
            vec![(
                ids::ROUTE_MISSING,
                NodePair,
                "node-1→node-3",
                "a policy-routing rule on node-1 (`100: from all to 10.244.3.0/24 prohibit`) drops 10.244.3.0/24",
            )],
        ),
        row(
            "a pod's own route for the service CIDR through a gateway nobody answers",
            World::healthy().pod_misroutes_services("tidb/demo-tidb-0"),
            vec![(
                ids::ROUTE_MISSING,
                Pod,
                "tidb/demo-tidb-0",
                "pod tidb/demo-tidb-0 routes 10.96.0.0/16 through 169.254.1.99, an address no host answers (its ARP/NDP \
                 entry on pod tidb/demo-tidb-0 is INCOMPLETE)",
            )],
        ),
        row(
            "dnat-missing",
            World::healthy().dnat_missing("node-1", "tidb/demo-pd", 2379),
            vec![(
                ids::SERVICE_PATH_BROKEN,
                Path,
                "svc/tidb/demo-pd:2379 on node-1",
                "backends answer, VIP 10.96.0.20:2379 (tidb/demo-pd) does not, from node-1 only: service path \
                 (kube-proxy rules) broken on node-1",
            )],
        ),
        row(
            "node-1's DNAT rule sends one endpoint's share of demo-pd:2379 to a wrong port",
            World::healthy().dnat_wrong_port("node-1", "tidb/demo-pd", 2379),
            vec![(
                ids::SERVICE_PATH_BROKEN,
                Path,
                "svc/tidb/demo-pd:2379 on node-1",
                "which is no endpoint of the service",
            )],
        ),
        row(
            "service without endpoints",
            World::healthy().no_endpoints("tidb/demo-discovery"),
            vec![(
                ids::SERVICE_NO_ENDPOINTS,
                Service,
                "tidb/demo-discovery",
                "service tidb/demo-discovery has no ready endpoints",
            )],
        ),
        row(
            "dns-block",
            World::healthy().dns_block("node-2"),
            vec![(
                ids::DNS_UNREACHABLE_FROM_NODE,
                Dns,
                "10.96.0.10 from node-2",
                "resolver 10.96.0.10 unreachable from every pod on node-2",
            )],
        ),
        row(
            "dns-down",
            World::healthy().dns_down(),
            vec![(ids::DNS_DOWN, Dns, "10.96.0.10 (kube-system/kube-dns)", "CoreDNS down everywhere")],
        ),
        row(
            "dns-servfail",
            World::healthy().dns_servfail(),
            vec![(
                ids::DNS_SERVFAIL,
                Dns,
                "10.96.0.10 (kube-system/kube-dns)",
                "answers SERVFAIL for every name it is asked",
            )],
        ),
        row(
            "a name that does not resolve",
            World::healthy().name_missing("demo-discovery.tidb"),
            vec![(
                ids::DNS_NAME_MISSING,
                Dns,
                "demo-discovery.tidb",
                "NXDOMAIN for demo-discovery.tidb from every pod",
            )],
        ),
        row(
            "one pod's resolv.conf names the wrong server",
            World::healthy().bad_resolver("tidb/demo-tikv-1", "10.96.0.99"),
            vec![(
                ids::DNS_POD_RESOLVER,
                Pod,
                "tidb/demo-tikv-1",
                "DNS fails from pod tidb/demo-tikv-1: nameserver 10.96.0.99 in its resolv.conf is not the cluster DNS",
            )],
        ),
        row(
            "mtu",
            World::healthy().mtu("node-2", 1400),
            vec![(ids::MTU_BLACKHOLE, Node, "node-2", "packets over 1400 bytes through node-2 vanish")],
        ),
        row(
            "loss",
            World::healthy().loss("node-3", 0.2),
            vec![(ids::NODE_PACKET_LOSS, Node, "node-3", "node-3 loses packets")],
        ),
        row(
            "keepalive over a measured idle cut",
            World::healthy().keepalive_all(300).keepalive("tidb/demo-pd-0", 7200).idle_cut("node-2", 350),
            vec![(
                ids::KEEPALIVE_EXCEEDS_IDLE_CUT,
                Pod,
                "tidb/demo-pd-0",
                "pod tidb/demo-pd-0 keepalive 7200 s, longer than the path's idle cut at 350 s",
            )],
        ),
        row(
            "keepalive long, idle cut unknown",
            World::healthy().keepalive_all(300).keepalive("tidb/demo-pd-0", 7200).conntrack_unreported(),
            vec![(ids::KEEPALIVE_UNVERIFIED, Pod, "tidb/demo-pd-0", "pod tidb/demo-pd-0 keepalive 7200 s")],
        ),
        row(
            "NodePort rules missing on one node",
            World::healthy().nodeport_missing("node-2", 30400),
            vec![(
                ids::NODEPORT_BROKEN,
                Path,
                "nodeport/node-2:30400",
                "NodePort 30400 (tidb/demo-tidb) fails on node-2 only",
            )],
        ),
        row(
            "NodePort with externalTrafficPolicy: Local",
            World::healthy().local_policy("tidb/demo-tidb"),
            vec![(
                ids::NODEPORT_LOCAL_POLICY,
                Service,
                "tidb/demo-tidb",
                "answers only on nodes that run a backend: externalTrafficPolicy=Local",
            )],
        ),
    ];
    let mut failures = Vec::new();
    for r in rows {
        let findings = run(&r.world);
        let got = summary(&findings);
        let want: Vec<(String, CulpritKind, String)> =
            r.want.iter().map(|(id, k, n, _)| ((*id).to_owned(), *k, (*n).to_owned())).collect();
        if got != want {
            let verdicts: Vec<String> =
                findings.iter().map(|f| format!("{} {:?}", f.verdict.as_str(), f.affected)).collect();
            failures.push(format!("{}: got {got:?}, want {want:?}\n  verdicts: {verdicts:#?}", r.name));
            continue;
        }
        for (f, (_, _, _, words)) in findings.iter().zip(&r.want) {
            check_shape(f, Thresholds::default().max_affected);
            if !f.verdict.as_str().contains(words) {
                failures.push(format!("{}: verdict {:?} lacks {words:?}", r.name, f.verdict.as_str()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn only(world: &World) -> Finding {
    let findings = run(world);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    findings.into_iter().next().unwrap()
}

fn has_evidence(f: &Finding, words: &str) -> bool {
    f.evidence.iter().any(|e| e.as_str().contains(words))
}

#[test]
fn a_missing_dnat_rule_is_quoted_from_the_node_inspection() {
    let f = only(&World::healthy().dnat_missing("node-1", "tidb/demo-pd", 2379));
    assert!(has_evidence(&f, "no DNAT rule for 10.96.0.20:2379 in node-1's rules"), "{f:#?}");
    assert_eq!(f.runbook.as_ref().unwrap().as_str(), "1.6");
    assert!(f.suggestion.as_str().contains("iptables-save -t nat | grep 10.96.0.20"), "{}", f.suggestion);
    assert!(
        f.affected.iter().any(|a| a.as_str() == "tidb/demo-pd-0 -> svc/tidb/demo-pd:2379"),
        "{:?}",
        f.affected
    );
}

#[test]
fn a_missing_route_is_quoted_with_the_routes_the_node_has() {
    let f = only(&World::healthy().route_missing("node-1", "node-3"));
    assert!(has_evidence(&f, "node-1's routing table has no route covering 10.244.3.0/24"), "{f:#?}");
    assert!(has_evidence(&f, "10.244.2.0/24 via 172.29.0.12 dev eth0"), "{f:#?}");
    assert!(
        f.suggestion.as_str().contains("ip route replace 10.244.3.0/24 via 172.29.0.13"),
        "{}",
        f.suggestion
    );
}

#[test]
fn a_missing_route_shows_in_the_matrix_before_the_next_inspection() {
    // No inspection yet: node-1's own probes of node-3's pods come back unreachable while
    // node-3 reaches node-1's pods.
    let f = only(&World::healthy().route_missing("node-1", "node-3").no_inspections());
    assert_eq!(f.id.as_str(), ids::ROUTE_MISSING);
    assert_eq!(f.culprit.as_ref().unwrap().name.as_str(), "node-1→node-3");
    assert!(has_evidence(&f, "node-1's own probes of node-3's pods come back unreachable"), "{f:#?}");
}

#[test]
fn a_stale_inspection_does_not_hide_a_missing_route() {
    let f = only(&World::healthy().route_missing("node-1", "node-3").stale_routes());
    assert_eq!(f.id.as_str(), ids::ROUTE_MISSING);
    assert!(
        has_evidence(&f, "node-1's last inspection still lists `10.244.3.0/24 via 172.29.0.13 dev eth0`"),
        "{f:#?}"
    );
}

#[test]
fn a_cut_pair_with_routes_in_place_is_blamed_on_the_pair() {
    let f = only(&World::healthy().cut_pair("node-1", "node-3"));
    assert_eq!(f.id.as_str(), ids::NODE_PAIR_BROKEN);
    assert!(
        f.verdict.as_str().contains("the nodes' own addresses do not answer each other either"),
        "{}",
        f.verdict
    );
}

#[test]
fn a_down_pod_shows_its_interface_and_its_own_failures() {
    let f = only(&World::healthy().pod_down("tidb/demo-pd-1"));
    assert!(has_evidence(&f, "eth0 is DOWN in the pod's network namespace"), "{f:#?}");
    assert!(f.verdict.as_str().contains("its own probes fail too"), "{}", f.verdict);
    assert_eq!(f.severity, Severity::Critical);
    // 9 pods × (ICMP + 2 ports + 3 endpoints) + 3 nodes' ICMP + 2 MTU paths: capped.
    assert_eq!(f.affected.len(), Thresholds::default().max_affected + 1);
    assert!(f.affected.last().unwrap().as_str().starts_with("and "), "{:?}", f.affected.last());
}

#[test]
fn dns_findings_carry_the_tcp_and_nat_evidence() {
    let f = only(&World::healthy().dns_down());
    assert!(has_evidence(&f, "kube-system/coredns-0: ICMP answers"), "{f:#?}");
    assert!(has_evidence(&f, "nothing answers on port 53"), "{f:#?}");
    let f = only(&World::healthy().dns_block("node-2"));
    assert!(f.verdict.as_str().ends_with("reachable elsewhere"), "{}", f.verdict);
    assert!(has_evidence(&f, "node-2's rules DNAT 10.96.0.10:53/udp to 10.244.1.2:53"), "{f:#?}");
    let f = only(&World::healthy().dnat_missing("node-3", "kube-system/kube-dns", 53));
    assert_eq!(f.id.as_str(), ids::DNS_UNREACHABLE_FROM_NODE);
    assert!(has_evidence(&f, "no DNAT rule for 10.96.0.10:53/tcp in node-3's rules"), "{f:#?}");
}

#[test]
fn findings_are_sorted_most_severe_first_and_deterministic() {
    let world = World::healthy()
        .keepalive_all(300)
        .keepalive("tidb/demo-tikv-0", 7200)
        .idle_cut("node-1", 350)
        .loss("node-3", 0.2)
        .pod_down("tidb/demo-pd-1")
        .port_closed("tidb/demo-tidb-0", 4000);
    let findings = run(&world);
    let got = summary(&findings);
    let want = vec![
        (ids::POD_DOWN.to_owned(), CulpritKind::Pod, "tidb/demo-pd-1".to_owned()),
        (ids::PORT_REFUSED.to_owned(), CulpritKind::Port, "tidb/demo-tidb-0:4000".to_owned()),
        (ids::KEEPALIVE_EXCEEDS_IDLE_CUT.to_owned(), CulpritKind::Pod, "tidb/demo-tikv-0".to_owned()),
        (ids::NODE_PACKET_LOSS.to_owned(), CulpritKind::Node, "node-3".to_owned()),
    ];
    assert_eq!(got, want, "{findings:#?}");
    assert_eq!(run(&world), findings);
}

#[test]
fn a_fault_shows_on_its_second_failed_probe_and_clears_once_its_cells_recover() {
    let faults: Vec<(World, &str)> = vec![
        (World::healthy().pod_down("tidb/demo-pd-1"), ids::POD_DOWN),
        (World::healthy().cut_pair("node-1", "node-2"), ids::NODE_PAIR_BROKEN),
        (World::healthy().dnat_missing("node-1", "tidb/demo-pd", 2379), ids::SERVICE_PATH_BROKEN),
        (World::healthy().port_closed("tidb/demo-pd-2", 2379), ids::PORT_REFUSED),
        (World::healthy().dns_block("node-2"), ids::DNS_UNREACHABLE_FROM_NODE),
        (World::healthy().isolate("node-3"), ids::NODE_ISOLATED),
        (World::healthy().forwarding_off("node-2"), ids::NODE_FORWARDING_DISABLED),
        (World::healthy().forwarding_broken("node-2"), ids::NODE_FORWARDING_BROKEN),
    ];
    for (world, id) in faults {
        let once = run(&world.clone().just_broke(1));
        assert!(once.is_empty(), "{id} after one failed probe: {:#?}", summary(&once));
        let broke = summary(&run(&world.clone().just_broke(2)));
        assert_eq!(broke.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), vec![id], "{world:?}");
        // On the first good probe the hard verdict is gone (what is left is the cells'
        // recent failures, as degradations); once the matrix calls the cells ok again, nothing.
        let healing = run(&world.clone().just_healed(1));
        assert!(healing.iter().all(|f| f.id.as_str() != id), "{id} after healing: {:#?}", summary(&healing));
        let healed = run(&world.just_healed(crate::matrix::status::RECOVERED_STREAK as i64));
        assert!(healed.is_empty(), "{id} after healing: {:#?}", summary(&healed));
    }
}

/// A fault that ended leaves its failures in the cells' windows for a while; a second fault
/// breaking out then must be found alone. In the lab, a node pair healed and then a node cut
/// off gave a `node-packet-loss` beside the `node-isolated`, pooled from the pair's old
/// failures after stray timeouts under load; the simulator has no such strays, so this guards
/// the outcome over many pairs of faults while the mechanism is pinned where it lives
/// (`matrix::tests::counts_since_a_repair_leave_the_outage_out`, `statuses_from_results`,
/// `window::tests::a_repair_is_where_…`).
#[test]
fn a_healed_fault_does_not_swell_the_next_one() {
    let first = [
        World::healthy().cut_pair("node-1", "node-2"),
        World::healthy().loss("node-1", 0.3),
        World::healthy().isolate("node-2"),
        World::healthy().pod_down("tidb/demo-pd-0"),
    ];
    let next: Vec<(World, &str)> = vec![
        (World::healthy().isolate("node-3"), ids::NODE_ISOLATED),
        (World::healthy().pod_down("tidb/demo-pd-2"), ids::POD_DOWN),
        (World::healthy().cut_pair("node-1", "node-3"), ids::NODE_PAIR_BROKEN),
    ];
    for old in &first {
        for (new, id) in &next {
            // The first fault for seven samples, two clean samples (the cells read ok again),
            // then the second for two: itself alone. (After its first round only, a service
            // flapping through both faults' backends may still read as degraded for a round.)
            let world = old.clone().during(-5..2).then(2, new.clone().just_broke(2));
            let got = summary(&run(&world));
            assert_eq!(
                got.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
                vec![*id],
                "{old:?} then {new:?}"
            );
        }
    }
}

#[test]
fn two_pods_down_on_two_nodes_are_two_findings() {
    let world = World::healthy().pod_down("tidb/demo-pd-1").pod_down("tidb/demo-tikv-2");
    let got = summary(&run(&world));
    assert_eq!(
        got,
        vec![
            (ids::POD_DOWN.to_owned(), CulpritKind::Pod, "tidb/demo-pd-1".to_owned()),
            (ids::POD_DOWN.to_owned(), CulpritKind::Pod, "tidb/demo-tikv-2".to_owned()),
        ]
    );
}

#[test]
fn an_isolated_node_explains_its_pods_and_services() {
    // demo-discovery's only backend is on node-3: its VIP fails from everywhere, yet the only
    // finding is the node.
    let f = only(&World::healthy().isolate("node-3").silent("node-3"));
    assert!(has_evidence(&f, "node-3's agent has not been heard from recently"), "{f:#?}");
    assert!(f.verdict.as_str().contains("other nodes reach each other"), "{}", f.verdict);
}

#[test]
fn no_flaky_agent_convicts_anything() {
    for node in ["node-1", "node-2", "node-3"] {
        for share in [0.05, 0.10, 0.15] {
            // Flaky cells (always failing) and flaky results (each failing at random).
            for world in [World::healthy().flaky(node, share), World::healthy().flaky_results(node, share)] {
                let m = world.matrix();
                let cells: Vec<_> = m.pod_cells(now()).filter(|(_, s)| s.agent.as_str() == node).collect();
                let failing = cells.iter().filter(|(_, s)| s.last_outcome.is_network_failure()).count();
                let ratio = failing as f64 / cells.len() as f64;
                assert!(
                    (share * 0.5..share * 1.5).contains(&ratio),
                    "{node} {share}: {failing} of {} fail",
                    cells.len()
                );
                // Failing paths with no common cause convict nothing else; they are listed,
                // never dropped, by the one residual finding.
                let findings = diagnose(&m, &world.inspections(), &world.inventory(), now());
                // Random failures of one agent's probes may blame that node as a source, never
                // anything else.
                assert!(
                    findings.iter().all(|f| f.id.as_str() == ids::UNEXPLAINED_FAILURES
                        || (f.id.as_str().starts_with("node-sources")
                            && f.culprit.as_ref().is_some_and(|c| c.name.as_str() == node))),
                    "{node} at {share}: {:#?}",
                    summary(&findings)
                );
            }
        }
    }
}

#[test]
fn thresholds_are_the_callers() {
    // With a single required observer and failing cell, the flaky agent is still not enough to
    // convict anything cleared by working paths.
    let world = World::healthy().flaky("node-2", 0.10);
    let th = Thresholds { min_observers: 1, min_failing_cells: 1, ..Thresholds::default() };
    let findings = diagnose_with(&world.matrix(), &world.inspections(), &world.inventory(), now(), &th);
    assert!(
        findings.iter().all(|f| f.id.as_str() != ids::POD_DOWN && f.id.as_str() != ids::NODE_ISOLATED),
        "{findings:#?}"
    );
}

#[test]
fn finding_ids_are_valid_and_unique() {
    let set: std::collections::BTreeSet<&str> = ids::ALL.iter().copied().collect();
    assert_eq!(set.len(), ids::ALL.len());
    for id in ids::ALL {
        assert!(netdiag_model::FindingId::new(id).is_ok(), "{id}");
    }
}

#[test]
fn path_mtu_is_read_from_the_agents_detail() {
    let cases = [
        (
            "path MTU below the interface MTU: path MTU to 10.244.2.2 is 1400 bytes, below the route MTU 1500",
            Some(1400),
        ),
        ("path MTU to fd00::1 is 1280 bytes (or larger), below", Some(1280)),
        ("path MTU below the interface MTU", None),
        ("path MTU to 10.0.0.1 is  bytes", None),
        ("", None),
    ];
    for (text, want) in cases {
        assert_eq!(parse_path_mtu(text), want, "{text:?}");
    }
}

/// An arbitrary result for one planned probe.
fn arbitrary(source: &Source, target: &Target, kind: ProbeKind, pick: usize, at: UnixMillis) -> ProbeResult {
    let outcome = Outcome::ALL[pick % Outcome::ALL.len()];
    ProbeResult {
        source: source.clone(),
        target: target.clone(),
        kind,
        outcome,
        rtt: None,
        at,
        detail: Detail::lossy(if pick.is_multiple_of(3) {
            "path MTU to 10.0.0.1 is 99999999999999999999 bytes"
        } else {
            ""
        }),
        burst: (kind == ProbeKind::Icmp).then(|| Burst::new(10, (pick % 11) as u32).unwrap()),
        http_status: None,
        path_mtu: pick.is_multiple_of(5).then(|| PathMtu::new(1200).unwrap()),
        answers: vec![],
        nameserver: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn diagnose_never_panics_and_is_deterministic(
        picks in proptest::collection::vec(0usize..1000, 1..400),
        stale in proptest::collection::vec(any::<bool>(), 3),
        keepalive in "[0-9a-z ]{0,12}",
    ) {
        let world = World::healthy();
        let inv = world.inventory();
        let index = InventoryIndex::new(&inv);
        let mut m = Matrix::default();
        for (n, (agent, source, target, kind)) in sim::plan(&inv).into_iter().enumerate() {
            let pick = picks[n % picks.len()].wrapping_mul(n + 1);
            let silent = stale[n % 3];
            let at = UnixMillis::new(now().get() - if silent { 40_000 } else { 5_000 }).unwrap();
            m.record(&agent, &arbitrary(&source, &target, kind, pick, at), &index, at);
        }
        let mut inspections = world.inspections();
        for (_, report) in inspections.values_mut() {
            for s in &mut report.sysctls {
                s.value = netdiag_model::text::Text::lossy(&keepalive);
            }
        }
        let a = diagnose(&m, &inspections, &inv, now());
        let b = diagnose(&m, &inspections, &inv, now());
        prop_assert_eq!(&a, &b);
        for w in a.windows(2) {
            prop_assert!(w[0].severity >= w[1].severity);
        }
        // Without inspections, only the matrix speaks.
        let bare = diagnose(&m, &BTreeMap::new(), &inv, now());
        prop_assert!(bare.iter().all(|f| !f.id.as_str().starts_with("keepalive")));
    }
}

#[test]
fn a_wrong_neighbour_entry_nothing_fails_through_is_left_alone() {
    // node-2 holds node-1's address with a MAC node-1 does not have, but every path works (a
    // VRRP-like answer, an entry no route uses): the entry alone convicts nobody.
    let world = World::healthy();
    let mut inspections = world.inspections();
    let (_, report) = inspections.get_mut(&Source::Node(sim::node("node-2"))).unwrap();
    let entry = report.neighbours.iter_mut().find(|n| n.ip.to_string() == "172.29.0.11").unwrap();
    entry.lladdr = Some("02:00:00:de:ad:01".parse().unwrap());
    assert_eq!(diagnose(&world.matrix(), &inspections, &world.inventory(), now()), vec![]);

    // The same entry with node-1's paths failing is named, and every bad cell is claimed.
    let broken = World::healthy().wrong_neighbour("node-2", "node-1");
    let findings = diagnose(&broken.matrix(), &inspections, &broken.inventory(), now());
    assert_eq!(
        summary(&findings),
        vec![(ids::NEIGHBOUR_MISMATCH.to_owned(), CulpritKind::NodePair, "node-2→node-1".to_owned())]
    );
    assert!(findings[0].evidence.iter().any(|e| e.as_str().contains("lladdr 02:00:00:de:ad:01 REACHABLE")));
}
