//! The derived plan on the default lab's inventory (`testdata/lab-inventory.json`, what
//! `netdiag lab` writes for the default topology).

use std::time::Duration;

use super::*;

pub(crate) fn inventory() -> Inventory {
    Inventory::from_yaml(include_str!("../testdata/lab-inventory.json")).unwrap()
}

pub(crate) fn opts() -> PlanOptions {
    PlanOptions {
        schedule: Schedule::new(Duration::from_secs(2), Duration::from_secs(1), 64, 500).unwrap(),
        http_checks: vec![HttpCheck {
            service: "tidb/demo-pd".parse().unwrap(),
            port: Port::new(2379).unwrap(),
            path: HttpPath::new("/pd/api/v1/members").unwrap(),
        }],
        mtu: true,
        sources: SourcePods::KnownNetns,
    }
}

fn plan_for(node: &str) -> ProbePlan {
    derive_plan(&inventory(), &node.parse().unwrap(), &opts(), NonZeroU64::MIN)
}

fn count(plan: &ProbePlan, f: impl Fn(&PlannedProbe) -> bool) -> usize {
    plan.probes.iter().filter(|p| f(p)).count()
}

#[test]
fn sources_are_the_node_and_its_pods_only() {
    let plan = plan_for("node-1");
    let sources: std::collections::BTreeSet<String> =
        plan.probes.iter().map(|p| p.source.to_string()).collect();
    let want: std::collections::BTreeSet<String> =
        ["node/node-1", "kube-system/coredns-0", "tidb/demo-pd-0", "tidb/demo-tikv-0"]
            .map(String::from)
            .into();
    assert_eq!(sources, want);
}

#[test]
fn every_pod_probes_every_other_pod_and_port() {
    let plan = plan_for("node-2");
    let src = Source::Pod("tidb/demo-pd-1".parse().unwrap());
    let icmp = count(&plan, |p| p.source == src && p.kind == ProbeKind::Icmp);
    assert_eq!(icmp, 9, "10 pods, minus itself");
    let to_pd0 = count(&plan, |p| {
        p.source == src
            && matches!(&p.target, Target::Pod { pod, port: Some(_), .. } if pod.to_string() == "tidb/demo-pd-0")
    });
    assert_eq!(to_pd0, 2, "pd-0 listens on 2379 and 2380");
}

#[test]
fn services_are_probed_by_vip_and_by_each_endpoint() {
    let plan = plan_for("node-3");
    let src = Source::Pod("tidb/demo-tikv-2".parse().unwrap());
    let is_pd = |p: &PlannedProbe, via: fn(&ServiceVia) -> bool| {
        p.source == src
            && p.kind == ProbeKind::Tcp
            && matches!(&p.target, Target::Service { service, via: v, .. } if service.to_string() == "tidb/demo-pd" && via(v))
    };
    assert_eq!(count(&plan, |p| is_pd(p, |v| *v == ServiceVia::ClusterIp)), 1);
    assert_eq!(count(&plan, |p| is_pd(p, |v| matches!(v, ServiceVia::Endpoint(_)))), 3);
    // Headless services have no VIP but their endpoints are probed.
    let peer = count(&plan, |p| {
        p.source == src
            && matches!(&p.target, Target::Service { service, .. } if service.to_string() == "tidb/demo-pd-peer")
    });
    assert_eq!(peer, 6, "3 endpoints × 2 ports");
}

#[test]
fn dns_names_nameservers_http_nodeports_and_mtu() {
    let plan = plan_for("node-1");
    let src = Source::Pod("tidb/demo-pd-0".parse().unwrap());
    let names: Vec<String> = plan
        .probes
        .iter()
        .filter(|p| p.source == src)
        .filter_map(|p| match &p.target {
            Target::Dns { name, nameserver: None, .. } => Some(name.to_string()),
            _ => None,
        })
        .collect();
    assert!(
        names.contains(&"demo-pd.tidb".to_owned()) && names.contains(&"kube-dns.kube-system".to_owned()),
        "{names:?}"
    );
    let direct =
        count(&plan, |p| p.source == src && matches!(&p.target, Target::Dns { nameserver: Some(_), .. }));
    assert_eq!(direct, 2, "UDP and TCP to 10.96.0.10");
    let http = count(&plan, |p| p.source == src && p.kind == ProbeKind::Http);
    assert_eq!(http, 1);
    let node = Source::Node("node-1".parse().unwrap());
    let nodeports = count(&plan, |p| {
        p.source == node && matches!(&p.target, Target::Service { via: ServiceVia::NodePort, .. })
    });
    assert_eq!(nodeports, 3, "demo-tidb's NodePort on each of 3 nodes");
    let mtu = count(&plan, |p| p.source == node && p.kind == ProbeKind::Mtu);
    assert_eq!(mtu, 2, "one pod on each other node");
    assert!(plan.probes.iter().all(|p| p.check().is_ok()));
}

#[test]
fn pods_without_a_namespace_are_sources_only_when_asked() {
    let mut inv = inventory();
    for pod in &mut inv.pods {
        pod.netns = None;
    }
    let node = "node-1".parse().unwrap();
    let known = derive_plan(&inv, &node, &opts(), NonZeroU64::MIN);
    assert!(known.probes.iter().all(|p| matches!(p.source, Source::Node(_))));
    let all = derive_plan(&inv, &node, &PlanOptions { sources: SourcePods::All, ..opts() }, NonZeroU64::MIN);
    assert_eq!(all, plan_for("node-1"), "the same plan as when every namespace is known");
}
