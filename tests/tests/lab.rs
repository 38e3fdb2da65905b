//! The lab, checked with plain sockets from inside its namespaces (not with netdiag's agent):
//! everything reaches everything when healthy, DNS answers like cluster DNS, VIPs and NodePorts
//! reach their backends, each fault breaks exactly what it claims and heal restores it, the lab
//! is sealed, and nothing is left after `down`.
//!
//! Needs root, `ip`, `iptables` and `nft` (`.ci/run` installs them).

// Helpers here panic on purpose: a panic is how a test reports what it found.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use netdiag_lab::plan::LabPlan;
use netdiag_tests::lab::TestLab;
use netdiag_tests::probe::{self, Reach};

const T: Duration = Duration::from_millis(800);
/// Timeouts expected by a "dropped" check: long enough that a live path always answers.
const DROP_T: Duration = Duration::from_millis(400);

fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// Which pod answered an HTTP GET / through `addr`.
fn who(netns: &str, addr: SocketAddr) -> String {
    let (status, body) =
        probe::http_get(netns, addr, "/", T).unwrap_or_else(|e| panic!("GET {addr} from {netns}: {e}"));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["pod"].as_str().unwrap_or_default().to_owned()
}

fn dns_server(lab: &TestLab) -> SocketAddr {
    sa(lab.plan.dns_ip, 53)
}

/// How many of three `size`-byte UDP datagrams sent from namespace `from` reach a socket bound
/// to `ip` in namespace `to`: one way only, unlike a ping. The datagrams leave whole with DF
/// set (Linux's default path-MTU discovery on a 1500-byte path), so a length rule sees each
/// at its full size.
fn udp_arrivals(from: &str, to: &str, ip: IpAddr, size: usize) -> usize {
    use socket2::{Domain, Protocol, Type};
    let domain = if ip.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let socket = |ns: &str| {
        netdiag_netns::socket_in(&LabPlan::netns_path(ns), domain, Type::DGRAM, Some(Protocol::UDP)).unwrap()
    };
    let rx = socket(to);
    rx.bind(&sa(ip, 0).into()).unwrap();
    let dst = rx.local_addr().unwrap().as_socket().unwrap();
    rx.set_read_timeout(Some(DROP_T)).unwrap();
    let rx: std::net::UdpSocket = rx.into();
    let tx: std::net::UdpSocket = socket(from).into();
    let payload = vec![0x5a; size];
    for _ in 0..3 {
        match tx.send_to(&payload, dst) {
            // Dropped by the sender's own namespace on OUTPUT (a node's fault chain): EPERM.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
            Err(e) => panic!("send {size} bytes from {from} to {dst}: {e}"),
            Ok(_) => {}
        }
    }
    let mut buf = vec![0u8; 65536];
    let mut got = 0;
    while let Ok((n, _)) = rx.recv_from(&mut buf) {
        assert_eq!(n, size, "a datagram arrived cut");
        got += 1;
    }
    got
}

#[test]
fn healthy_lab_every_pod_reaches_every_pod_port_and_service() {
    let lab = TestLab::up();
    let plan = &lab.plan;
    for src in &plan.pods {
        for dst in plan.pods.iter().filter(|p| p.pod != src.pod) {
            assert!(
                probe::ping(&src.netns, dst.ip.into(), 56, T).unwrap(),
                "ping {} -> {}",
                src.pod,
                dst.pod
            );
            for port in &dst.ports {
                assert_eq!(
                    probe::tcp(&src.netns, sa(dst.ip, port.get()), T),
                    Reach::Ok,
                    "{} -> {} :{port}",
                    src.pod,
                    dst.pod
                );
            }
        }
        for svc in plan.services.iter().filter(|s| s.cluster_ip.is_some()) {
            for port in svc.ports.iter().filter(|p| p.protocol == netdiag_model::inventory::Protocol::Tcp) {
                let vip = sa(svc.cluster_ip.unwrap(), port.port.get());
                assert_eq!(probe::tcp(&src.netns, vip, T), Reach::Ok, "{} -> {} {vip}", src.pod, svc.service);
            }
        }
    }
    // Nodes reach every pod too (hostNetwork agents will probe from there).
    for node in &plan.nodes {
        for dst in &plan.pods {
            assert!(probe::ping(&node.netns, dst.ip.into(), 56, T).unwrap(), "{} -> {}", node.name, dst.pod);
        }
    }
}

#[test]
fn pd_answers_its_members_api_through_the_service() {
    let lab = TestLab::up();
    let src = &lab.pod("tidb/demo-tikv-0").netns;
    let vip = sa(lab.service("tidb/demo-pd").cluster_ip.unwrap(), 2379);
    let (status, body) = probe::http_get(src, vip, "/pd/api/v1/members", T).unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> =
        v["members"].as_array().unwrap().iter().filter_map(|m| m["name"].as_str()).collect();
    assert_eq!(names.len(), 3, "{body}");
    assert!(names.contains(&"demo-pd-2"));
}

