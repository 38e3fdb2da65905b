//! Valid model values for every message family, and the two checks every table uses.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use netdiag_model::inspect::{
    Link, NatProtocol, NatService, NatTarget, Neighbour, ResolvConf, Route, Sysctl,
};
use netdiag_model::inventory::ProxyMode;
use netdiag_model::*;

use crate::ConvertError;

pub(super) fn at(ms: i64) -> UnixMillis {
    UnixMillis::new(ms).unwrap()
}

pub(super) fn pod(s: &str) -> PodRef {
    s.parse().unwrap()
}

pub(super) fn port(n: u32) -> Port {
    Port::new(n).unwrap()
}

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(super) fn text<const N: usize>(s: &str) -> Text<N> {
    Text::new(s).unwrap()
}

/// TCP to a Service VIP, ok.
pub(super) fn tcp_result() -> ProbeResult {
    ProbeResult {
        source: Source::Pod(pod("tidb/demo-tikv-0")),
        target: Target::Service {
            service: "tidb/demo-pd".parse().unwrap(),
            ip: ip("10.96.0.20"),
            port: port(2379),
            via: ServiceVia::ClusterIp,
        },
        kind: ProbeKind::Tcp,
        outcome: Outcome::Ok,
        rtt: Some(Rtt::from_micros(250, false).unwrap()),
        at: at(1_700_000_000_000),
        detail: text("connected"),
        burst: None,
        http_status: None,
        path_mtu: None,
        answers: vec![],
        nameserver: None,
    }
}

/// ICMP node to node, every echo lost.
pub(super) fn icmp_result() -> ProbeResult {
    ProbeResult {
        source: Source::Node("node-1".parse().unwrap()),
        target: Target::Node { node: "node-2".parse().unwrap(), ip: ip("172.29.0.12"), port: None },
        kind: ProbeKind::Icmp,
        outcome: Outcome::Icmp(IcmpFailure::Timeout),
        rtt: None,
        burst: Some(Burst::new(3, 0).unwrap()),
        detail: Detail::default(),
        ..tcp_result()
    }
}

/// DNS A query answered by a given nameserver.
pub(super) fn dns_result() -> ProbeResult {
    ProbeResult {
        target: Target::Dns {
            name: "demo-pd.tidb.svc.cluster.local.".parse().unwrap(),
            record: RecordType::A,
            nameserver: Some(ip("10.96.0.10")),
            transport: DnsTransport::Udp,
        },
        kind: ProbeKind::Dns,
        answers: vec![ip("10.96.0.20"), ip("10.96.0.21")],
        nameserver: Some(ip("10.96.0.10")),
        ..tcp_result()
    }
}

/// HTTP to a pod that answers 503, RTT below timer resolution.
pub(super) fn http_result() -> ProbeResult {
    ProbeResult {
        target: Target::Pod { pod: pod("tidb/demo-pd-0"), ip: ip("fd00:10:244::2"), port: Some(port(8080)) },
        kind: ProbeKind::Http,
        outcome: Outcome::Http(HttpFailure::Status),
        rtt: Some(Rtt::from_micros(1, true).unwrap()),
        http_status: Some(HttpStatus::new(503).unwrap()),
        detail: text("503 Service Unavailable\nretry later"),
        ..tcp_result()
    }
}

/// MTU to a bare address through a path narrower than the link.
pub(super) fn mtu_result() -> ProbeResult {
    ProbeResult {
        target: Target::Address { ip: ip("10.244.2.3"), port: None },
        kind: ProbeKind::Mtu,
        outcome: Outcome::Mtu(MtuFailure::Reduced),
        burst: Some(Burst::new(4, 4).unwrap()),
        path_mtu: Some(PathMtu::new(1400).unwrap()),
        ..tcp_result()
    }
}

/// Results 0..=4: tcp, icmp, dns, http (pod target), mtu.
pub(super) fn batch() -> ResultBatch {
    ResultBatch {
        seq: Seq::new(7).unwrap(),
        results: vec![tcp_result(), icmp_result(), dns_result(), http_result(), mtu_result()],
        dropped: 2,
    }
}

