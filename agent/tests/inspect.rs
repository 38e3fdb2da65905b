//! The agent's inspections against the lab: a node's report must list every Service frontend
//! with exactly the DNAT targets the lab's kube-proxy rules implement (`expected_nat`), in both
//! proxy modes and both families, and follow injected faults; a pod's report must show its
//! interface, route, sysctls and resolv.conf as the lab set them up, and follow faults too.
//!
//! Needs root, `ip`, `iptables` and `nft`, like `tests/tests/lab.rs`. Each test builds its own
//! lab (unique names), so they run in parallel. `--nocapture` prints how long inspections take.

// Helpers here panic on purpose: a panic is how a test reports what it found.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use netdiag_agent::inspect::{self, InspectScope, changed};
use netdiag_agent::source::SourceNs;
use netdiag_lab::plan::{LabPlan, NodePlan, resolv_conf_path};
use netdiag_lab::rules::{ExpectedNat, Family, Frontend, NatOutcome, expected_nat};
use netdiag_model::inspect::{InspectionReport, NatService};
use netdiag_model::inventory::ProxyMode;
use netdiag_model::probe::Source;
use netdiag_tests::lab::TestLab;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn nftables(yaml: String) -> String {
    yaml.replace("proxy_mode: iptables", "proxy_mode: nftables")
}

fn dual_stack(yaml: String) -> String {
    yaml.replace("ipv6: false", "ipv6: true")
}

fn node_source(lab: &TestLab, node: &str) -> SourceNs {
    let n = lab.node(node);
    SourceNs::enter(Source::Node(n.name.clone()), &LabPlan::netns_path(&n.netns), None).unwrap()
}

fn pod_source(lab: &TestLab, pod: &str) -> SourceNs {
    let p = lab.pod(pod);
    let resolv = resolv_conf_path(&lab.state.dir, &p.pod);
    SourceNs::enter(Source::Pod(p.pod.clone()), &LabPlan::netns_path(&p.netns), Some(resolv)).unwrap()
}

/// Inspects and prints how long it took.
async fn timed(src: &SourceNs, scope: InspectScope) -> InspectionReport {
    let start = Instant::now();
    let report = inspect::inspect(src, scope).await;
    eprintln!("inspecting {} took {:?}", src.source(), start.elapsed());
    report
}

fn family_of(s: &NatService) -> Family {
    match s.vip.or_else(|| s.targets.first().map(|t| t.ip)) {
        Some(IpAddr::V6(_)) => Family::V6,
        _ => Family::V4,
    }
}

/// One line per frontend, targets sorted; node ports matching every local address written with
/// the node's address in `family`.
fn report_lines(report: &InspectionReport, node: &NodePlan, family: Family) -> BTreeSet<String> {
    let node_ip = match family {
        Family::V4 => IpAddr::V4(node.ip),
        Family::V6 => IpAddr::V6(node.ip_v6.unwrap()),
    };
    report
        .nat_services
        .iter()
        .filter(|s| family_of(s) == family)
        .map(|s| {
            let kind = if s.node_port { "nodeport" } else { "service" };
            let name = s.service.as_ref().map_or_else(|| "?".to_owned(), ToString::to_string);
            let mut targets: Vec<String> =
                s.targets.iter().map(|t| SocketAddr::new(t.ip, t.port.get()).to_string()).collect();
            targets.sort();
            let dest = SocketAddr::new(s.vip.unwrap_or(node_ip), s.port.get());
            format!("{kind} {} {dest} {name} -> {}", s.protocol, targets.join(" "))
        })
        .collect()
}

fn expected_lines(expected: &[ExpectedNat]) -> BTreeSet<String> {
    expected
        .iter()
        .map(|e| {
            let kind = match e.frontend {
                Frontend::ClusterIp => "service",
                Frontend::NodePort => "nodeport",
            };
            let name = match &e.port_name {
                Some(p) => format!("{}:{p}", e.service),
                None => e.service.to_string(),
            };
            let mut targets: Vec<String> = match &e.outcome {
                NatOutcome::Dnat(eps) => eps.iter().map(ToString::to_string).collect(),
                NatOutcome::Reject | NatOutcome::Drop => Vec::new(),
            };
            targets.sort();
            format!("{kind} {} {} {name} -> {}", e.protocol, e.destination(), targets.join(" "))
        })
        .collect()
}