#[test]
fn vip_spreads_over_every_backend() {
    let lab = TestLab::up();
    let src = &lab.pod("tidb/demo-tikv-1").netns;
    let vip = sa(lab.service("tidb/demo-pd").cluster_ip.unwrap(), 2379);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        seen.insert(who(src, vip));
        if seen.len() == 3 {
            break;
        }
    }
    assert_eq!(seen.len(), 3, "only {seen:?} answered through the VIP");
}

#[test]
fn dns_answers_every_service_and_headless_pods() {
    let lab = TestLab::up();
    let plan = &lab.plan;
    let src = &lab.pod("tidb/demo-pd-0").netns;
    for svc in &plan.services {
        let name = format!("{}.{}.svc.{}.", svc.service.name, svc.service.namespace, plan.domain);
        for tcp in [false, true] {
            let a = probe::dns(src, dns_server(&lab), &name, RecordType::A, tcp, T).unwrap();
            assert_eq!(a.rcode, ResponseCode::NoError, "{name}");
            let mut got = a.ips.clone();
            got.sort();
            let mut want: Vec<IpAddr> = match svc.cluster_ip {
                Some(ip) => vec![ip.into()],
                None => svc.endpoints.iter().map(|&i| IpAddr::V4(plan.pods[i].ip)).collect(),
            };
            want.sort();
            assert_eq!(got, want, "{name} over {}", if tcp { "tcp" } else { "udp" });
        }
    }
    let pd1 = probe::dns(
        src,
        dns_server(&lab),
        "demo-pd-1.demo-pd-peer.tidb.svc.cluster.local.",
        RecordType::A,
        false,
        T,
    )
    .unwrap();
    assert_eq!(pd1.ips, vec![IpAddr::V4(lab.pod("tidb/demo-pd-1").ip)]);
    let missing =
        probe::dns(src, dns_server(&lab), "nope.tidb.svc.cluster.local.", RecordType::A, false, T).unwrap();
    assert_eq!(missing.rcode, ResponseCode::NXDomain);
}

#[test]
fn pods_have_their_own_resolv_conf_and_inventory_lists_them() {
    let lab = TestLab::up();
    let inv_text = std::fs::read_to_string(lab.state.inventory_path()).unwrap();
    let inv = netdiag_model::inventory::Inventory::from_yaml(&inv_text).unwrap();
    assert_eq!(inv.pods.len(), lab.plan.pods.len());
    for pod in &inv.pods {
        let conf = std::fs::read_to_string(pod.resolv_conf.as_ref().unwrap()).unwrap();
        assert!(conf.contains("nameserver 10.96.0.10"), "{conf}");
        assert!(
            conf.contains(&format!(
                "search {}.svc.cluster.local svc.cluster.local cluster.local",
                pod.namespace
            )),
            "{conf}"
        );
        assert!(conf.contains("options ndots:5"));
        assert!(pod.netns.as_ref().unwrap().exists());
    }
}

#[test]
fn nodeport_reaches_backends_on_every_node() {
    let lab = TestLab::up();
    let svc = lab.service("tidb/demo-tidb");
    let node_port = svc.ports[0].node_port.unwrap().get();
    let backends: Vec<String> = svc.endpoints.iter().map(|&i| lab.plan.pods[i].pod.to_string()).collect();
    for from in &lab.plan.nodes {
        for to in &lab.plan.nodes {
            if from.name == to.name {
                continue;
            }
            let answered = who(&from.netns, sa(to.ip, node_port));
            assert!(
                backends.contains(&answered),
                "{} -> {}:{node_port} answered by {answered}",
                from.name,
                to.name
            );
        }
    }
    // From a pod, too (hairpin through another node).
    let answered = who(&lab.pod("tidb/demo-pd-0").netns, sa(lab.node("node-3").ip, node_port));
    assert!(backends.contains(&answered));
}

#[test]
fn nftables_lab_serves_vips_and_nodeports() {
    let lab = TestLab::with(|t| t.replace("proxy_mode: iptables", "proxy_mode: nftables"));
    let out = netdiag_lab::netcmd::run(
        Some(&lab.node("node-1").netns),
        "nft",
        &["list", "table", "ip", "kube-proxy"],
        None,
    )
    .unwrap();
    assert!(out.contains("service-ips"), "{out}");
    let src = &lab.pod("tidb/demo-tikv-2").netns;
    for svc in lab.plan.services.iter().filter(|s| s.cluster_ip.is_some()) {
        for p in svc.ports.iter().filter(|p| p.protocol == netdiag_model::inventory::Protocol::Tcp) {
            assert_eq!(
                probe::tcp(src, sa(svc.cluster_ip.unwrap(), p.port.get()), T),
                Reach::Ok,
                "{}",
                svc.service
            );
        }
    }
    let a = probe::dns(src, dns_server(&lab), "demo-pd.tidb.svc.cluster.local.", RecordType::A, false, T)
        .unwrap();
    assert_eq!(a.ips, vec![IpAddr::V4(lab.service("tidb/demo-pd").cluster_ip.unwrap())]);
    let np = lab.service("tidb/demo-tidb").ports[0].node_port.unwrap().get();
    assert_eq!(probe::tcp(&lab.node("node-1").netns, sa(lab.node("node-2").ip, np), T), Reach::Ok);
}

