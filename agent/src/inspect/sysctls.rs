//! Network sysctls of a source's namespace, read from `/proc/sys/net/…` by the thread parked in
//! that namespace (the `net` sysctls a thread sees are those of its own network namespace).

use std::io;
use std::path::PathBuf;

use netdiag_model::inspect::{Sysctl, SysctlKey};
use netdiag_model::limits::MAX_LINE_BYTES;
use netdiag_model::text::Text;

use crate::source::SourceNs;

/// The sysctls every inspection reads: forwarding and reverse-path filtering (why packets are
/// dropped), and the TCP timers that decide how long a dead peer goes unnoticed.
pub const REQUIRED: &[&str] = &[
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.rp_filter",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// Read when the kernel has them (IPv6 disabled, conntrack not loaded): skipped silently when
/// absent.
pub const OPTIONAL: &[&str] = &[
    "net.ipv4.conf.default.rp_filter",
    "net.ipv4.tcp_retries2",
    "net.ipv4.tcp_syn_retries",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ping_group_range",
    "net.core.somaxconn",
    "net.ipv6.conf.all.forwarding",
    "net.ipv6.conf.all.disable_ipv6",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.bridge.bridge-nf-call-iptables",
];

/// The file behind a sysctl key, as sysctl(8) maps it: `.` separates path parts and `/` stands
/// for a `.` inside one (`net.ipv4.conf.eth0/100.rp_filter` → `…/conf/eth0.100/rp_filter`).
pub fn proc_path(key: &str) -> PathBuf {
    let relative: String = key
        .chars()
        .map(|c| match c {
            '.' => '/',
            '/' => '.',
            c => c,
        })
        .collect();
    PathBuf::from("/proc/sys").join(relative)
}

/// A sysctl value with its whitespace collapsed: `32768\t60999\n` → `32768 60999`.
pub fn normalize(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads `required` and `optional` in `src`'s namespace. Returns what was read, in key order,
/// and one error line per key that could not be read (a missing optional key is no error).
pub async fn read_sysctls(
    src: &SourceNs,
    required: &[&str],
    optional: &[&str],
) -> (Vec<Sysctl>, Vec<String>) {
    let keys: Vec<(String, bool)> = required
        .iter()
        .map(|k| ((*k).to_owned(), true))
        .chain(optional.iter().map(|k| ((*k).to_owned(), false)))
        .collect();
    let read = src
        .run(move || {
            keys.into_iter()
                .map(|(key, required)| {
                    let value = std::fs::read_to_string(proc_path(&key));
                    (key, required, value)
                })
                .collect::<Vec<_>>()
        })
        .await;
    let read = match read {
        Ok(r) => r,
        Err(e) => {
            return (
                Vec::new(),
                vec![format!("could not read them in the namespace: {}", super::error_chain(&e))],
            );
        }
    };
    let mut sysctls = Vec::new();
    let mut errors = Vec::new();
    for (key, required, value) in read {
        match value {
            Ok(v) => match SysctlKey::new(key.as_str()) {
                Ok(k) => {
                    sysctls.push(Sysctl { key: k, value: Text::<MAX_LINE_BYTES>::lossy(&normalize(&v)) })
                }
                Err(e) => errors.push(format!("{key} was skipped: {e}")),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound && !required => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                errors.push(format!(
                    "{key} does not exist in this kernel ({} is missing)",
                    proc_path(&key).display()
                ));
            }
            Err(e) => errors.push(format!(
                "reading {key} from {}: {e}: is /proc/sys mounted and readable by the agent?",
                proc_path(&key).display()
            )),
        }
    }
    sysctls.sort_by(|a, b| a.key.cmp(&b.key));
    (sysctls, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_proc_files_like_sysctl() {
        let cases = [
            ("net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward"),
            ("net.ipv4.conf.eth0/100.rp_filter", "/proc/sys/net/ipv4/conf/eth0.100/rp_filter"),
            ("net.bridge.bridge-nf-call-iptables", "/proc/sys/net/bridge/bridge-nf-call-iptables"),
        ];
        for (key, path) in cases {
            assert_eq!(proc_path(key), PathBuf::from(path), "{key}");
        }
    }

    #[test]
    fn values_are_normalized() {
        assert_eq!(normalize("7200\n"), "7200");
        assert_eq!(normalize("32768\t60999\n"), "32768 60999");
        assert_eq!(normalize(""), "");
    }

    #[test]
    fn every_key_is_a_valid_sysctl_key() {
        for key in REQUIRED.iter().chain(OPTIONAL) {
            assert!(SysctlKey::new(*key).is_ok(), "{key}");
        }
    }

    #[tokio::test]
    async fn the_agents_own_namespace_is_read_and_missing_keys_are_reported() {
        let src = SourceNs::own(netdiag_model::probe::Source::Node("node-1".parse().unwrap()), None);
        let (sysctls, errors) =
            read_sysctls(&src, &["net.ipv4.ip_forward", "net.ipv4.no_such_key"], &["net.ipv4.nor_this_one"])
                .await;
        assert_eq!(sysctls.len(), 1, "{sysctls:?}");
        assert!(matches!(sysctls[0].value.as_str(), "0" | "1"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("net.ipv4.no_such_key"), "{errors:?}");
    }
}