/// Every node of `lab` reports exactly the lab's expected NAT table, in every family the lab has.
fn nodes_report_the_expected_nat(lab: &TestLab, mode: ProxyMode) {
    runtime().block_on(async {
        for node in &lab.plan.nodes {
            let src = node_source(lab, node.name.as_str());
            let report = timed(&src, InspectScope::Node).await;
            assert!(report.errors.is_empty(), "{}: {:?}", node.name, report.errors);
            assert_eq!(report.proxy_mode, Some(mode), "{}", node.name);
            assert_eq!(report.resolv_conf, None, "a node source without resolv.conf reports none");
            for family in Family::ALL {
                let expected = expected_nat(&lab.plan, node, family);
                if family == Family::V6 && node.ip_v6.is_none() {
                    assert!(expected.is_empty());
                    continue;
                }
                assert!(!expected.is_empty(), "the lab has services in {family}");
                assert_eq!(
                    report_lines(&report, node, family),
                    expected_lines(&expected),
                    "{} {family}",
                    node.name
                );
            }
            assert!(
                report.nat_services.iter().flat_map(|s| &s.targets).all(|t| t.chain.is_some()),
                "every target names the chain it came from"
            );
            assert_eq!(report.nat_rules, vec![], "{}: kube-proxy's NAT is no hand-made rule", node.name);
        }
    });
}

fn sh_in(netns: &str, args: &[&str]) {
    let status = std::process::Command::new("ip").args(["netns", "exec", netns]).args(args).status().unwrap();
    assert!(status.success(), "{args:?} in {netns}");
}

/// NAT rules written by hand outside kube-proxy's chains — iptables on a node, an nftables
/// table of the node's own, iptables inside a pod — are reported by the inspection of that
/// namespace, quoted as `iptables -t nat -S` (or `nft -a list`) shows them, and the report
/// changes when they come and go.
#[test]
fn hand_made_nat_rules_are_read_on_nodes_and_in_pods() {
    let lab = TestLab::up();
    runtime().block_on(async {
        let node2 = node_source(&lab, "node-2");
        let before = timed(&node2, InspectScope::Node).await;
        let netns = lab.node("node-2").netns.clone();
        let dnat = ["-d", "10.244.1.3/32", "-p", "tcp", "-m", "tcp", "--dport", "2379", "-j", "DNAT", "--to-destination", "10.244.1.99:2379"];
        sh_in(&netns, &[&["iptables", "-t", "nat", "-I", "PREROUTING"][..], &dnat].concat());
        sh_in(&netns, &["nft", "add", "table", "inet", "admin"]);
        sh_in(&netns, &["nft", "add", "chain", "inet", "admin", "post", "{ type nat hook postrouting priority srcnat ; }"]);
        sh_in(&netns, &["nft", "add", "rule", "inet", "admin", "post", "ip", "saddr", "10.244.2.0/24", "snat", "ip", "to", "172.29.0.99"]);
        let after = timed(&node2, InspectScope::Node).await;
        let rules: Vec<&str> = after.nat_rules.iter().map(|r| r.rule.as_str()).collect();
        assert_eq!(rules.len(), 2, "{rules:?}");
        assert_eq!(
            rules[0],
            "-A PREROUTING -d 10.244.1.3/32 -p tcp -m tcp --dport 2379 -j DNAT --to-destination 10.244.1.99:2379"
        );
        assert!(!after.nat_rules[0].after_kube_proxy, "inserted before kube-proxy's jump");
        assert!(rules[1].starts_with("nft inet admin post (postrouting): ip saddr 10.244.2.0/24 snat ip to 172.29.0.99 # handle "), "{}", rules[1]);
        assert!(changed(&before, &after));
        sh_in(&netns, &[&["iptables", "-t", "nat", "-D", "PREROUTING"][..], &dnat].concat());
        sh_in(&netns, &["nft", "delete", "table", "inet", "admin"]);
        assert_eq!(inspect::inspect(&node2, InspectScope::Node).await.nat_rules, vec![]);

        let pod = pod_source(&lab, "tidb/demo-tidb-0");
        let pod_netns = lab.pod("tidb/demo-tidb-0").netns.clone();
        let redirect = ["-p", "tcp", "--dport", "2379", "-j", "REDIRECT", "--to-ports", "15001"];
        sh_in(&pod_netns, &[&["iptables", "-t", "nat", "-A", "OUTPUT"][..], &redirect].concat());
        let report = timed(&pod, InspectScope::Pod).await;
        let rules: Vec<String> = report.nat_rules.iter().map(|r| format!("{} {}", r.hook, r.action)).collect();
        assert_eq!(rules, vec!["OUTPUT to itself, port 15001"], "{:?}", report.errors);
        sh_in(&pod_netns, &[&["iptables", "-t", "nat", "-D", "OUTPUT"][..], &redirect].concat());
    });
}