#[test]
fn vxlan_dual_stack_lab_connects_over_both_families() {
    let lab = TestLab::with(|t| {
        t.replace("overlay: routed", "overlay: vxlan").replace("ipv6: false", "ipv6: true")
    });
    let src = lab.pod("tidb/demo-pd-0");
    let dst = lab.pod("tidb/demo-pd-2");
    assert!(probe::ping(&src.netns, dst.ip.into(), 56, T).unwrap());
    assert!(probe::ping(&src.netns, dst.ip_v6.unwrap().into(), 56, T).unwrap());
    assert_eq!(probe::tcp(&src.netns, sa(dst.ip_v6.unwrap(), 2379), T), Reach::Ok);
    let pd = lab.service("tidb/demo-pd");
    assert_eq!(probe::tcp(&src.netns, sa(pd.cluster_ip_v6.unwrap(), 2379), T), Reach::Ok);
    // The overlay carries 1450-byte frames: a 1400-byte ping passes, pods' MTU says so.
    assert!(probe::ping(&src.netns, dst.ip.into(), 1400, T).unwrap());
    assert_eq!(src.mtu, 1450);
    let aaaa = probe::dns(
        &src.netns,
        dns_server(&lab),
        "demo-pd.tidb.svc.cluster.local.",
        RecordType::AAAA,
        false,
        T,
    )
    .unwrap();
    assert_eq!(aaaa.ips, vec![IpAddr::V6(pd.cluster_ip_v6.unwrap())]);
}

// ---- faults: each breaks what it claims, nothing else, and heal restores it ----

#[test]
fn fault_node_pair_breaks_only_that_pair() {
    let lab = TestLab::up();
    let (pd0, pd1, pd2) = (lab.pod("tidb/demo-pd-0"), lab.pod("tidb/demo-pd-1"), lab.pod("tidb/demo-pd-2"));
    lab.fault("node-pair node-1 node-2");
    assert_eq!(probe::tcp(&pd0.netns, sa(pd1.ip, 2379), DROP_T), Reach::Timeout);
    assert_eq!(probe::tcp(&pd1.netns, sa(pd0.ip, 2379), DROP_T), Reach::Timeout);
    // Locally generated packets dropped by the node's own filter fail with EPERM: not reached.
    assert!(!matches!(
        probe::ping(&lab.node("node-1").netns, lab.node("node-2").ip.into(), 56, DROP_T),
        Ok(true)
    ));
    assert_eq!(probe::tcp(&pd0.netns, sa(pd2.ip, 2379), T), Reach::Ok, "node-1 <-> node-3 still works");
    assert_eq!(probe::tcp(&pd1.netns, sa(pd2.ip, 2379), T), Reach::Ok, "node-2 <-> node-3 still works");
    lab.heal();
    assert_eq!(probe::tcp(&pd0.netns, sa(pd1.ip, 2379), T), Reach::Ok);
}

#[test]
fn fault_node_isolate_cuts_one_node_off() {
    let lab = TestLab::up();
    lab.fault("node-isolate node-3");
    let pd0 = lab.pod("tidb/demo-pd-0");
    assert_eq!(probe::tcp(&pd0.netns, sa(lab.pod("tidb/demo-pd-2").ip, 2379), DROP_T), Reach::Timeout);
    assert_eq!(probe::tcp(&pd0.netns, sa(lab.pod("tidb/demo-pd-1").ip, 2379), T), Reach::Ok);
    // Pods on the isolated node still reach each other.
    assert_eq!(
        probe::tcp(&lab.pod("tidb/demo-tikv-2").netns, sa(lab.pod("tidb/demo-pd-2").ip, 2379), T),
        Reach::Ok
    );
    lab.heal();
    assert_eq!(probe::tcp(&pd0.netns, sa(lab.pod("tidb/demo-pd-2").ip, 2379), T), Reach::Ok);
}

