//! The session stream: `Hello`, and both `AgentMessage` and `CollectorMessage` with every body;
//! errors deep inside a body carry the body's name in their path.

use netdiag_model::{
    AgentMessage, CollectorMessage, Hello, LocalPod, NodePods, RunDone, RunProgress, RunUpdate, Seq, Source,
};

use super::fixtures::*;
use crate::v1;
use crate::v1::agent_message::Body as Up;
use crate::v1::collector_message::Body as Down;

fn up(m: &mut v1::AgentMessage) -> &mut Up {
    m.body.as_mut().unwrap()
}

fn down(m: &mut v1::CollectorMessage) -> &mut Down {
    m.body.as_mut().unwrap()
}

#[test]
fn session_messages_round_trip() {
    round_trip::<Hello, v1::Hello>(hello());
    let progress = |update| RunProgress { run_id: "run-42".parse().unwrap(), update };
    for m in [
        AgentMessage::Hello(hello()),
        AgentMessage::Results(batch()),
        AgentMessage::Inspection(inspection()),
        AgentMessage::RunProgress(progress(RunUpdate::Step(run_step()))),
        AgentMessage::RunProgress(progress(RunUpdate::Done(RunDone::Cancelled))),
    ] {
        round_trip::<AgentMessage, v1::AgentMessage>(m);
    }
    for m in [
        CollectorMessage::Ack(Seq::new(u64::MAX).unwrap()),
        CollectorMessage::Plan(plan()),
        CollectorMessage::Run(run_request(run_targets()[2].clone())),
        CollectorMessage::Cancel("run-42".parse().unwrap()),
        CollectorMessage::Inspect(None),
        CollectorMessage::Inspect(Some(Source::Pod(pod("tidb/demo-pd-0")))),
        CollectorMessage::Pods(node_pods()),
        CollectorMessage::Pods(NodePods { pods: vec![], node_ips: vec![], dns_ips: vec![], ..node_pods() }),
    ] {
        round_trip::<CollectorMessage, v1::CollectorMessage>(m);
    }
}

fn node_pods() -> NodePods {
    NodePods {
        pods: vec![
            LocalPod {
                pod: pod("tidb/demo-pd-0"),
                ips: vec!["10.244.1.5".parse().unwrap(), "fd42:244:0:1::5".parse().unwrap()],
                host_network: false,
            },
            LocalPod {
                pod: pod("kube-system/coredns-0"),
                ips: vec!["10.244.1.2".parse().unwrap()],
                host_network: false,
            },
        ],
        node_ips: vec!["172.29.0.11".parse().unwrap()],
        dns_ips: vec!["10.96.0.10".parse().unwrap(), "fd42:96::a".parse().unwrap()],
        cluster_domain: "cluster.local".parse().unwrap(),
    }
}

fn pods_of(m: &mut v1::CollectorMessage) -> &mut v1::NodePods {
    match down(m) {
        Down::Pods(p) => p,
        _ => panic!("not node pods"),
    }
}

#[test]
fn hostile_node_pods() {
    let valid = v1::CollectorMessage::from(CollectorMessage::Pods(node_pods()));
    check_rejects::<CollectorMessage, _>(
        &valid,
        &[
            (
                "bad pod name",
                |m| pods_of(m).pods[1].name = "Core_DNS".into(),
                "pods.pods[1].name",
                "Core_DNS",
            ),
            (
                "bad pod ip",
                |m| pods_of(m).pods[0].ips[0] = "10.244.1".into(),
                "pods.pods[0].ips[0]",
                "not an IP",
            ),
            (
                "too many pods",
                |m| pods_of(m).pods = vec![v1::LocalPod::default(); 4097],
                "pods.pods",
                "more than the 4096",
            ),
            ("bad node ip", |m| pods_of(m).node_ips[0] = "node-1".into(), "pods.node_ips[0]", "not an IP"),
            ("bad dns ip", |m| pods_of(m).dns_ips[1] = "::g".into(), "pods.dns_ips[1]", "not an IP"),
            (
                "too many dns ips",
                |m| pods_of(m).dns_ips = vec!["10.96.0.10".into(); 65],
                "pods.dns_ips",
                "more than the 64",
            ),
            ("no domain", |m| pods_of(m).cluster_domain = String::new(), "pods.cluster_domain", ""),
            (
                "bad domain",
                |m| pods_of(m).cluster_domain = "cluster..local".into(),
                "pods.cluster_domain",
                "",
            ),
        ],
    );
}