#[test]
fn nodes_in_the_iptables_lab_report_exactly_the_expected_nat() {
    let lab = TestLab::up();
    nodes_report_the_expected_nat(&lab, ProxyMode::Iptables);
}

#[test]
fn nodes_in_the_nftables_lab_report_exactly_the_expected_nat() {
    let lab = TestLab::with(nftables);
    nodes_report_the_expected_nat(&lab, ProxyMode::Nftables);
}

#[test]
fn dual_stack_nodes_report_both_families_in_both_modes() {
    let lab = TestLab::with(dual_stack);
    nodes_report_the_expected_nat(&lab, ProxyMode::Iptables);
    drop(lab);
    let lab = TestLab::with(|t| nftables(dual_stack(t)));
    nodes_report_the_expected_nat(&lab, ProxyMode::Nftables);
}

fn has_demo_pd(report: &InspectionReport) -> bool {
    let vip: IpAddr = "10.96.0.20".parse().unwrap();
    report.nat_services.iter().any(|s| s.vip == Some(vip) && s.port.get() == 2379 && !s.targets.is_empty())
}

/// After `dnat-missing node-1 tidb/demo-pd:2379`, node-1's report lacks the frontend and says
/// it changed; node-2's still has it.
fn a_missing_dnat_shows_on_that_node_only(lab: &TestLab) {
    runtime().block_on(async {
        let (node1, node2) = (node_source(lab, "node-1"), node_source(lab, "node-2"));
        let before = timed(&node1, InspectScope::Node).await;
        assert!(has_demo_pd(&before));
        let again = inspect::inspect(&node1, InspectScope::Node).await;
        assert!(!changed(&before, &again), "an unchanged node reports no change");

        lab.fault("dnat-missing node-1 tidb/demo-pd:2379");
        let after = inspect::inspect(&node1, InspectScope::Node).await;
        assert!(!has_demo_pd(&after), "node-1 still lists demo-pd:2379: {:?}", after.nat_services);
        assert!(changed(&before, &after));
        assert!(has_demo_pd(&inspect::inspect(&node2, InspectScope::Node).await), "node-2 keeps it");
        // The rest of node-1's table is intact.
        assert_eq!(after.nat_services.len(), before.nat_services.len() - 1);
    });
}

#[test]
fn a_missing_dnat_rule_shows_on_that_node_only_in_iptables_mode() {
    a_missing_dnat_shows_on_that_node_only(&TestLab::up());
}

#[test]
fn a_missing_dnat_rule_shows_on_that_node_only_in_nftables_mode() {
    a_missing_dnat_shows_on_that_node_only(&TestLab::with(nftables));
}

fn sysctl<'r>(report: &'r InspectionReport, key: &str) -> &'r str {
    let s = report.sysctls.iter().find(|s| s.key.as_str() == key);
    s.unwrap_or_else(|| panic!("no sysctl {key} in {:?}", report.sysctls)).value.as_str()
}

