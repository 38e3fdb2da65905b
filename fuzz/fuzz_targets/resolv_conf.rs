//! A pod's resolv.conf as the agent reads it: glibc's rules, then the search-list expansion the
//! DNS probe walks. Properties: no panic, glibc's caps hold (3 nameservers, ndots ≤ 15, timeout
//! ≤ 30, attempts ≤ 5), every candidate name fits DNS's 253 characters, and the model's view
//! passes the collector's validation.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netdiag_agent::resolv_conf::{self, MAX_ATTEMPTS, MAX_NDOTS, MAX_TIMEOUT_SECS, MAXNS};
use netdiag_model::dns::DnsName;

/// Names a probe asks for: one label, a Service in its namespace, and absolute.
const NAMES: [&str; 3] = ["demo-pd", "demo-pd.tidb", "kubernetes.default.svc.cluster.local."];

fuzz_target!(|data: &[u8]| {
    let conf = resolv_conf::parse(&netdiag_fuzz::text(data));
    let o = &conf.options;
    assert!(conf.nameservers.len() <= MAXNS, "{} nameservers", conf.nameservers.len());
    assert!(
        o.ndots <= MAX_NDOTS && o.timeout_secs <= MAX_TIMEOUT_SECS && o.attempts <= MAX_ATTEMPTS,
        "{o:?}"
    );
    for name in NAMES.into_iter().filter_map(|n| DnsName::new(n).ok()) {
        for c in resolv_conf::candidates(&name, &conf) {
            assert!(c.ends_with('.') && c.len() <= DnsName::MAX_LEN + 1, "candidate {c:?}");
        }
    }
    netdiag_fuzz::reaches_the_collector::<_, netdiag_proto::v1::ResolvConf>(&conf.to_model());
});