#[test]
fn capabilities_are_a_set() {
    let mut h = v1::Hello::from(hello());
    let first = h.capabilities[0];
    h.capabilities.push(first);
    assert_eq!(Hello::try_from(h), Ok(hello()));
}

fn hello_of(m: &mut v1::AgentMessage) -> &mut v1::Hello {
    match up(m) {
        Up::Hello(h) => h,
        _ => panic!("not a hello"),
    }
}

#[test]
fn hostile_hellos() {
    let valid = v1::AgentMessage::from(AgentMessage::Hello(hello()));
    check_rejects::<AgentMessage, _>(
        &valid,
        &[
            ("no body", |m| m.body = None, "body", "is missing"),
            ("bad node", |m| hello_of(m).node = "node_1".into(), "hello.node", "node_1"),
            (
                "no version",
                |m| hello_of(m).agent_version = String::new(),
                "hello.agent_version",
                "agent version is empty",
            ),
            (
                "version with space",
                |m| hello_of(m).agent_version = "1.0 beta".into(),
                "hello.agent_version",
                "contains ' '",
            ),
            (
                "capability 0",
                |m| hello_of(m).capabilities.push(0),
                "hello.capabilities[3]",
                "capability is unspecified",
            ),
            (
                "capability 42",
                |m| hello_of(m).capabilities[1] = 42,
                "hello.capabilities[1]",
                "42 is not a known capability",
            ),
            (
                "65 capabilities",
                |m| hello_of(m).capabilities = vec![1; 65],
                "hello.capabilities",
                "more than the 64",
            ),
            (
                "bad pod namespace",
                |m| hello_of(m).pods[1].namespace = "a.b".into(),
                "hello.pods[1].namespace",
                "a.b",
            ),
            (
                "bad pod ip",
                |m| hello_of(m).pods[0].ips[1] = "fd00::2::3".into(),
                "hello.pods[0].ips[1]",
                "not an IP",
            ),
            (
                "too many pods",
                |m| hello_of(m).pods = vec![v1::LocalPod::default(); 4097],
                "hello.pods",
                "more than the 4096",
            ),
            (
                "too many node ips",
                |m| hello_of(m).node_ips = vec!["10.0.0.1".into(); 65],
                "hello.node_ips",
                "more than the 64",
            ),
            (
                "seq 0",
                |m| hello_of(m).first_unacked_seq = 0,
                "hello.first_unacked_seq",
                "sequences start at 1",
            ),
            (
                "bad instance id",
                |m| hello_of(m).instance_id = "a/b".into(),
                "hello.instance_id",
                "contains '/'",
            ),
            (
                "long instance id",
                |m| hello_of(m).instance_id = "a".repeat(129),
                "hello.instance_id",
                "more than the 128",
            ),
        ],
    );
}

#[test]
fn errors_deep_in_a_body_carry_the_whole_path() {
    let mut m = v1::AgentMessage::from(AgentMessage::Results(batch()));
    if let Up::Results(b) = up(&mut m)
        && let Some(v1::target::Kind::Pod(p)) = b.results[3].target.as_mut().and_then(|t| t.kind.as_mut())
    {
        p.ip = "10.0.0.999".into();
    }
    let err = AgentMessage::try_from(m).unwrap_err();
    assert_eq!(err.to_string(), "results.results[3].target.pod.ip: \"10.0.0.999\" is not an IP address");
}

#[test]
fn hostile_collector_messages() {
    let ack = v1::CollectorMessage::from(CollectorMessage::Ack(Seq::FIRST));
    check_rejects::<CollectorMessage, _>(
        &ack,
        &[
            ("no body", |m| m.body = None, "body", "is missing"),
            ("ack 0", |m| *down(m) = Down::Ack(v1::Ack { seq: 0 }), "ack.seq", "sequences start at 1"),
            (
                "cancel no id",
                |m| *down(m) = Down::Cancel(v1::CancelRun::default()),
                "cancel.run_id",
                "run id is empty",
            ),
            (
                "inspect unset source kind",
                |m| *down(m) = Down::Inspect(v1::InspectRequest { source: Some(v1::Source::default()) }),
                "inspect.source.kind",
                "is missing",
            ),
            (
                "plan with zero interval",
                |m| *down(m) = Down::Plan(v1::ProbePlan { interval_ms: 0, ..plan().into() }),
                "plan.interval_ms",
                "100 to 3600000",
            ),
            (
                "run without target",
                |m| {
                    *down(m) = Down::Run(v1::RunRequest {
                        target: None,
                        ..run_request(run_targets()[0].clone()).into()
                    })
                },
                "run.target",
                "is missing",
            ),
        ],
    );
}