#[test]
fn fault_pod_down_and_heal_restores_routes() {
    let lab = TestLab::up();
    let (src, dst) = (lab.pod("tidb/demo-tikv-0"), lab.pod("tidb/demo-pd-1"));
    lab.fault("pod-down tidb/demo-pd-1");
    assert!(!probe::ping(&src.netns, dst.ip.into(), 56, DROP_T).unwrap());
    assert_ne!(probe::tcp(&src.netns, sa(dst.ip, 2379), DROP_T), Reach::Ok);
    assert!(probe::ping(&src.netns, lab.pod("tidb/demo-pd-2").ip.into(), 56, T).unwrap());
    lab.heal();
    assert!(probe::ping(&src.netns, dst.ip.into(), 56, T).unwrap());
    assert!(probe::ping(&dst.netns, src.ip.into(), 56, T).unwrap(), "the healed pod's own routes are back");
}

#[test]
fn fault_port_closed_refuses_and_port_drop_times_out_while_icmp_works() {
    let lab = TestLab::up();
    let (src, dst) = (lab.pod("tidb/demo-tikv-0"), lab.pod("tidb/demo-pd-1"));
    lab.fault("port-closed tidb/demo-pd-1 2379");
    lab.fault("port-drop tidb/demo-pd-1 2380");
    assert_eq!(probe::tcp(&src.netns, sa(dst.ip, 2379), T), Reach::Refused);
    assert_eq!(probe::tcp(&src.netns, sa(dst.ip, 2380), DROP_T), Reach::Timeout);
    assert!(probe::ping(&src.netns, dst.ip.into(), 56, T).unwrap(), "ICMP still answers");
    assert_eq!(probe::tcp(&src.netns, sa(lab.pod("tidb/demo-pd-2").ip, 2379), T), Reach::Ok);
    // Only inbound: the faulty pod still reaches that port on other pods.
    assert_eq!(probe::tcp(&dst.netns, sa(lab.pod("tidb/demo-pd-2").ip, 2379), T), Reach::Ok);
    assert_eq!(probe::tcp(&dst.netns, sa(lab.pod("tidb/demo-pd-2").ip, 2380), T), Reach::Ok);
    lab.heal();
    assert_eq!(probe::tcp(&src.netns, sa(dst.ip, 2379), T), Reach::Ok);
    assert_eq!(probe::tcp(&src.netns, sa(dst.ip, 2380), T), Reach::Ok);
}

fn dnat_missing_in(lab: TestLab) {
    let vip = sa(lab.service("tidb/demo-pd").cluster_ip.unwrap(), 2379);
    let on_node1 = &lab.pod("tidb/demo-tikv-0").netns;
    let on_node2 = &lab.pod("tidb/demo-tikv-1").netns;
    lab.fault("dnat-missing node-1 tidb/demo-pd:2379");
    assert_ne!(probe::tcp(on_node1, vip, DROP_T), Reach::Ok, "VIP broken on node-1");
    assert_eq!(probe::tcp(on_node1, sa(lab.pod("tidb/demo-pd-1").ip, 2379), T), Reach::Ok, "backends fine");
    assert_eq!(probe::tcp(on_node2, vip, T), Reach::Ok, "VIP fine on node-2");
    let discovery = sa(lab.service("tidb/demo-discovery").cluster_ip.unwrap(), 10261);
    assert_eq!(probe::tcp(on_node1, discovery, T), Reach::Ok, "other services fine on node-1");
    lab.heal();
    assert_eq!(probe::tcp(on_node1, vip, T), Reach::Ok);
}

#[test]
fn fault_dnat_missing_breaks_one_vip_on_one_node_iptables() {
    dnat_missing_in(TestLab::up());
}

#[test]
fn fault_dnat_missing_breaks_one_vip_on_one_node_nftables() {
    dnat_missing_in(TestLab::with(|t| t.replace("proxy_mode: iptables", "proxy_mode: nftables")));
}

#[test]
fn fault_dns_down_servfail_and_block() {
    let lab = TestLab::up();
    let name = "demo-pd.tidb.svc.cluster.local.";
    let on_node2 = &lab.pod("tidb/demo-pd-1").netns;
    let on_node3 = &lab.pod("tidb/demo-pd-2").netns;
    let ok = |ns: &str| probe::dns(ns, dns_server(&lab), name, RecordType::A, false, T).map(|a| a.rcode);

    lab.fault("dns-block node-2");
    assert!(ok(on_node2).is_err(), "DNS from node-2 times out");
    assert!(
        probe::dns(on_node2, dns_server(&lab), name, RecordType::A, true, DROP_T).is_err(),
        "over TCP too"
    );
    assert_eq!(ok(on_node3).unwrap(), ResponseCode::NoError, "node-3 resolves");
    lab.heal();
    assert_eq!(ok(on_node2).unwrap(), ResponseCode::NoError);

    lab.fault("dns-servfail");
    // The server follows the fault list within its poll interval.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while ok(on_node3).ok() != Some(ResponseCode::ServFail) {
        assert!(std::time::Instant::now() < deadline, "SERVFAIL never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    lab.heal();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while ok(on_node3).ok() != Some(ResponseCode::NoError) {
        assert!(std::time::Instant::now() < deadline, "SERVFAIL never went away");
        std::thread::sleep(Duration::from_millis(50));
    }

    lab.fault("dns-down");
    assert!(ok(on_node2).is_err() && ok(on_node3).is_err(), "DNS down everywhere");
    assert_eq!(probe::tcp(on_node3, sa(lab.pod("tidb/demo-pd-0").ip, 2379), T), Reach::Ok, "the rest works");
    lab.heal();
    assert_eq!(ok(on_node2).unwrap(), ResponseCode::NoError);
}

