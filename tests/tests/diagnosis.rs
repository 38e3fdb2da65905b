//! The whole system on the lab: collector and agents running, each lab fault injected in turn.
//! The right finding (culprit type and name) must appear within 3 probe intervals and clear
//! within 3 intervals after `heal`; with no fault the diagnosis stays empty the whole time.
//!
//! Needs root (the lab). One cluster per test; faults run one after another on it.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use netdiag_model::finding::CulpritKind;
use netdiag_tests::cluster::{LabCluster, describe_findings};

const INTERVAL: Duration = Duration::from_secs(2);

/// The bound the issue sets: three probe intervals (plus the batching delay).
fn three_intervals() -> Duration {
    INTERVAL * 3 + Duration::from_millis(700)
}

struct Case {
    fault: &'static str,
    id: &'static str,
    culprit: CulpritKind,
    /// A fragment the culprit's name must contain.
    name: &'static str,
}

fn run_cases(cases: &[Case]) {
    let c = LabCluster::up(INTERVAL);
    c.warm_up();
    let healthy = c.diagnosis();
    assert!(
        healthy.findings.is_empty(),
        "findings on a healthy lab:\n  {}",
        describe_findings(&healthy.findings)
    );
    let mut report = Vec::new();
    for case in cases {
        c.lab.fault(case.fault);
        let found = c.wait_for(three_intervals(), |c| {
            let d = c.diagnosis();
            d.findings
                .iter()
                .find(|f| {
                    f.id.as_str() == case.id
                        && f.culprit
                            .as_ref()
                            .is_some_and(|cu| cu.kind == case.culprit && cu.name.as_str().contains(case.name))
                })
                .cloned()
        });
        let Some((finding, took)) = found else {
            panic!(
                "fault `{}`: no finding {} [{} ~{}] within {:?}; findings now:\n  {}",
                case.fault,
                case.id,
                case.culprit,
                case.name,
                three_intervals(),
                describe_findings(&c.diagnosis().findings)
            );
        };
        assert!(!finding.evidence.is_empty(), "{}: a finding without evidence", case.fault);
        c.lab.heal();
        let cleared = c.wait_for(three_intervals(), |c| c.diagnosis().findings.is_empty().then_some(()));
        let Some(((), cleared_in)) = cleared else {
            panic!(
                "fault `{}` healed but findings remain after {:?}:\n  {}",
                case.fault,
                three_intervals(),
                describe_findings(&c.diagnosis().findings)
            );
        };
        report.push(format!(
            "{:<40} found in {:>5.1}s, cleared in {:>5.1}s",
            case.fault,
            took.as_secs_f64(),
            cleared_in.as_secs_f64()
        ));
    }
    println!("{}", report.join("\n"));
}