pub(super) fn hello() -> Hello {
    Hello {
        node: "node-1".parse().unwrap(),
        agent_version: "0.1.0-rc.1".parse().unwrap(),
        capabilities: BTreeSet::from([Capability::Icmp, Capability::Tcp, Capability::OnDemand]),
        pods: vec![
            LocalPod {
                pod: pod("tidb/demo-pd-0"),
                ips: vec![ip("10.244.1.2"), ip("fd00::2")],
                host_network: false,
            },
            LocalPod {
                pod: pod("kube-system/kube-proxy-x"),
                ips: vec![ip("172.29.0.11")],
                host_network: true,
            },
        ],
        node_ips: vec![ip("172.29.0.11")],
        first_unacked_seq: Seq::FIRST,
        instance_id: "5f0c7e4e-8a43".parse().unwrap(),
    }
}

pub(super) fn inspection() -> InspectionReport {
    use netdiag_model::inspect::{FilterDrop, FilterHook, FilterProtocol, PortRange};
    let port = |p| netdiag_model::Port::new(p).unwrap();
    InspectionReport {
        rules: vec![
            netdiag_model::inspect::RouteRule {
                priority: 100,
                ipv6: false,
                from: None,
                to: Some("10.244.3.0/24".parse().unwrap()),
                iif: None,
                oif: None,
                fwmark: None,
                invert: false,
                action: netdiag_model::inspect::RuleAction::Prohibit,
            },
            netdiag_model::inspect::RouteRule {
                priority: 200,
                ipv6: true,
                from: Some("fd00::/64".parse().unwrap()),
                to: None,
                iif: Some("eth0".parse().unwrap()),
                oif: Some("eth1".parse().unwrap()),
                fwmark: Some((0x4000, 0x4000)),
                invert: true,
                action: netdiag_model::inspect::RuleAction::Lookup(1000),
            },
        ],
        filter_drops: vec![
            FilterDrop {
                hook: FilterHook::Forward,
                protocol: Some(FilterProtocol::Tcp),
                source: Some("10.244.1.0/24".parse().unwrap()),
                destination: None,
                in_interface: Some(netdiag_model::Text::new("eth0".to_owned()).unwrap()),
                out_interface: None,
                destination_ports: vec![PortRange { first: port(20160), last: port(20180) }],
                reject: false,
                policy: false,
                new_only: false,
                rule: netdiag_model::Text::new("FORWARD: -p tcp --dport 20160:20180 -j DROP".to_owned())
                    .unwrap(),
            },
            FilterDrop {
                hook: FilterHook::Input,
                protocol: None,
                source: None,
                destination: None,
                in_interface: None,
                out_interface: None,
                destination_ports: vec![],
                reject: true,
                policy: false,
                new_only: false,
                rule: netdiag_model::Text::new("INPUT: -j REJECT".to_owned()).unwrap(),
            },
            FilterDrop {
                hook: FilterHook::Forward,
                protocol: None,
                source: None,
                destination: None,
                in_interface: None,
                out_interface: None,
                destination_ports: vec![],
                reject: false,
                policy: true,
                new_only: true,
                rule: netdiag_model::Text::new("FORWARD: policy DROP".to_owned()).unwrap(),
            },
        ],
        source: Source::Node("node-1".parse().unwrap()),
        at: at(1_700_000_000_500),
        links: vec![Link {
            name: "eth0".parse().unwrap(),
            index: NonZeroU32::new(2).unwrap(),
            up: true,
            mtu: 1500,
            addresses: vec!["172.29.0.11/24".parse().unwrap(), "fe80::1/64".parse().unwrap()],
            kind: Some("veth".parse().unwrap()),
            lladdr: Some("02:42:ac:1d:00:0b".parse().unwrap()),
        }],
        routes: vec![
            Route {
                destination: "0.0.0.0/0".parse().unwrap(),
                gateway: Some(ip("172.29.0.1")),
                device: Some("eth0".parse().unwrap()),
                source: None,
                table: 254,
                metric: 0,
            },
            Route {
                destination: "10.244.9.0/24".parse().unwrap(),
                gateway: None,
                device: None,
                source: Some(ip("172.29.0.11")),
                table: 254,
                metric: 100,
            },
        ],
        neighbours: vec![Neighbour {
            ip: ip("172.29.0.1"),
            device: "eth0".parse().unwrap(),
            state: "REACHABLE".parse().unwrap(),
            lladdr: Some("02:42:ac:1d:00:01".parse().unwrap()),
        }],
        nat_services: vec![
            NatService {
                service: Some("tidb/demo-pd:client".parse().unwrap()),
                vip: Some(ip("10.96.0.20")),
                port: port(2379),
                protocol: NatProtocol::Tcp,
                targets: vec![NatTarget {
                    ip: ip("10.244.1.2"),
                    port: port(2379),
                    chain: Some("KUBE-SEP-ABCDEF".parse().unwrap()),
                }],
                node_port: false,
            },
            NatService {
                service: None,
                vip: None,
                port: port(30080),
                protocol: NatProtocol::Udp,
                targets: vec![],
                node_port: true,
            },
        ],
        sysctls: vec![Sysctl { key: "net.ipv4.ip_forward".parse().unwrap(), value: text("1") }],
        resolv_conf: Some(ResolvConf {
            nameservers: vec![ip("10.96.0.10")],
            search: vec!["tidb.svc.cluster.local".parse().unwrap(), "cluster.local".parse().unwrap()],
            ndots: 5,
            timeout_secs: 2,
            attempts: 3,
        }),
        proxy_mode: Some(ProxyMode::Iptables),
        errors: vec![text("nft: permission denied")],
        nat_rules: nat_rules(),
    }
}

