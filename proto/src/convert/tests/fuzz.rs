//! Property tests: no input makes a conversion panic, and whatever converts is stable (model →
//! proto → model gives it back, so the outbound direction always produces valid messages).
//! Inputs: arbitrary bytes decoded as each inbound message, valid encodings with bytes mangled,
//! and messages assembled from arbitrary strings and numbers biased towards almost-valid values.

use std::fmt::Debug;

use netdiag_model::{
    AgentInfo, AgentMessage, CollectorMessage, Diagnosis, MatrixQuery, MatrixSnapshot, ProbeResult,
    ProbeRunEvent, ProbeRunRequest, RunProgress, RunUpdate,
};
use proptest::prelude::*;
use prost::Message;

use super::fixtures::*;
use crate::{ConvertError, v1};

/// Converts `w`; if that works, the model value survives a trip back to the wire and in again.
fn convert_is_stable<M, W>(w: W)
where
    M: TryFrom<W, Error = ConvertError> + Clone + PartialEq + Debug,
    W: From<M>,
{
    if let Ok(m) = M::try_from(w) {
        assert_eq!(M::try_from(W::from(m.clone())), Ok(m));
    }
}

/// Decodes `bytes` as `W` (most fail, which is fine) and converts what decodes.
fn decode_and_convert<M, W>(bytes: &[u8])
where
    M: TryFrom<W, Error = ConvertError> + Clone + PartialEq + Debug,
    W: From<M> + Message + Default,
{
    if let Ok(w) = W::decode(bytes) {
        convert_is_stable::<M, W>(w);
    }
}

fn valid_agent_messages() -> Vec<Vec<u8>> {
    let progress = RunProgress { run_id: "run-1".parse().unwrap(), update: RunUpdate::Step(run_step()) };
    let tabled = v1::AgentMessage {
        body: Some(v1::agent_message::Body::Results(crate::convert::tabled_result_batch(&batch()))),
    };
    [
        AgentMessage::Hello(hello()),
        AgentMessage::Results(batch()),
        AgentMessage::Inspection(inspection()),
        AgentMessage::RunProgress(progress),
    ]
    .into_iter()
    .map(v1::AgentMessage::from)
    .chain([tabled])
    .map(|m| m.encode_to_vec())
    .collect()
}

fn valid_collector_messages() -> Vec<Vec<u8>> {
    [CollectorMessage::Plan(plan()), CollectorMessage::Run(run_request(run_targets()[2].clone()))]
        .into_iter()
        .map(|m| v1::CollectorMessage::from(m).encode_to_vec())
        .collect()
}

/// A valid encoding with some bytes overwritten and maybe cut short.
fn mangle(valid: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        0..valid.len(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        any::<prop::sample::Index>(),
    )
        .prop_map(move |(which, edits, cut)| {
            let mut bytes = valid[which].clone();
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            let keep = bytes.len() - cut.index(bytes.len() / 8 + 1);
            bytes.truncate(keep);
            bytes
        })
}

/// Strings biased towards what the fields expect, plus garbage.
fn wire_string() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        prop::sample::select(vec![
            "10.0.0.1",
            "fd00::1",
            "tidb",
            "demo-pd-0",
            "node-1",
            "kubernetes.default",
            "/healthz",
            "10.0.0.0/8",
            "tidb/demo-pd",
            "svc/tidb/demo-pd:2379",
            "node/node-1",
            "10.0.0.1:80",
        ])
        .prop_map(String::from),
        "[a-z0-9.:/_-]{0,24}",
        ".{0,32}",
        "[a-z]{60,70}",
    ]
    .boxed()
}

fn wire_u32() -> BoxedStrategy<u32> {
    prop_oneof![Just(0u32), Just(1), Just(80), Just(1400), Just(65_535), Just(65_536), any::<u32>()].boxed()
}

fn wire_ip_bytes() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![Just(vec![]), Just(vec![10, 0, 0, 1]), prop::collection::vec(any::<u8>(), 0..20)].boxed()
}

fn wire_ref() -> BoxedStrategy<Option<u32>> {
    prop_oneof![Just(None), (0..3u32).prop_map(Some), any::<u32>().prop_map(Some)].boxed()
}

fn wire_enum() -> BoxedStrategy<i32> {
    prop_oneof![0..6i32, 0..62i32, any::<i32>()].boxed()
}

fn pod_name() -> BoxedStrategy<Option<v1::PodName>> {
    prop::option::of(
        (wire_string(), wire_string()).prop_map(|(namespace, name)| v1::PodName { namespace, name }),
    )
    .boxed()
}

fn source() -> BoxedStrategy<Option<v1::Source>> {
    use v1::source::Kind;
    let kind = prop_oneof![
        pod_name().prop_map(|p| p.map(Kind::Pod)),
        wire_string().prop_map(|n| Some(Kind::Node(n))),
    ];
    prop::option::of(kind.prop_map(|kind| v1::Source { kind })).boxed()
}

fn target() -> BoxedStrategy<Option<v1::Target>> {
    use v1::target::Kind;
    let kind = prop_oneof![
        (pod_name(), wire_string(), wire_u32(), wire_ip_bytes())
            .prop_map(|(pod, ip, port, ip_bytes)| { Kind::Pod(v1::PodTarget { pod, ip, port, ip_bytes }) }),
        (pod_name(), wire_string(), wire_u32(), pod_name(), any::<bool>(), wire_ip_bytes()).prop_map(
            |(service, ip, port, endpoint, node_port, ip_bytes)| {
                Kind::Service(v1::ServiceTarget { service, ip, port, endpoint, node_port, ip_bytes })
            }
        ),
        (wire_string(), wire_string(), wire_u32(), wire_ip_bytes())
            .prop_map(|(node, ip, port, ip_bytes)| Kind::Node(v1::NodeTarget { node, ip, port, ip_bytes })),
        (wire_string(), wire_enum(), wire_string(), wire_enum()).prop_map(
            |(name, record_type, nameserver, transport)| {
                Kind::Dns(v1::DnsTarget { name, record_type, nameserver, transport })
            }
        ),
        (wire_string(), wire_u32()).prop_map(|(ip, port)| Kind::Address(v1::AddressTarget { ip, port })),
    ];
    prop::option::of(prop::option::of(kind).prop_map(|kind| v1::Target { kind })).boxed()
}