#[test]
fn fault_loss_drops_a_share_of_packets() {
    let lab = TestLab::up();
    let (src, dst) = (lab.node("node-1"), lab.node("node-3"));
    lab.fault("loss node-3 50");
    let answered = (0..60)
        .filter(|_| probe::ping(&src.netns, dst.ip.into(), 56, Duration::from_millis(150)).unwrap())
        .count();
    // Each way loses 50%: about a quarter of round trips survive.
    assert!((3..=35).contains(&answered), "{answered}/60 answered");
    lab.heal();
    let answered = (0..20).filter(|_| probe::ping(&src.netns, dst.ip.into(), 56, T).unwrap()).count();
    assert_eq!(answered, 20);
}

#[test]
fn fault_mtu_black_holes_big_packets_only() {
    let lab = TestLab::up();
    let (src, dst) = (lab.pod("tidb/demo-pd-0"), lab.pod("tidb/demo-pd-1"));
    lab.fault("mtu node-2 1200");
    assert!(probe::ping(&src.netns, dst.ip.into(), 1000, T).unwrap(), "small packets pass");
    assert!(!probe::ping(&src.netns, dst.ip.into(), 1400, DROP_T).unwrap(), "big packets vanish");
    assert!(
        probe::ping(&src.netns, lab.pod("tidb/demo-pd-2").ip.into(), 1400, T).unwrap(),
        "other nodes fine"
    );
    lab.heal();
    assert!(probe::ping(&src.netns, dst.ip.into(), 1400, T).unwrap());
}

#[test]
fn fault_loss_with_a_direction_hits_only_that_way() {
    let lab = TestLab::up();
    let (n1, n3) = (lab.node("node-1"), lab.node("node-3"));
    let (pd0, pd2, tikv2) =
        (lab.pod("tidb/demo-pd-0"), lab.pod("tidb/demo-pd-2"), lab.pod("tidb/demo-tikv-2"));
    let into_node3 = || {
        (
            udp_arrivals(&n1.netns, &n3.netns, n3.ip.into(), 100),
            udp_arrivals(&pd0.netns, &pd2.netns, pd2.ip.into(), 100),
        )
    };
    let out_of_node3 = || {
        (
            udp_arrivals(&n3.netns, &n1.netns, n1.ip.into(), 100),
            udp_arrivals(&pd2.netns, &pd0.netns, pd0.ip.into(), 100),
        )
    };
    // 100% makes the direction check deterministic.
    lab.fault("loss node-3 100 --direction in");
    assert_eq!(into_node3(), (0, 0), "into node-3 and its pods: all lost");
    assert_eq!(out_of_node3(), (3, 3), "out of node-3: untouched");
    assert_eq!(udp_arrivals(&tikv2.netns, &pd2.netns, pd2.ip.into(), 100), 3, "inside node-3: untouched");
    lab.heal();
    assert_eq!(into_node3(), (3, 3));

    lab.fault("loss node-3 100 --direction out");
    assert_eq!(out_of_node3(), (0, 0), "out of node-3 and its pods: all lost");
    assert_eq!(into_node3(), (3, 3), "into node-3: untouched");
    lab.heal();
    assert_eq!(out_of_node3(), (3, 3));
    assert_eq!(into_node3(), (3, 3));
}

#[test]
fn fault_mtu_with_a_direction_black_holes_big_packets_one_way() {
    let lab = TestLab::up();
    let (pd0, pd1) = (lab.pod("tidb/demo-pd-0"), lab.pod("tidb/demo-pd-1"));
    let into_node2 = |size| udp_arrivals(&pd0.netns, &pd1.netns, pd1.ip.into(), size);
    let out_of_node2 = |size| udp_arrivals(&pd1.netns, &pd0.netns, pd0.ip.into(), size);
    lab.fault("mtu node-2 1200 --direction in");
    assert_eq!(into_node2(1400), 0, "big packets into node-2 vanish");
    assert_eq!(into_node2(1000), 3, "small packets into node-2 pass");
    assert_eq!(out_of_node2(1400), 3, "big packets out of node-2 pass");
    lab.heal();
    assert_eq!(into_node2(1400), 3);

    lab.fault("mtu node-2 1200 --direction out");
    assert_eq!(out_of_node2(1400), 0, "big packets out of node-2 vanish");
    assert_eq!(out_of_node2(1000), 3, "small packets out of node-2 pass");
    assert_eq!(into_node2(1400), 3, "big packets into node-2 pass");
    lab.heal();
    assert_eq!(out_of_node2(1400), 3);
    assert_eq!(into_node2(1400), 3);
}