#[test]
fn a_pods_report_shows_its_interface_route_sysctls_and_resolv_conf() {
    let lab = TestLab::up();
    let pod = lab.pod("tidb/demo-tikv-0").clone();
    runtime().block_on(async {
        let src = pod_source(&lab, "tidb/demo-tikv-0");
        let report = timed(&src, InspectScope::Pod).await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.source, Source::Pod(pod.pod.clone()));
        assert!(report.nat_services.is_empty() && report.proxy_mode.is_none(), "a pod has no NAT part");

        let eth0 = report.links.iter().find(|l| l.name.as_str() == "eth0").expect("eth0");
        assert!(eth0.up);
        assert_eq!(eth0.mtu, pod.mtu);
        assert_eq!(eth0.kind.as_ref().map(|k| k.as_str()), Some("veth"));
        let own: ipnet::IpNet = format!("{}/32", pod.ip).parse().unwrap();
        assert!(eth0.addresses.contains(&own), "{:?}", eth0.addresses);
        let lo = report.links.iter().find(|l| l.name.as_str() == "lo").expect("lo");
        assert!(lo.up && lo.kind.is_none());

        let default =
            report.routes.iter().find(|r| r.destination.prefix_len() == 0 && r.destination.addr().is_ipv4());
        let default = default.unwrap_or_else(|| panic!("no default route in {:?}", report.routes));
        assert_eq!(default.gateway, Some("169.254.1.1".parse().unwrap()));
        assert_eq!(default.device.as_ref().map(|d| d.as_str()), Some("eth0"));
        assert_eq!(default.table, 254);

        assert_eq!(sysctl(&report, "net.ipv4.tcp_keepalive_time"), "7200");
        for key in [
            "net.ipv4.ip_forward",
            "net.ipv4.conf.all.rp_filter",
            "net.ipv4.tcp_keepalive_intvl",
            "net.ipv4.tcp_keepalive_probes",
        ] {
            sysctl(&report, key);
        }
        let resolv = report.resolv_conf.as_ref().expect("the lab writes every pod's resolv.conf");
        assert_eq!(resolv.nameservers, [IpAddr::V4(lab.plan.dns_ip)]);
        assert_eq!(resolv.ndots, 5);
        assert_eq!(resolv.search.first().map(ToString::to_string).as_deref(), Some("tidb.svc.cluster.local"));

        lab.fault("keepalive tidb/demo-tikv-0 300");
        let after = inspect::inspect(&src, InspectScope::Pod).await;
        assert_eq!(sysctl(&after, "net.ipv4.tcp_keepalive_time"), "300");
        assert!(changed(&report, &after));
        // Read in each pod's own namespace: another pod keeps the default.
        let other = inspect::inspect(&pod_source(&lab, "tidb/demo-pd-0"), InspectScope::Pod).await;
        assert_eq!(sysctl(&other, "net.ipv4.tcp_keepalive_time"), "7200");
    });
}

#[test]
fn a_pod_whose_interface_is_down_reports_it_down() {
    let lab = TestLab::up();
    runtime().block_on(async {
        let src = pod_source(&lab, "tidb/demo-pd-1");
        let before = inspect::inspect(&src, InspectScope::Pod).await;
        lab.fault("pod-down tidb/demo-pd-1");
        let after = inspect::inspect(&src, InspectScope::Pod).await;
        assert!(after.errors.is_empty(), "{:?}", after.errors);
        let eth0 = after.links.iter().find(|l| l.name.as_str() == "eth0").expect("eth0 is still there");
        assert!(!eth0.up, "{eth0:?}");
        assert!(changed(&before, &after));
        assert!(
            !after.routes.iter().any(|r| r.destination.prefix_len() == 0),
            "a down link takes its default route with it: {:?}",
            after.routes
        );
    });
}

#[test]
fn inspecting_a_node_takes_well_under_a_second() {
    let lab = TestLab::up();
    runtime().block_on(async {
        let src = node_source(&lab, "node-1");
        inspect::inspect(&src, InspectScope::Node).await;
        let mut times = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            let report = inspect::inspect(&src, InspectScope::Node).await;
            times.push(start.elapsed());
            assert!(report.errors.is_empty(), "{:?}", report.errors);
        }
        times.sort();
        eprintln!("node inspection: min {:?}, median {:?}, max {:?}", times[0], times[2], times[4]);
        assert!(times[2] < Duration::from_secs(1), "{times:?}");
    });
}

