//! The capabilities the agent runs with, said once at start: the DaemonSet grants exactly
//! [`NEEDED`], and a missing one does not stop the agent — part of what it does fails instead,
//! so each missing capability is logged with what stops working, where an operator sees it
//! first (rather than as scattered probe and inspection errors).

use tracing::{info, warn};

/// A capability the agent uses, and what fails without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needed {
    pub name: &'static str,
    /// Its bit in the kernel's capability sets (linux/capability.h).
    pub bit: u32,
    pub without: &'static str,
}

/// Every capability the agent uses (deploy/: the DaemonSet adds exactly these).
pub const NEEDED: [Needed; 4] = [
    Needed {
        name: "CAP_NET_RAW",
        bit: 13,
        without: "ICMP and path-MTU probes cannot open their raw sockets and fail; TCP, DNS and HTTP probes still run",
    },
    Needed {
        name: "CAP_NET_ADMIN",
        bit: 12,
        without: "kube-proxy's NAT rules and the firewall's filter rules cannot be read (iptables-save and nft \
                  are refused), so inspections carry no NAT or firewall state and those verdicts go blind",
    },
    Needed {
        name: "CAP_SYS_ADMIN",
        bit: 21,
        without: "setns into pods' network namespaces is refused: no probe or inspection runs from any pod, \
                  only from the node itself",
    },
    Needed {
        name: "CAP_SYS_PTRACE",
        bit: 19,
        without: "/proc/<pid>/ns/net and /proc/<pid>/root of processes owned by other users cannot be opened: \
                  pods found through /proc are missed and their resolv.conf is not read",
    },
];

/// The capabilities of [`NEEDED`] missing from the effective set `cap_eff`.
pub fn missing(cap_eff: u64) -> Vec<Needed> {
    NEEDED.iter().filter(|n| cap_eff & (1u64 << n.bit) == 0).copied().collect()
}

/// The effective set from `/proc/self/status` text (its `CapEff:` line, hexadecimal).
pub fn cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

/// Logs the capabilities the process has: one line when all are there, one warning per
/// missing capability saying what stops working.
pub fn report() {
    let status = match std::fs::read_to_string("/proc/self/status") {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot read /proc/self/status: the agent's capabilities are not checked");
            return;
        }
    };
    let Some(eff) = cap_eff(&status) else {
        warn!("/proc/self/status has no CapEff line: the agent's capabilities are not checked");
        return;
    };
    let missing = missing(eff);
    if missing.is_empty() {
        info!(
            capabilities = "CAP_NET_RAW CAP_NET_ADMIN CAP_SYS_ADMIN CAP_SYS_PTRACE",
            "the agent has the capabilities it uses"
        );
    }
    for m in missing {
        warn!(
            capability = m.name,
            "the agent runs without {}: {}; grant it as deploy/ does", m.name, m.without
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_set_is_read_and_each_missing_capability_named() {
        // What `setpriv --bounding-set=-all,+net_raw,+net_admin,+sys_admin,+sys_ptrace` gives root.
        let all = "Name:\tnetdiag-agent\nCapInh:\t0000000000000000\nCapPrm:\t0000000000283000\nCapEff:\t0000000000283000\n";
        let eff = cap_eff(all).unwrap();
        assert_eq!(eff, (1 << 12) | (1 << 13) | (1 << 19) | (1 << 21));
        assert!(missing(eff).is_empty());
        let names = |eff: u64| missing(eff).iter().map(|m| m.name).collect::<Vec<_>>();
        assert_eq!(names(eff & !(1 << 13)), ["CAP_NET_RAW"]);
        assert_eq!(names(eff & !(1 << 21)), ["CAP_SYS_ADMIN"]);
        assert_eq!(names(0), ["CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]);
        assert_eq!(names(u64::MAX), Vec::<&str>::new());
        assert_eq!(cap_eff("Name:\tx\n"), None);
        assert_eq!(cap_eff("CapEff:\tnot hex\n"), None);
    }
}