#[test]
fn fault_pod_filter_drops_one_set_of_sources_into_one_pod() {
    let lab = TestLab::up();
    let pd1 = lab.pod("tidb/demo-pd-1");
    let (on_node1, on_node3, on_node2) =
        (lab.pod("tidb/demo-pd-0"), lab.pod("tidb/demo-pd-2"), lab.pod("tidb/demo-tikv-1"));
    let node1 = &lab.node("node-1").netns;
    let node3 = &lab.node("node-3").netns;

    lab.fault("pod-filter tidb/demo-pd-1 node/node-1");
    assert_eq!(probe::tcp(&on_node1.netns, sa(pd1.ip, 2379), DROP_T), Reach::Timeout);
    assert!(!probe::ping(&on_node1.netns, pd1.ip.into(), 56, DROP_T).unwrap(), "ICMP too");
    assert_eq!(udp_arrivals(&on_node1.netns, &pd1.netns, pd1.ip.into(), 100), 0, "UDP too");
    assert!(
        !matches!(probe::ping(node1, pd1.ip.into(), 56, DROP_T), Ok(true)),
        "the node's own address is filtered too"
    );
    assert_eq!(probe::tcp(&on_node3.netns, sa(pd1.ip, 2379), T), Reach::Ok, "node-3 still reaches it");
    assert!(probe::ping(&on_node3.netns, pd1.ip.into(), 56, T).unwrap());
    assert_eq!(probe::tcp(&on_node2.netns, sa(pd1.ip, 2379), T), Reach::Ok, "its own node still reaches it");
    assert_eq!(probe::tcp(&on_node1.netns, sa(on_node3.ip, 2379), T), Reach::Ok, "node-1 reaches others");
    lab.heal();
    assert_eq!(probe::tcp(&on_node1.netns, sa(pd1.ip, 2379), T), Reach::Ok);
    assert!(probe::ping(node1, pd1.ip.into(), 56, T).unwrap());

    lab.fault("pod-filter tidb/demo-pd-1 namespace/tidb");
    assert_eq!(probe::tcp(&on_node3.netns, sa(pd1.ip, 2379), DROP_T), Reach::Timeout);
    assert_eq!(probe::tcp(&on_node2.netns, sa(pd1.ip, 2379), DROP_T), Reach::Timeout, "same node too");
    assert_eq!(probe::tcp(node3, sa(pd1.ip, 2379), T), Reach::Ok, "a node is in no namespace");
    assert_eq!(probe::tcp(&on_node3.netns, sa(on_node1.ip, 2379), T), Reach::Ok, "other pods fine");
    lab.heal();
    assert_eq!(probe::tcp(&on_node3.netns, sa(pd1.ip, 2379), T), Reach::Ok);
    assert_eq!(probe::tcp(&on_node2.netns, sa(pd1.ip, 2379), T), Reach::Ok);
}

#[test]
fn fault_dns_loss_leaves_most_queries_unanswered_at_99_percent() {
    let lab = TestLab::up();
    let name = "demo-pd.tidb.svc.cluster.local.";
    // From pods on every node: the loss is at the server.
    let sources: Vec<&str> = ["tidb/demo-pd-0", "tidb/demo-pd-1", "tidb/demo-tikv-2"]
        .iter()
        .map(|p| lab.pod(p).netns.as_str())
        .collect();
    let answered = |tries: usize, timeout: Duration| {
        sources
            .iter()
            .cycle()
            .take(tries)
            .filter(|ns| probe::dns(ns, dns_server(&lab), name, RecordType::A, false, timeout).is_ok())
            .count()
    };
    lab.fault("dns-loss 99");
    // Each query is answered with probability 1%: more than 5 of 30 is all but impossible.
    let got = answered(30, Duration::from_millis(150));
    assert!(got <= 5, "{got}/30 queries answered at 99% loss");
    assert!(
        (0..3).all(|_| probe::dns(sources[0], dns_server(&lab), name, RecordType::A, true, DROP_T).is_err()),
        "over TCP too"
    );
    assert_eq!(
        probe::tcp(sources[1], sa(lab.pod("tidb/demo-pd-0").ip, 2379), T),
        Reach::Ok,
        "the rest works"
    );
    lab.heal();
    assert_eq!(answered(30, T), 30, "every query answered after heal");
}

