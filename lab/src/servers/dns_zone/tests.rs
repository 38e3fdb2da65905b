//! Table tests for [`DnsZone`]: one small dual-stack inventory, one `check` per question.

use super::*;

use crate::servers::fixtures::{inventory, zone};

fn ips(list: &[&str]) -> Answer {
    Answer::Records(list.iter().map(|s| s.parse().unwrap()).collect())
}

#[track_caller]
fn check(zone: &DnsZone, name: &str, qtype: RecordType, expected: Answer) {
    assert_eq!(zone.lookup(name, qtype), expected, "{name} {qtype}");
}

#[test]
fn cluster_ip_services_answer_per_family() {
    let z = zone();
    let name = "demo-pd.tidb.svc.cluster.local";
    check(&z, name, RecordType::A, ips(&["10.96.0.20"]));
    check(&z, name, RecordType::AAAA, ips(&["fd00:10:96::20"]));
    check(&z, name, RecordType::ANY, ips(&["10.96.0.20", "fd00:10:96::20"]));
    check(&z, name, RecordType::TXT, Answer::NoData);
    check(&z, name, RecordType::SRV, Answer::NoData);
}

#[test]
fn names_are_case_insensitive_and_dot_tolerant() {
    let z = zone();
    assert_eq!(z.domain(), "cluster.local");
    for name in ["DEMO-PD.tidb.Svc.cluster.local.", "demo-pd.tidb.svc.cluster.local"] {
        check(&z, name, RecordType::A, ips(&["10.96.0.20"]));
    }
    for bad in ["", ".", "demo-pd..tidb.svc.cluster.local", "demo-pd.tidb.svc.cluster.local.."] {
        check(&z, bad, RecordType::A, Answer::NxDomain);
    }
}

#[test]
fn headless_services_list_ready_endpoints_once() {
    let z = zone();
    let name = "demo-pd-peer.tidb.svc.cluster.local";
    check(&z, name, RecordType::A, ips(&["10.244.1.2", "10.244.1.3", "10.244.1.9"]));
    check(&z, name, RecordType::AAAA, ips(&["fd00:10:244:1::2"]));
    // No ready endpoint: the name does not exist, as with CoreDNS.
    check(&z, "demo-tikv-peer.tidb.svc.cluster.local", RecordType::A, Answer::NxDomain);
}

#[test]
fn headless_endpoints_get_host_names() {
    let z = zone();
    let host = |h: &str| format!("{h}.demo-pd-peer.tidb.svc.cluster.local");
    // hostname (lowercased), both families under one name
    check(&z, &host("demo-pd-0"), RecordType::A, ips(&["10.244.1.2"]));
    check(&z, &host("demo-pd-0"), RecordType::AAAA, ips(&["fd00:10:244:1::2"]));
    // no hostname: the pod's name
    check(&z, &host("demo-pd-1"), RecordType::A, ips(&["10.244.1.3"]));
    check(&z, &host("demo-pd-1"), RecordType::AAAA, Answer::NoData);
    // not ready: no record
    check(&z, &host("demo-pd-2"), RecordType::A, Answer::NxDomain);
    // no hostname and no pod: the dashed address
    check(&z, &host("10-244-1-9"), RecordType::A, ips(&["10.244.1.9"]));
    check(&z, &host("demo-tikv-0"), RecordType::A, Answer::NxDomain);
}

#[test]
fn pod_records_accept_any_spelling_of_the_address() {
    let z = zone();
    check(&z, "10-244-1-2.tidb.pod.cluster.local", RecordType::A, ips(&["10.244.1.2"]));
    check(&z, "10-244-1-2.tidb.pod.cluster.local", RecordType::AAAA, Answer::NoData);
    for v6 in ["fd00-10-244-1--2", "FD00-10-244-1-0-0-0-2", "fd00-0010-0244-0001-0000-0000-0000-0002"] {
        let name = format!("{v6}.tidb.pod.cluster.local");
        check(&z, &name, RecordType::AAAA, ips(&["fd00:10:244:1::2"]));
    }
    // Verified pods: the address must belong to a pod of that namespace.
    check(&z, "10-244-1-2.default.pod.cluster.local", RecordType::A, Answer::NxDomain);
    check(&z, "10-244-1-99.tidb.pod.cluster.local", RecordType::A, Answer::NxDomain);
    check(&z, "not-an-ip.tidb.pod.cluster.local", RecordType::A, Answer::NxDomain);
    check(&z, "x.10-244-1-2.tidb.pod.cluster.local", RecordType::A, Answer::NxDomain);
}

#[test]
fn intermediate_names_and_the_apex_are_nodata() {
    let z = zone();
    for name in [
        "cluster.local",
        "svc.cluster.local",
        "pod.cluster.local",
        "tidb.svc.cluster.local",
        "tidb.pod.cluster.local",
    ] {
        check(&z, name, RecordType::A, Answer::NoData);
    }
    check(&z, "default.svc.cluster.local", RecordType::A, Answer::NxDomain);
    check(&z, "nope.tidb.svc.cluster.local", RecordType::A, Answer::NxDomain);
    check(&z, "x.demo-pd.tidb.svc.cluster.local", RecordType::A, Answer::NxDomain);
}

#[test]
fn everything_outside_the_domain_is_nxdomain() {
    let z = zone();
    for name in ["example.com", "local", "demo-pd.tidb.svc.cluster.local.example.com", "xcluster.local"] {
        check(&z, name, RecordType::A, Answer::NxDomain);
        assert!(!z.contains(name), "{name}");
    }
    assert!(z.contains("Anything.Cluster.Local."));
}

#[test]
fn an_empty_inventory_has_only_the_apex() {
    let mut inv = inventory();
    inv.pods.clear();
    inv.services.clear();
    let z = DnsZone::from_inventory(&inv);
    assert_eq!(z, DnsZone::empty("cluster.local"));
    check(&z, "cluster.local", RecordType::A, Answer::NoData);
    check(&z, "tidb.svc.cluster.local", RecordType::A, Answer::NxDomain);
}

proptest::proptest! {
    #[test]
    fn lookup_never_panics(name in ".{0,300}", qtype in proptest::prelude::any::<u16>()) {
        let _ = zone().lookup(&name, RecordType::from(qtype));
    }
}