/// One NAT rule of each action, negations and a port-only DNAT among them.
fn nat_rules() -> Vec<netdiag_model::inspect::NatRule> {
    use netdiag_model::inspect::{AddressMatch, FilterProtocol, NatAction, NatHook, NatRule, PortRange};
    let port = |p| netdiag_model::Port::new(p).unwrap();
    let rule = |hook, action, text: &str| NatRule {
        hook,
        protocol: None,
        source: None,
        destination: None,
        in_interface: None,
        out_interface: None,
        destination_ports: vec![],
        action,
        opaque: false,
        after_kube_proxy: false,
        rule: netdiag_model::Text::new(text.to_owned()).unwrap(),
    };
    vec![
        NatRule {
            protocol: Some(FilterProtocol::Tcp),
            destination: Some(AddressMatch { net: "10.244.1.3/32".parse().unwrap(), negated: false }),
            destination_ports: vec![PortRange { first: port(2379), last: port(2379) }],
            ..rule(
                NatHook::Prerouting,
                NatAction::Dnat { address: Some(ip("10.244.1.99")), port: Some(port(2379)) },
                "-A PREROUTING -d 10.244.1.3/32 -p tcp -m tcp --dport 2379 -j DNAT --to-destination 10.244.1.99:2379",
            )
        },
        NatRule {
            source: Some(AddressMatch { net: "10.96.0.0/12".parse().unwrap(), negated: true }),
            in_interface: Some(netdiag_model::Text::new("cali+".to_owned()).unwrap()),
            after_kube_proxy: true,
            ..rule(
                NatHook::Prerouting,
                NatAction::Redirect { port: Some(port(3128)) },
                "-A PREROUTING -j REDIRECT",
            )
        },
        rule(NatHook::Output, NatAction::Dnat { address: None, port: Some(port(8080)) }, "-A OUTPUT -j DNAT"),
        NatRule {
            out_interface: Some(netdiag_model::Text::new("eth0".to_owned()).unwrap()),
            opaque: true,
            ..rule(
                NatHook::Postrouting,
                NatAction::Snat { address: ip("172.29.0.99") },
                "-A POSTROUTING -j SNAT",
            )
        },
        rule(NatHook::Postrouting, NatAction::Masquerade, "-A POSTROUTING -j MASQUERADE"),
        rule(
            NatHook::Input,
            NatAction::Netmap { to: "10.245.0.0/16".parse().unwrap() },
            "-A INPUT -j NETMAP",
        ),
        rule(NatHook::Prerouting, NatAction::Keep, "nft ip nat pre (prerouting): accept # handle 3"),
    ]
}