#[test]
fn fault_route_missing_breaks_one_direction_of_one_pair() {
    let lab = TestLab::up();
    let (n1, n3) = (lab.pod("tidb/demo-pd-0"), lab.pod("tidb/demo-pd-2"));
    lab.fault("route-missing node-1 node-3");
    assert_ne!(probe::tcp(&n1.netns, sa(n3.ip, 2379), DROP_T), Reach::Ok);
    assert_eq!(probe::tcp(&n1.netns, sa(lab.pod("tidb/demo-pd-1").ip, 2379), T), Reach::Ok);
    let routes =
        netdiag_lab::netcmd::run(None, "ip", &["-n", &lab.node("node-1").netns, "route"], None).unwrap();
    assert!(!routes.contains("10.244.3.0/24"), "{routes}");
    lab.heal();
    assert_eq!(probe::tcp(&n1.netns, sa(n3.ip, 2379), T), Reach::Ok);
}

fn read_sysctl(netns: &str, key: &str) -> String {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    netdiag_netns::run_in(&LabPlan::netns_path(netns), move || std::fs::read_to_string(path))
        .unwrap()
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn fault_keepalive_and_idle_cut_set_sysctls_and_heal_resets_them() {
    let lab = TestLab::up();
    let tikv = &lab.pod("tidb/demo-tikv-0").netns;
    let node2 = &lab.node("node-2").netns;
    assert_eq!(read_sysctl(tikv, "net.ipv4.tcp_keepalive_time"), "7200");
    lab.fault("keepalive tidb/demo-tikv-0 300");
    lab.fault("idle-cut node-2 30");
    assert_eq!(read_sysctl(tikv, "net.ipv4.tcp_keepalive_time"), "300");
    assert_eq!(read_sysctl(node2, "net.netfilter.nf_conntrack_tcp_timeout_established"), "30");
    assert_eq!(read_sysctl(node2, "net.netfilter.nf_conntrack_tcp_loose"), "0");
    assert_eq!(read_sysctl(&lab.pod("tidb/demo-tikv-1").netns, "net.ipv4.tcp_keepalive_time"), "7200");
    lab.heal();
    assert_eq!(read_sysctl(tikv, "net.ipv4.tcp_keepalive_time"), "7200");
    assert_eq!(read_sysctl(node2, "net.netfilter.nf_conntrack_tcp_timeout_established"), "432000");
}

#[test]
fn heal_by_id_keeps_the_other_faults() {
    let lab = TestLab::up();
    let (src, dst) = (lab.pod("tidb/demo-tikv-0"), lab.pod("tidb/demo-pd-1"));
    let closed = lab.fault("port-closed tidb/demo-pd-1 2379");
    lab.fault("port-drop tidb/demo-pd-1 2380");
    netdiag_lab::control::heal(lab.name(), Some(closed.id)).unwrap();
    assert_eq!(probe::tcp(&src.netns, sa(dst.ip, 2379), T), Reach::Ok);
    assert_eq!(probe::tcp(&src.netns, sa(dst.ip, 2380), DROP_T), Reach::Timeout);
    let err = netdiag_lab::control::heal(lab.name(), Some(999)).unwrap_err().to_string();
    assert!(err.contains("no active fault 999"), "{err}");
    let err = netdiag_lab::control::fault(lab.name(), "explode", &[]).unwrap_err().to_string();
    assert!(err.contains("unknown fault \"explode\""), "{err}");
}

// ---- seal, status and clean-up ----

fn host_interfaces() -> Vec<String> {
    let out = netdiag_lab::netcmd::run(None, "ip", &["-o", "link", "show"], None).unwrap();
    out.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|s| s.split('@').next().unwrap_or(s).to_owned())
        .collect()
}