#[test]
fn healthy_lab_has_no_finding_for_the_whole_test() {
    let c = LabCluster::up(INTERVAL);
    c.warm_up();
    for _ in 0..20 {
        let d = c.diagnosis();
        assert!(d.findings.is_empty(), "findings on a healthy lab:\n  {}", describe_findings(&d.findings));
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn pod_and_port_faults_are_localized() {
    run_cases(&[
        Case {
            fault: "pod-down tidb/demo-pd-1",
            id: "pod-down",
            culprit: CulpritKind::Pod,
            name: "tidb/demo-pd-1",
        },
        Case {
            fault: "port-closed tidb/demo-pd-2 2379",
            id: "port-refused",
            culprit: CulpritKind::Port,
            name: "demo-pd-2",
        },
        Case {
            fault: "port-drop tidb/demo-tikv-0 20160",
            // The lab drops it by a rule in the pod's own table, on record: the rule is named.
            id: "firewall-drop",
            culprit: CulpritKind::Port,
            name: "demo-tikv-0",
        },
    ]);
}

#[test]
fn node_faults_are_localized() {
    run_cases(&[
        Case {
            fault: "node-pair node-1 node-2",
            id: "node-pair-broken",
            culprit: CulpritKind::NodePair,
            name: "node-1",
        },
        Case {
            fault: "node-isolate node-3",
            id: "node-isolated",
            culprit: CulpritKind::Node,
            name: "node-3",
        },
        Case {
            fault: "route-missing node-1 node-3",
            id: "route-missing",
            culprit: CulpritKind::NodePair,
            name: "node-3",
        },
        Case { fault: "mtu node-2 1200", id: "mtu-blackhole", culprit: CulpritKind::Node, name: "node-2" },
        Case { fault: "loss node-3 30", id: "node-packet-loss", culprit: CulpritKind::Node, name: "node-3" },
        // The symptoms scatter over node-2's pods, ports and pairs; its inspection says why.
        Case {
            fault: "forwarding-off node-2",
            id: "node-forwarding-disabled",
            culprit: CulpritKind::Node,
            name: "node-2",
        },
        // Connection tracking on node-2 forgets idle flows after 30 s; pods keep the default
        // 7200 s keepalive (runbook 2.3).
        Case {
            fault: "idle-cut node-2 30",
            id: "keepalive-exceeds-idle-cut",
            culprit: CulpritKind::Pod,
            name: "tidb/demo-pd-1",
        },
    ]);
}

#[test]
fn service_and_dns_faults_are_localized() {
    run_cases(&[
        Case {
            fault: "dnat-missing node-1 tidb/demo-pd:2379",
            id: "service-path-broken",
            culprit: CulpritKind::Path,
            name: "node-1",
        },
        Case {
            fault: "dns-block node-2",
            id: "dns-unreachable-from-node",
            culprit: CulpritKind::Dns,
            name: "node-2",
        },
        Case { fault: "dns-down", id: "dns-down", culprit: CulpritKind::Dns, name: "10.96.0.10" },
        Case { fault: "dns-servfail", id: "dns-servfail", culprit: CulpritKind::Dns, name: "10.96.0.10" },
    ]);
}

/// Faults no runbook rule was written for: the class layer finds them (a filter singling out
/// one group of sources, a one-way path-MTU black hole, DNS losing a share of queries).
#[test]
fn failure_classes_without_a_rule_are_localized() {
    run_cases(&[
        Case {
            fault: "pod-filter tidb/demo-pd-0 node/node-2",
            id: "source-group-unreachable",
            culprit: CulpritKind::Pod,
            name: "tidb/demo-pd-0 from node node-2",
        },
        // The lab writes this filter inside tikv-1's own namespace (one rule: kube-system holds
        // one pod), and tikv-1's inspection carries it: the cause on record, not the class.
        Case {
            fault: "pod-filter tidb/demo-tikv-1 namespace/kube-system",
            id: "firewall-drop",
            culprit: CulpritKind::Pod,
            name: "tidb/demo-tikv-1",
        },
        // One way only: an echo's reply is as large as its request, so both directions'
        // probes fail and the verdict says "through" the node.
        Case {
            fault: "mtu node-3 1200 --direction in",
            id: "mtu-blackhole",
            culprit: CulpritKind::Node,
            name: "node-3",
        },
        Case {
            fault: "mtu node-2 1200 --direction out",
            id: "mtu-blackhole",
            culprit: CulpritKind::Node,
            name: "node-2",
        },
        Case { fault: "dns-loss 40", id: "dns-degraded", culprit: CulpritKind::Dns, name: "cluster DNS" },
    ]);
}

/// 30 % loss on the packets entering node-3: the finding reads the per-packet loss since the
/// fault began (25–35 %), not a per-probe figure diluted by the samples before it.
#[test]
fn packet_loss_reads_its_true_magnitude() {
    let c = LabCluster::up(INTERVAL);
    c.warm_up();
    std::thread::sleep(INTERVAL * 5);
    c.lab.fault("loss node-3 30 --direction in");
    let percent = |f: &netdiag_model::finding::Finding| -> Option<f64> {
        let v = f.verdict.as_str();
        let at = v.find("% of")?;
        let digits: String = v[..at]
            .chars()
            .rev()
            .take_while(|ch| ch.is_ascii_digit())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        digits.parse().ok()
    };
    let found = c.wait_for(INTERVAL * 8, |c| {
        c.diagnosis().findings.into_iter().find(|f| {
            f.id.as_str().ends_with("packet-loss")
                && f.culprit.as_ref().is_some_and(|cu| cu.name.as_str() == "node-3")
        })
    });
    let Some((_, took)) = found else {
        panic!(
            "no packet-loss finding on node-3; findings now:\n  {}",
            describe_findings(&c.diagnosis().findings)
        );
    };
    // Read the magnitude once the fault has a few intervals of its own.
    std::thread::sleep((INTERVAL * 4).saturating_sub(took));
    let d = c.diagnosis();
    let f = d
        .findings
        .iter()
        .find(|f| {
            f.id.as_str().ends_with("packet-loss")
                && f.culprit.as_ref().is_some_and(|cu| cu.name.as_str() == "node-3")
        })
        .unwrap_or_else(|| panic!("the finding went away:\n  {}", describe_findings(&d.findings)));
    let p = percent(f).unwrap_or_else(|| panic!("no magnitude in {}", f.verdict));
    println!("loss node-3 30% in: found in {:.1}s, reads {p}% — {}", took.as_secs_f64(), f.verdict);
    assert!((25.0..=35.0).contains(&p), "30% loss reads {p}%: {}", f.verdict);
}

/// Runs `iptables <args>` inside node `node`'s namespace: a fault made by hand, as a user
/// would, not through the lab.
fn hand_made_fault_is_named_alone(
    c: &LabCluster,
    node: &str,
    make: &[&[&str]],
    undo: &[&[&str]],
    id: &str,
    words: &str,
) {
    let netns = c.lab.node(node).netns.clone();
    hand_made_fault_is_named(c, &netns, make, undo, (id, CulpritKind::Node, node), words);
}

/// Makes a fault by hand with `make` in `netns`, waits for exactly one finding — `id` on
/// `culprit`, its verdict saying `words` — then undoes it with `undo` and waits for none.
fn hand_made_fault_is_named(
    c: &LabCluster,
    netns: &str,
    make: &[&[&str]],
    undo: &[&[&str]],
    (id, kind, name): (&str, CulpritKind, &str),
    words: &str,
) {
    let run = |commands: &[&[&str]]| commands.iter().for_each(|args| sh_in(netns, args));
    run(make);
    let found = c.wait_for(three_intervals() + Duration::from_secs(3), |c| {
        let d = c.diagnosis();
        let named = d.findings.iter().any(|f| {
            f.id.as_str() == id
                && f.culprit.as_ref().is_some_and(|cu| cu.kind == kind && cu.name.as_str() == name)
                && f.verdict.as_str().contains(words)
        });
        (named && d.findings.len() == 1).then_some(())
    });
    let Some(((), took)) = found else {
        run(undo);
        panic!(
            "{make:?} in {netns}: no lone {id}; findings now:\n  {}",
            describe_findings(&c.diagnosis().findings)
        );
    };
    eprintln!("{make:?}: {id} alone in {took:?}");
    run(undo);
    let cleared = c.wait_for(three_intervals(), |c| c.diagnosis().findings.is_empty().then_some(()));
    assert!(cleared.is_some(), "undone, findings remain:\n  {}", describe_findings(&c.diagnosis().findings));
}

/// Faults made by hand with plain `iptables` in node-2's namespace, whose symptoms scatter
/// over other components: a drop rule for TCP port 20160 forwarded through node-2 (tikv-1's
/// port from everywhere, and node-2's pods reaching any tikv) is named as node-2's firewall,
/// quoting the rule; a rule dropping everything forwarded (node-2 forwards nothing for its pods,
/// while it still reaches them and answers for itself) as node-2's forwarding, the rule quoted;
/// a FORWARD policy of DROP (new connections die, pings ride their conntrack entries) as
/// node-2's firewall, the policy quoted; a reject inside a pod as the pod's firewall.
#[test]
fn hand_made_firewall_faults_are_named_once() {
    let c = LabCluster::up(INTERVAL);
    c.warm_up();
    let rule = ["iptables", "FORWARD", "-p", "tcp", "--dport", "20160", "-j", "DROP"];
    let with = |verb: &'static str| -> Vec<&str> {
        let mut v = rule.to_vec();
        v.insert(1, verb);
        v
    };
    hand_made_fault_is_named_alone(
        &c,
        "node-2",
        &[&with("-I")],
        &[&with("-D")],
        "firewall-drop",
        "--dport 20160",
    );
    hand_made_fault_is_named_alone(
        &c,
        "node-2",
        &[&["iptables", "-I", "FORWARD", "-j", "DROP"]],
        &[&["iptables", "-D", "FORWARD", "-j", "DROP"]],
        "node-forwarding-broken",
        "forwards nothing",
    );
    hand_made_fault_is_named_alone(
        &c,
        "node-2",
        &[&["iptables", "-P", "FORWARD", "DROP"]],
        &[&["iptables", "-P", "FORWARD", "ACCEPT"]],
        "firewall-drop",
        "policy DROP",
    );
    // Inside a pod: a reject with resets reads as a closed port on the wire; the pod's own
    // table says it is a rule, not an app that stopped listening.
    let reject = [
        "iptables",
        "-I",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        "20160",
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ];
    let mut unreject = reject.to_vec();
    unreject[1] = "-D";
    hand_made_fault_is_named(
        &c,
        &c.lab.pod("tidb/demo-tikv-1").netns,
        &[&reject],
        &[&unreject],
        ("firewall-drop", CulpritKind::Port, "tidb/demo-tikv-1:20160"),
        "rejects",
    );
}

/// Stateless rules drop replies as well as requests, which scatters their symptoms further:
/// node-2 dropping what node-1's pods send through it (node-2's pods' replies to node-1's die
/// too: the pair looked broken), node-3 dropping ICMP to itself (its own pings' replies: its
/// sources looked lossy), the DNS pod's own firewall dropping queries over UDP (DNS looked
/// down), a pod's own firewall dropping TCP to the service CIDR. Each is one `firewall-drop`
/// quoting the rule.
#[test]
fn hand_made_stateless_drops_are_named_once() {
    let c = LabCluster::up(INTERVAL);
    c.warm_up();
    let cidr = c.lab.node("node-1").pod_cidr.to_string();
    hand_made_fault_is_named_alone(
        &c,
        "node-2",
        &[&["iptables", "-I", "FORWARD", "-s", &cidr, "-j", "DROP"]],
        &[&["iptables", "-D", "FORWARD", "-s", &cidr, "-j", "DROP"]],
        "firewall-drop",
        &format!("-s {cidr} -j DROP"),
    );
    hand_made_fault_is_named_alone(
        &c,
        "node-3",
        &[&["iptables", "-I", "INPUT", "-p", "icmp", "-j", "DROP"]],
        &[&["iptables", "-D", "INPUT", "-p", "icmp", "-j", "DROP"]],
        "firewall-drop",
        "INPUT: -p icmp -j DROP",
    );
    let udp = ["iptables", "-I", "INPUT", "-p", "udp", "--dport", "53", "-j", "DROP"];
    let mut unudp = udp.to_vec();
    unudp[1] = "-D";
    hand_made_fault_is_named(
        &c,
        &c.lab.pod("kube-system/coredns-0").netns,
        &[&udp],
        &[&unudp],
        ("firewall-drop", CulpritKind::Port, "kube-system/coredns-0:53"),
        "--dport 53 -j DROP",
    );
    // A pod's own OUTPUT sees the VIP (the DNAT is on the node): its services all time out.
    let vips = ["iptables", "-I", "OUTPUT", "-d", "10.96.0.0/12", "-p", "tcp", "-j", "DROP"];
    let mut unvips = vips.to_vec();
    unvips[1] = "-D";
    hand_made_fault_is_named(
        &c,
        &c.lab.pod("tidb/demo-tidb-0").netns,
        &[&vips],
        &[&unvips],
        ("firewall-drop", CulpritKind::Pod, "tidb/demo-tidb-0"),
        "-d 10.96.0.0/12",
    );
}

/// The same faults written outside iptables' `filter` table: as native nftables rules (a
/// table of the admin's own, which `iptables-save` never shows) — a rule dropping TCP port
/// 20160 forwarded through node-2, a forward chain whose policy is drop — and in the `raw`
/// table's PREROUTING, which meets packets before routing.
#[test]
fn hand_made_drops_outside_the_filter_table_are_named_once() {
    let c = LabCluster::up(INTERVAL);
    c.warm_up();
    let raw = ["iptables", "-t", "raw", "-I", "PREROUTING", "-p", "tcp", "--dport", "20160", "-j", "DROP"];
    let mut unraw = raw.to_vec();
    unraw[3] = "-D";
    hand_made_fault_is_named_alone(&c, "node-2", &[&raw], &[&unraw], "firewall-drop", "raw PREROUTING");
    let table: &[&str] = &["nft", "add", "table", "inet", "admin"];
    let undo: &[&[&str]] = &[&["nft", "delete", "table", "inet", "admin"]];
    hand_made_fault_is_named_alone(
        &c,
        "node-2",
        &[
            table,
            &["nft", "add", "chain", "inet", "admin", "guard", "{ type filter hook forward priority 0 ; }"],
            &["nft", "add", "rule", "inet", "admin", "guard", "tcp", "dport", "20160", "drop"],
        ],
        undo,
        "firewall-drop",
        "dport 20160",
    );
    hand_made_fault_is_named_alone(
        &c,
        "node-2",
        &[
            table,
            &[
                "nft",
                "add",
                "chain",
                "inet",
                "admin",
                "guard",
                "{ type filter hook forward priority 0 ; policy drop ; }",
            ],
            &["nft", "add", "rule", "inet", "admin", "guard", "ct", "state", "established,related", "accept"],
        ],
        undo,
        "firewall-drop",
        "policy drop",
    );
}

fn sh_in(netns: &str, args: &[&str]) {
    let status = std::process::Command::new("ip").args(["netns", "exec", netns]).args(args).status().unwrap();
    assert!(status.success(), "{args:?} in {netns}");
}

/// Route, address and link faults made by hand whose cause sits in one namespace's tables:
/// node-1 routing node-3's pods through an address nobody holds (its ARP fails); a pod whose
/// own address was deleted from its interface; node-2's uplink MTU lowered below its peers';
/// a blackhole route on node-2 for node-1's own address (pod traffic passes by the pod CIDRs);
/// policy routing: a prohibit rule for node-3's pods on node-1, and a rule on node-2 sending
/// node-1's address to a table of its own that blackholes it; a pod routing the service CIDR
/// through a gateway nobody answers.
#[test]
fn hand_made_route_and_address_faults_are_named_from_the_tables_and_rules() {
    let c = LabCluster::up(INTERVAL);
    c.warm_up();
    let node_1 = c.lab.node("node-1");
    let node_3 = c.lab.node("node-3");
    let (cidr, gw) = (node_3.pod_cidr.to_string(), node_3.ip.to_string());
    hand_made_fault_is_named(
        &c,
        &node_1.netns,
        &[&["ip", "route", "replace", &cidr, "via", "172.29.0.99", "dev", "eth0"]],
        &[&["ip", "route", "replace", &cidr, "via", &gw, "dev", "eth0"]],
        ("route-missing", CulpritKind::NodePair, "node-1→node-3"),
        "via 172.29.0.99",
    );
    let pd_0 = c.lab.pod("tidb/demo-pd-0");
    let addr = format!("{}/32", pd_0.ip);
    hand_made_fault_is_named(
        &c,
        &pd_0.netns,
        &[&["ip", "addr", "del", &addr, "dev", "eth0"]],
        &[
            &["ip", "addr", "add", &addr, "dev", "eth0"],
            &["ip", "route", "replace", "169.254.1.1", "dev", "eth0", "scope", "link"],
            &["ip", "route", "replace", "default", "via", "169.254.1.1", "dev", "eth0"],
        ],
        ("pod-down", CulpritKind::Pod, "tidb/demo-pd-0"),
        "not on any of its interfaces",
    );
    hand_made_fault_is_named(
        &c,
        &c.lab.node("node-2").netns,
        &[&["ip", "link", "set", "eth0", "mtu", "1200"]],
        &[&["ip", "link", "set", "eth0", "mtu", "1500"]],
        ("mtu-blackhole", CulpritKind::Node, "node-2"),
        "uplink eth0 has MTU 1200",
    );
    let node_1_ip = format!("{}/32", node_1.ip);
    hand_made_fault_is_named(
        &c,
        &c.lab.node("node-2").netns,
        &[&["ip", "route", "add", "blackhole", &node_1_ip]],
        &[&["ip", "route", "del", "blackhole", &node_1_ip]],
        ("route-missing", CulpritKind::NodePair, "node-2→node-1"),
        "node-1's address",
    );
    // Policy routing: the main table is right and a rule decides otherwise. A prohibit rule for
    // node-3's pods on node-1, and on node-2 a rule sending node-1's address to a table of its
    // own that blackholes it.
    hand_made_fault_is_named(
        &c,
        &node_1.netns,
        &[&["ip", "rule", "add", "to", &cidr, "prohibit", "pref", "100"]],
        &[&["ip", "rule", "del", "pref", "100"]],
        ("route-missing", CulpritKind::NodePair, "node-1→node-3"),
        "a policy-routing rule on node-1 (`100: from all to 10.244.3.0/24 prohibit`)",
    );
    hand_made_fault_is_named(
        &c,
        &c.lab.node("node-2").netns,
        &[
            &["ip", "route", "add", "blackhole", &node_1_ip, "table", "100"],
            &["ip", "rule", "add", "to", &node_1_ip, "lookup", "100", "pref", "100"],
        ],
        &[&["ip", "rule", "del", "pref", "100"], &["ip", "route", "flush", "table", "100"]],
        ("route-missing", CulpritKind::NodePair, "node-2→node-1"),
        "table 100",
    );
    // A pod's own route for the service CIDR through a gateway nobody answers: its lookups and
    // VIP connects die in its first hop, before any NAT (was a DNS finding plus unexplained
    // paths).
    let tidb_0 = c.lab.pod("tidb/demo-tidb-0");
    hand_made_fault_is_named(
        &c,
        &tidb_0.netns,
        &[&["ip", "route", "add", "10.96.0.0/16", "via", "169.254.1.99", "dev", "eth0", "onlink"]],
        &[&["ip", "route", "del", "10.96.0.0/16"]],
        ("route-missing", CulpritKind::Pod, "tidb/demo-tidb-0"),
        "routes 10.96.0.0/16 through 169.254.1.99, an address no host answers",
    );
}

/// kube-proxy's rules edited by hand on node-1: one endpoint's DNAT target of demo-pd:2379
/// moved to another port. A third of the VIP's connections are refused from node-1 only (the
/// VIP stays mostly up): named from node-1's rules as a target that is no endpoint.
#[test]
fn a_hand_edited_dnat_target_is_named_from_the_nat_rules() {
    let c = LabCluster::up(INTERVAL);
    c.warm_up();
    let saved = format!("/tmp/netdiag-test-nat-{}.save", std::process::id());
    let edit = format!(
        "iptables-save -t nat > {saved} && sed '0,/--to-destination \\([0-9.]*\\):2379/s//--to-destination \\1:2399/' {saved} \
         | iptables-restore -T nat"
    );
    let restore = format!("iptables-restore -T nat < {saved}");
    hand_made_fault_is_named(
        &c,
        &c.lab.node("node-1").netns,
        &[&["sh", "-c", &edit]],
        &[&["sh", "-c", &restore]],
        ("service-path-broken", CulpritKind::Path, "svc/tidb/demo-pd:2379 on node-1"),
        "which is no endpoint of the service",
    );
    let _ = std::fs::remove_file(&saved);
}

/// A wrong static ARP entry written by hand on node-2 for node-1's address (`ip neigh
/// replace … nud permanent`): frames between the two nodes go to a MAC nobody holds. The
/// cause is node-2's neighbour table read against node-1's link: named as that entry, not as
/// a broken node pair; deleting the entry clears it.
#[test]
fn a_wrong_static_arp_entry_is_named_from_the_neighbour_table() {
    let c = LabCluster::up(INTERVAL);
    c.warm_up();
    let node_1 = c.lab.node("node-1").ip.to_string();
    let netns = c.lab.node("node-2").netns.clone();
    sh_in(
        &netns,
        &[
            "ip",
            "neigh",
            "replace",
            &node_1,
            "lladdr",
            "02:00:00:de:ad:01",
            "nud",
            "permanent",
            "dev",
            "eth0",
        ],
    );
    let found = c.wait_for(three_intervals() + Duration::from_secs(3), |c| {
        let d = c.diagnosis();
        let named = d.findings.len() == 1
            && d.findings[0].id.as_str() == "neighbour-mismatch"
            && d.findings[0]
                .culprit
                .as_ref()
                .is_some_and(|cu| cu.kind == CulpritKind::NodePair && cu.name.as_str() == "node-2→node-1")
            && d.findings[0].verdict.as_str().contains("points at 02:00:00:de:ad:01");
        named.then_some(())
    });
    let restore = || sh_in(&netns, &["ip", "neigh", "del", &node_1, "dev", "eth0"]);
    let Some(((), took)) = found else {
        restore();
        panic!(
            "no lone neighbour-mismatch on node-2→node-1; findings now:\n  {}",
            describe_findings(&c.diagnosis().findings)
        );
    };
    eprintln!("wrong static ARP entry: neighbour-mismatch in {took:?}");
    restore();
    let cleared = c.wait_for(three_intervals() + Duration::from_secs(3), |c| {
        c.diagnosis().findings.is_empty().then_some(())
    });
    assert!(
        cleared.is_some(),
        "entry deleted, findings remain:\n  {}",
        describe_findings(&c.diagnosis().findings)
    );
}

/// A pod's default route deleted by hand (`ip route del default` inside it): the pod is up,
/// yet nothing leaves it and no reply gets back. Its inspection holds the cause: the verdict
/// is its routing table, not a dead interface; restoring the route clears it.
#[test]
fn a_pods_deleted_default_route_is_named_from_its_routing_table() {
    let c = LabCluster::up(INTERVAL);
    c.warm_up();
    let netns = c.lab.pod("tidb/demo-pd-0").netns.clone();
    sh_in(&netns, &["ip", "route", "del", "default"]);
    let found = c.wait_for(three_intervals() + Duration::from_secs(3), |c| {
        let d = c.diagnosis();
        let named = d.findings.len() == 1
            && d.findings[0].id.as_str() == "route-missing"
            && d.findings[0]
                .culprit
                .as_ref()
                .is_some_and(|cu| cu.kind == CulpritKind::Pod && cu.name.as_str() == "tidb/demo-pd-0")
            && d.findings[0].verdict.as_str().contains("its routing table has no route to");
        named.then_some(())
    });
    let restore =
        || sh_in(&netns, &["ip", "route", "replace", "default", "via", "169.254.1.1", "dev", "eth0"]);
    let Some(((), took)) = found else {
        restore();
        panic!(
            "no lone route-missing on the pod; findings now:\n  {}",
            describe_findings(&c.diagnosis().findings)
        );
    };
    eprintln!("pod default route deleted: route-missing on the pod in {took:?}");
    restore();
    let cleared = c.wait_for(three_intervals() + Duration::from_secs(3), |c| {
        c.diagnosis().findings.is_empty().then_some(())
    });
    assert!(
        cleared.is_some(),
        "restored, findings remain:\n  {}",
        describe_findings(&c.diagnosis().findings)
    );
}

/// The reproduction: a DNAT written by hand on node-2, outside kube-proxy's chains,
/// sends node-2's pods' connections to pd-0:2379 to an address nobody holds, while ICMP to pd-0
/// and its other ports keep working. Named from node-2's NAT rules — `nat-rewrite` on node-2,
/// alone, quoting the rule as `iptables -t nat -S` shows it and where it sends the traffic —
/// within three probe intervals (was a source-group finding or unexplained failures), and
/// cleared once the rule is deleted.
#[test]
fn a_hand_made_dnat_outside_kube_proxys_chains_is_named_from_the_nat_rules() {
    let c = LabCluster::up(INTERVAL);
    c.warm_up();
    let pd_0 = format!("{}/32", c.lab.pod("tidb/demo-pd-0").ip);
    let netns = c.lab.node("node-2").netns.clone();
    let rule = [
        "-d",
        &pd_0,
        "-p",
        "tcp",
        "-m",
        "tcp",
        "--dport",
        "2379",
        "-j",
        "DNAT",
        "--to-destination",
        "10.244.1.99:2379",
    ];
    let nat = |verb: &'static str| [&["iptables", "-t", "nat", verb, "PREROUTING"][..], &rule].concat();
    sh_in(&netns, &nat("-I"));
    let shown = format!("-A PREROUTING {}", rule.join(" "));
    let found = c.wait_for(three_intervals(), |c| {
        let d = c.diagnosis();
        let named = d.findings.len() == 1
            && d.findings[0].id.as_str() == "nat-rewrite"
            && d.findings[0]
                .culprit
                .as_ref()
                .is_some_and(|cu| cu.kind == CulpritKind::Node && cu.name.as_str() == "node-2")
            && d.findings[0].verdict.as_str().contains(&shown)
            && d.findings[0]
                .verdict
                .as_str()
                .contains("to 10.244.1.99:2379, an address no pod or node holds");
        named.then(|| d.findings[0].clone())
    });
    let Some((finding, took)) = found else {
        sh_in(&netns, &nat("-D"));
        panic!(
            "no lone nat-rewrite on node-2 within {:?}; findings now:\n  {}",
            three_intervals(),
            describe_findings(&c.diagnosis().findings)
        );
    };
    eprintln!("hand-made DNAT on node-2: nat-rewrite alone in {took:?}: {}", finding.verdict);
    assert!(
        finding.affected.iter().all(|p| p.as_str().contains("demo-pd-0") && p.as_str().contains("2379")),
        "only TCP 2379 to pd-0 is rewritten: {:?}",
        finding.affected
    );
    assert!(finding.suggestion.as_str().contains("iptables -t nat -S PREROUTING"), "{}", finding.suggestion);
    sh_in(&netns, &nat("-D"));
    let cleared = c.wait_for(three_intervals(), |c| c.diagnosis().findings.is_empty().then_some(()));
    let Some(((), cleared_in)) = cleared else {
        panic!("rule deleted, findings remain:\n  {}", describe_findings(&c.diagnosis().findings));
    };
    eprintln!("rule deleted: cleared in {cleared_in:?}");
}