/// A drop rule written by hand in a node's firewall (not a lab fault) shows in that node's
/// report, with its hook, protocol and port; a partial drop (a random share) does not.
#[test]
fn a_hand_made_drop_rule_shows_in_the_nodes_report() {
    let lab = TestLab::up();
    let netns = lab.node("node-2").netns.clone();
    let iptables = |args: &[&str]| {
        let status = std::process::Command::new("ip")
            .args(["netns", "exec", &netns, "iptables"])
            .args(args)
            .status()
            .expect("ip netns exec iptables");
        assert!(status.success(), "iptables {args:?}");
    };
    runtime().block_on(async {
        let src = node_source(&lab, "node-2");
        let before = inspect::inspect(&src, InspectScope::Node).await;
        assert!(
            before.filter_drops.iter().all(|d| !d.rule.as_str().contains("20160")),
            "{:?}",
            before.filter_drops
        );
        iptables(&["-I", "FORWARD", "-p", "tcp", "--dport", "20160", "-j", "DROP"]);
        iptables(&[
            "-I",
            "FORWARD",
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            "0.5",
            "-j",
            "DROP",
        ]);
        let after = inspect::inspect(&src, InspectScope::Node).await;
        assert!(changed(&before, &after), "a new drop rule is a change worth sending");
        let drop = after
            .filter_drops
            .iter()
            .find(|d| d.rule.as_str().contains("20160"))
            .unwrap_or_else(|| panic!("no drop rule for 20160 in {:?}", after.filter_drops));
        assert_eq!(drop.hook, netdiag_model::inspect::FilterHook::Forward);
        assert_eq!(drop.protocol, Some(netdiag_model::inspect::FilterProtocol::Tcp));
        assert_eq!(drop.destination_ports.len(), 1);
        assert_eq!(drop.destination_ports[0].first.get(), 20160);
        assert!(
            after.filter_drops.iter().all(|d| !d.rule.as_str().contains("statistic")),
            "{:?}",
            after.filter_drops
        );
        let other = inspect::inspect(&node_source(&lab, "node-1"), InspectScope::Node).await;
        assert!(
            other.filter_drops.iter().all(|d| !d.rule.as_str().contains("20160")),
            "node-1 has no such rule"
        );
    });
}

/// Policy routing on record: a rule and a table of its own, read as `ip rule` and `ip route
/// show table 100` print them, and a change worth sending.
#[test]
fn a_hand_made_routing_rule_and_its_table_show_in_the_nodes_report() {
    let lab = TestLab::up();
    let netns = lab.node("node-1").netns.clone();
    let ip = |args: &[&str]| {
        let status = std::process::Command::new("ip")
            .args(["netns", "exec", &netns, "ip"])
            .args(args)
            .status()
            .expect("ip netns exec ip");
        assert!(status.success(), "ip {args:?}");
    };
    runtime().block_on(async {
        let src = node_source(&lab, "node-1");
        let before = inspect::inspect(&src, InspectScope::Node).await;
        let lines: Vec<String> = before.rules.iter().map(ToString::to_string).collect();
        assert!(
            lines.contains(&"32766: from all lookup main".to_owned()),
            "the kernel's own rules: {lines:?}"
        );
        assert!(before.routes.iter().all(|r| r.table != 255), "the local table is left out");
        ip(&["route", "add", "blackhole", "10.99.0.0/16", "table", "100"]);
        ip(&["rule", "add", "to", "10.244.3.0/24", "prohibit", "pref", "100"]);
        ip(&["rule", "add", "from", "10.244.1.0/24", "lookup", "100", "pref", "101"]);
        let after = inspect::inspect(&src, InspectScope::Node).await;
        assert!(changed(&before, &after), "a new rule is a change worth sending");
        let lines: Vec<String> = after.rules.iter().map(ToString::to_string).collect();
        assert!(lines.contains(&"100: from all to 10.244.3.0/24 prohibit".to_owned()), "{lines:?}");
        assert!(lines.contains(&"101: from 10.244.1.0/24 lookup 100".to_owned()), "{lines:?}");
        assert!(
            after.routes.iter().any(|r| r.table == 100
                && r.destination.to_string() == "10.99.0.0/16"
                && r.device.is_none()
                && r.gateway.is_none()),
            "table 100's blackhole: {:?}",
            after.routes.iter().filter(|r| r.table == 100).collect::<Vec<_>>()
        );
    });
}