/// Probes 0..=2: icmp, tcp, http with a path.
pub(super) fn plan() -> ProbePlan {
    let probe = |kind, target, http_path| PlannedProbe {
        source: Source::Pod(pod("tidb/demo-tikv-0")),
        target,
        kind,
        http_path,
        every: netdiag_model::EveryRounds::ONE,
    };
    ProbePlan {
        generation: NonZeroU64::new(3).unwrap(),
        schedule: Schedule::new(Duration::from_secs(5), Duration::from_secs(1), 32, 200).unwrap(),
        probes: vec![
            probe(ProbeKind::Icmp, Target::Address { ip: ip("10.244.1.2"), port: None }, None),
            probe(ProbeKind::Tcp, Target::Address { ip: ip("10.244.1.2"), port: Some(port(2379)) }, None),
            probe(
                ProbeKind::Http,
                Target::Pod { pod: pod("tidb/demo-pd-0"), ip: ip("10.244.1.2"), port: Some(port(2379)) },
                Some("/health".parse().unwrap()),
            ),
        ],
    }
}

pub(super) fn run_request(target: RunTarget) -> RunRequest {
    RunRequest {
        run_id: "run-42".parse().unwrap(),
        source: Source::Pod(pod("tidb/demo-tikv-0")),
        target,
        http_path: Some("/health".parse().unwrap()),
        timeout: RunTimeout::from_millis(1500).unwrap(),
        plan: run_plan(),
    }
}

/// One step of every action.
pub(super) fn run_plan() -> RunPlan {
    let source = Source::Pod(pod("tidb/demo-tikv-0"));
    let step = |name: &str, action| PlannedStep {
        name: name.parse().unwrap(),
        description: text(&format!("the {name} step")),
        action,
    };
    RunPlan {
        steps: vec![
            step(
                "resolve",
                StepAction::Probe {
                    probe: PlannedProbe {
                        source: source.clone(),
                        target: Target::Dns {
                            name: "demo-pd.tidb".parse().unwrap(),
                            record: RecordType::A,
                            nameserver: None,
                            transport: DnsTransport::Udp,
                        },
                        kind: ProbeKind::Dns,
                        http_path: None,
                        every: netdiag_model::EveryRounds::ONE,
                    },
                },
            ),
            step(
                "http",
                StepAction::ProbeAnswers {
                    resolve_step: 0,
                    kind: ProbeKind::Http,
                    port: Some(port(2379)),
                    http_path: Some("/pd/api/v1/members".parse().unwrap()),
                },
            ),
            step(
                "nat-rules",
                StepAction::NatRules {
                    service: Some("tidb/demo-pd".parse().unwrap()),
                    vip: ip("10.96.0.20"),
                    port: port(2379),
                    protocol: NatProtocol::Tcp,
                    expected: vec!["10.244.1.2:2379".parse().unwrap(), "[fd00::2]:2379".parse().unwrap()],
                    node_port: false,
                },
            ),
            step("routes", StepAction::Routes { destinations: vec![ip("10.244.2.2"), ip("fd00::3")] }),
        ],
        allowed: vec!["10.244.0.0/16".parse().unwrap(), "fd00::/64".parse().unwrap()],
    }
}

pub(super) fn run_targets() -> Vec<RunTarget> {
    vec![
        RunTarget::Pod { pod: pod("tidb/demo-pd-0"), port: Some(port(2379)) },
        RunTarget::Pod { pod: pod("tidb/demo-pd-0"), port: None },
        RunTarget::Service { service: "tidb/demo-pd".parse().unwrap(), port: port(2379) },
        RunTarget::Dns { name: "demo-pd.tidb".parse().unwrap(), port: Some(port(2379)) },
        RunTarget::Address { ip: ip("fd00::20"), port: Some(port(80)) },
        RunTarget::Address { ip: ip("10.0.0.1"), port: None },
        RunTarget::Node { node: "node-2".parse().unwrap(), port: None },
    ]
}