fn probe_result() -> BoxedStrategy<v1::ProbeResult> {
    (
        (source(), target(), wire_enum(), wire_enum()),
        (
            prop_oneof![Just(0u64), 1..5_000u64, any::<u64>()],
            any::<bool>(),
            prop_oneof![Just(0i64), 1..2_000_000_000_000i64, any::<i64>()],
        ),
        (wire_string(), wire_u32(), wire_u32(), wire_u32(), wire_u32()),
        (prop::collection::vec(wire_string(), 0..3), wire_string(), wire_ref(), wire_ref()),
    )
        .prop_map(
            |(
                (source, target, kind, outcome),
                (rtt_us, rtt_lower_bound, at_unix_ms),
                (detail, sent, received, http_status, path_mtu),
                (answers, nameserver, source_ref, target_ref),
            )| {
                v1::ProbeResult {
                    source,
                    target: target.map(Box::new),
                    kind,
                    outcome,
                    rtt_us,
                    rtt_lower_bound,
                    at_unix_ms,
                    detail,
                    sent,
                    received,
                    http_status,
                    path_mtu,
                    answers,
                    nameserver,
                    source_ref,
                    target_ref,
                }
            },
        )
        .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_and_convert::<AgentMessage, v1::AgentMessage>(&bytes);
        decode_and_convert::<CollectorMessage, v1::CollectorMessage>(&bytes);
        decode_and_convert::<ProbeRunEvent, v1::ProbeRunEvent>(&bytes);
        decode_and_convert::<ProbeRunRequest, v1::ProbeRunRequest>(&bytes);
        decode_and_convert::<MatrixQuery, v1::MatrixRequest>(&bytes);
        decode_and_convert::<MatrixSnapshot, v1::MatrixResponse>(&bytes);
        decode_and_convert::<Diagnosis, v1::DiagnosisResponse>(&bytes);
        decode_and_convert::<Vec<AgentInfo>, v1::ListAgentsResponse>(&bytes);
    }

    #[test]
    fn mangled_agent_messages_never_panic(bytes in mangle(valid_agent_messages())) {
        decode_and_convert::<AgentMessage, v1::AgentMessage>(&bytes);
    }

    #[test]
    fn mangled_collector_messages_never_panic(bytes in mangle(valid_collector_messages())) {
        decode_and_convert::<CollectorMessage, v1::CollectorMessage>(&bytes);
    }

    #[test]
    fn assembled_results_never_panic(
        r in probe_result(),
        sources in prop::collection::vec(source().prop_filter_map("unset", |s| s), 0..3),
        targets in prop::collection::vec(target().prop_filter_map("unset", |t| t), 0..3),
    ) {
        convert_is_stable::<ProbeResult, v1::ProbeResult>(r.clone());
        let batch = v1::ResultBatch { seq: 1, results: vec![r], dropped: 0, sources, targets };
        convert_is_stable::<AgentMessage, v1::AgentMessage>(v1::AgentMessage {
            body: Some(v1::agent_message::Body::Results(batch)),
        });
    }

    #[test]
    fn assembled_cli_requests_never_panic(from in wire_string(), to in wire_string(), http_path in wire_string(), timeout_ms in wire_u32()) {
        convert_is_stable::<ProbeRunRequest, v1::ProbeRunRequest>(v1::ProbeRunRequest { from, to, http_path, timeout_ms });
    }

    #[test]
    fn assembled_matrix_cells_never_panic(
        loss in prop_oneof![Just(0.0f64), 0.0..=1.0f64, any::<f64>()],
        p50 in prop_oneof![Just(0.0f64), 0.0..10.0f64, any::<f64>()],
        p99 in prop_oneof![Just(0.0f64), 0.0..10.0f64, any::<f64>()],
        kind in wire_enum(),
        status in wire_enum(),
        source in wire_string(),
    ) {
        let cell = v1::MatrixCell {
            source: source.clone(),
            destination: source,
            kind,
            status,
            loss_ratio: loss,
            rtt_p50_ms: p50,
            rtt_p99_ms: p99,
            last_error: String::new(),
            samples: 1,
            last_update_unix_ms: 1,
        };
        convert_is_stable::<MatrixSnapshot, v1::MatrixResponse>(v1::MatrixResponse { cells: vec![cell], generated_unix_ms: 1 });
    }
}

/// Writes the seed corpus of `fuzz/`'s `proto_agent_message` target: each valid agent message
/// (hello, plain and tabled result batches, inspection, run progress) encoded, one file each.
/// Run by hand when the contract changes:
/// `NETDIAG_FUZZ_SEEDS=fuzz/corpus/proto_agent_message cargo test -p netdiag-proto -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "writes files; run by hand to refresh the fuzz seeds"]
fn write_fuzz_seeds() {
    let Some(dir) = std::env::var_os("NETDIAG_FUZZ_SEEDS") else {
        panic!("set NETDIAG_FUZZ_SEEDS to the corpus directory");
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let names = ["hello", "results-plain", "inspection", "run-progress", "results-tabled"];
    for (name, bytes) in names.into_iter().zip(valid_agent_messages()) {
        std::fs::write(dir.join(format!("seed-{name}.pb")), bytes).unwrap();
    }
}