#[test]
fn the_lab_is_sealed_from_the_host() {
    let before = host_interfaces();
    let lab = TestLab::up();
    assert_eq!(host_interfaces(), before, "the lab added no interface to the host namespace");
    // Inside: nodes have no default route, and an outside address is unreachable from
    // everywhere (the host's own address, and a documentation address).
    let outside: Vec<IpAddr> =
        vec!["198.51.100.7".parse().unwrap(), "192.0.2.2".parse().unwrap(), "8.8.8.8".parse().unwrap()];
    for node in &lab.plan.nodes {
        let routes =
            netdiag_lab::netcmd::run(None, "ip", &["-n", &node.netns, "route", "show", "default"], None)
                .unwrap();
        assert!(routes.trim().is_empty(), "{} has a default route: {routes}", node.name);
    }
    // Nodes and the underlay have no route out at all: connecting fails at once. Pods route
    // to their node, which has no route either (the SYN dies there).
    for ns in lab.plan.namespaces() {
        let is_pod = lab.plan.pods.iter().any(|p| p.netns == ns);
        for ip in &outside {
            let r = probe::tcp(&ns, sa(*ip, 443), DROP_T);
            if is_pod {
                assert_ne!(r, Reach::Ok, "{ns} -> {ip}");
            } else {
                assert_eq!(r, Reach::Unreachable, "{ns} -> {ip}");
                let get =
                    netdiag_lab::netcmd::run(None, "ip", &["-n", &ns, "route", "get", &ip.to_string()], None);
                assert!(get.is_err(), "{ns} has a route to {ip}: {get:?}");
            }
        }
    }
    // Every veth in the lab has its peer in a lab namespace: the host namespace id never shows
    // up as a link's peer namespace.
    for ns in lab.plan.namespaces() {
        let ids = netdiag_lab::netcmd::run(None, "ip", &["-n", &ns, "netns", "list-id"], None).unwrap();
        let links = netdiag_lab::netcmd::run(None, "ip", &["-n", &ns, "-j", "link", "show"], None).unwrap();
        let links: serde_json::Value = serde_json::from_str(&links).unwrap();
        for link in links.as_array().unwrap() {
            if let Some(id) = link.get("link_netnsid").and_then(|v| v.as_i64()) {
                let line = ids.lines().find(|l| l.starts_with(&format!("nsid {id} "))).unwrap_or("");
                assert!(
                    line.contains(&format!("({}-", lab.name())) || line.contains(&format!("{}-", lab.name())),
                    "{ns}: {} peers into {line:?}",
                    link["ifname"]
                );
            }
        }
    }
    // From the host, lab prefixes route nowhere near the lab: no host route points into it.
    for ip in ["10.244.1.2", "10.96.0.20", "172.29.0.11"] {
        let route = netdiag_lab::netcmd::run(None, "ip", &["route", "get", ip], None).unwrap_or_default();
        assert!(!lab.plan.namespaces().iter().any(|n| route.contains(n.as_str())), "{route}");
        assert!(
            !route.contains("veth") && !route.contains("br0"),
            "host route to {ip} enters the lab: {route}"
        );
    }
}

#[test]
fn status_lists_every_namespace_interface_address_and_fault() {
    let lab = TestLab::up();
    lab.fault("loss node-2 10");
    let s = netdiag_lab::status::status(&lab.state).unwrap();
    assert!(s.up);
    assert_eq!(s.namespaces.len(), lab.plan.namespaces().len());
    let pd0 = s.namespaces.iter().find(|n| n.of.as_deref() == Some("tidb/demo-pd-0")).unwrap();
    let eth0 = pd0.interfaces.iter().find(|i| i.name == "eth0").unwrap();
    let global: Vec<&String> = eth0.addresses.iter().filter(|a| !a.starts_with("fe80")).collect();
    assert_eq!(global, vec![&format!("{}/32", lab.pod("tidb/demo-pd-0").ip)]);
    assert_eq!(eth0.state, "UP");
    assert_eq!(s.faults.len(), 1);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["faults"][0]["fault"], "loss");
    assert_eq!(json["namespaces"][0]["role"], "underlay");
}

fn mounts_mentioning(name: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&format!("/netns/{name}-")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn down_leaves_nothing_behind() {
    let lab = TestLab::up();
    let name = lab.name().to_owned();
    let namespaces = lab.plan.namespaces();
    let state_dir = lab.state.dir.clone();
    // A process living inside the lab (like an agent) must be stopped by down.
    let mut sleeper = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.node("node-1").netns, "sleep", "300"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let report = lab.down();
    assert_eq!(report.namespaces.len(), namespaces.len());
    for ns in &namespaces {
        assert!(!LabPlan::netns_path(ns).exists(), "{ns} left");
    }
    assert!(mounts_mentioning(&name).is_empty(), "{:?}", mounts_mentioning(&name));
    assert!(!state_dir.exists());
    let status = sleeper.wait().unwrap();
    assert!(!status.success(), "the process inside the lab was stopped");
}

#[test]
fn up_after_a_crash_cleans_up_first() {
    let lab = TestLab::up();
    let topo_name = lab.name().to_owned();
    // A crash: namespaces and state stay, the server is gone.
    let plan = lab.crash();
    let topo = netdiag_lab::topology::Topology::open_lab()
        .unwrap()
        .with_overrides(&netdiag_lab::topology::Overrides {
            name: Some(topo_name.clone()),
            ..Default::default()
        })
        .unwrap();
    let (state, report) = netdiag_lab::control::up(&topo).unwrap();
    let cleaned = report.cleaned_up.expect("the leftover lab was cleaned up");
    assert_eq!(cleaned.namespaces.len(), plan.namespaces().len());
    assert!(state.exists());
    netdiag_lab::control::down(&topo_name).unwrap();
    assert!(plan.namespaces().iter().all(|n| !LabPlan::netns_path(n).exists()));
}