pub(super) fn run_step() -> RunStep {
    RunStep {
        index: 2,
        name: "tcp".parse().unwrap(),
        description: text("TCP connect 10.96.0.20:2379 (service tidb/demo-pd)"),
        status: StepStatus::Ok,
        result: Some(Box::new(tcp_result())),
        evidence: vec![text("SYN-ACK after 250µs")],
        elapsed: Duration::from_micros(812),
    }
}

pub(super) fn finding() -> Finding {
    Finding {
        id: "node-pair-loss".parse().unwrap(),
        severity: Severity::Critical,
        verdict: text("node-1 → node-2: 100% ICMP loss"),
        culprit: Some(Culprit { kind: CulpritKind::NodePair, name: text("node-1→node-2") }),
        affected: vec![text("tidb/demo-pd-0"), text("tidb/demo-tikv-0")],
        evidence: vec![text("3/3 echoes lost at 12:00:01")],
        runbook: Some(text("https://netdiag.example/runbooks#node-pair-loss")),
        suggestion: text("check the VXLAN port (UDP 8472) between the nodes"),
    }
}

pub(super) fn matrix() -> MatrixSnapshot {
    MatrixSnapshot {
        cells: vec![
            MatrixCell {
                source: text("tidb/demo-tikv-0"),
                destination: text("tidb/demo-pd-0"),
                kind: ProbeKind::Icmp,
                status: CellStatus::Degraded,
                loss_ratio: Ratio::new(0.25).unwrap(),
                rtt_p50: Some(Duration::from_micros(312)),
                rtt_p99: Some(Duration::from_micros(4_001)),
                last_error: text("1/4 echoes lost"),
                samples: 40,
                last_update: Some(at(1_700_000_001_000)),
            },
            MatrixCell {
                source: text("node-1"),
                destination: text("node-3"),
                kind: ProbeKind::Tcp,
                status: CellStatus::Unknown,
                loss_ratio: Ratio::ZERO,
                rtt_p50: None,
                rtt_p99: None,
                last_error: Text::default(),
                samples: 0,
                last_update: None,
            },
        ],
        generated_at: at(1_700_000_002_000),
    }
}

pub(super) fn agents() -> Vec<AgentInfo> {
    vec![AgentInfo {
        node: "node-1".parse().unwrap(),
        agent_version: "0.1.0".parse().unwrap(),
        connected: true,
        connected_since: Some(at(1_700_000_000_000)),
        last_seen: Some(at(1_700_000_003_000)),
        results_received: 1234,
        results_dropped: 5,
        pods: 12,
        capabilities: BTreeSet::from([Capability::Dns, Capability::InspectNftables]),
    }]
}

/// model → proto → bytes → proto → model gives the original back.
pub(super) fn round_trip<M, W>(m: M)
where
    M: TryFrom<W, Error = ConvertError> + Clone + PartialEq + Debug,
    W: From<M> + prost::Message + Default,
{
    let bytes = W::from(m.clone()).encode_to_vec();
    let decoded = W::decode(bytes.as_slice()).unwrap();
    assert_eq!(M::try_from(decoded), Ok(m));
}

/// A hostile variation of a valid message: (what, how, expected path, expected message part).
pub(super) type Case<W> = (&'static str, fn(&mut W), &'static str, &'static str);

/// Each case's mutation of `valid` is rejected at its path, with its message part.
pub(super) fn check_rejects<M, W>(valid: &W, cases: &[Case<W>])
where
    M: TryFrom<W, Error = ConvertError> + Debug,
    W: Clone,
{
    assert!(M::try_from(valid.clone()).is_ok(), "the base message must be valid");
    for (what, mutate, path, part) in cases {
        let mut w = valid.clone();
        mutate(&mut w);
        match M::try_from(w) {
            Ok(m) => panic!("{what}: accepted as {m:?}"),
            Err(e) => {
                assert_eq!(e.path(), *path, "{what}: {e}");
                let msg = e.to_string();
                assert!(msg.contains(part), "{what}: {msg:?} does not mention {part:?}");
                assert!(msg.len() < 400, "{what}: error quotes too much: {} bytes", msg.len());
            }
        }
    }
}
