//! kube-proxy's iptables mode: `iptables-restore` input for one node and one family.
//!
//! Shaped after kubernetes `pkg/proxy/iptables/proxier.go` (`syncProxyRules`, the jump rules it
//! ensures in the built-in chains, and kubelet's `KUBE-FIREWALL` it duplicates), with kube-proxy's
//! defaults: mark `0x4000`, `--detect-local-mode=ClusterCIDR`, NodePorts on every local address,
//! `--random-fully` masquerade, no nfacct counters.
//!
//! Every rule is written in the canonical form `iptables-save` prints (addresses and protocol
//! first, then the matches in order, `/32` on hosts, `--set-xmark` for marks, the probability as
//! the kernel stores it), so each `-A` line reads back verbatim.
//!
//! The text holds whole `filter` and `nat` tables and is meant for `iptables-restore` *without*
//! `--noflush`: loading it replaces both tables, so loading it twice leaves the same rules.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::{Endpoint, Family, NodeView, SvcPort, hash_prefix};
use crate::plan::{LabPlan, NodePlan};

/// kube-proxy's default masquerade mark (`--iptables-masquerade-bit=14`).
pub const MASQ_MARK: &str = "0x4000";

const KUBE_SERVICES: &str = "KUBE-SERVICES";
const KUBE_EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
const KUBE_NODEPORTS: &str = "KUBE-NODEPORTS";
const KUBE_POSTROUTING: &str = "KUBE-POSTROUTING";
const KUBE_MARK_MASQ: &str = "KUBE-MARK-MASQ";
const KUBE_FORWARD: &str = "KUBE-FORWARD";
const KUBE_PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";
const KUBE_FIREWALL: &str = "KUBE-FIREWALL";

/// `iptables-restore` input (`ip6tables-restore` for [`Family::V6`]) with the `filter` and `nat`
/// tables kube-proxy would program on `node`. A lab with nothing in `family` gets both tables
/// empty.
pub fn render_iptables(plan: &LabPlan, node: &NodePlan, family: Family) -> String {
    let mut filter = Table::new("filter", &["INPUT", "FORWARD", "OUTPUT"]);
    let mut nat = Table::new("nat", &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]);
    if let Some(view) = NodeView::new(plan, node, family) {
        filter_skeleton(&mut filter, family);
        nat_skeleton(&mut nat);
        for sp in &view.ports {
            service_port(&mut filter, &mut nat, &view, sp);
        }
        // kube-proxy's final KUBE-SERVICES rule (nodePortAddresses unset: every local address;
        // IPv4 keeps localhost NodePorts, IPv6 never has them).
        let not_localhost = match family {
            Family::V4 => "",
            Family::V6 => "! -d ::1/128 ",
        };
        nat.rule(
            KUBE_SERVICES,
            format!(
                "{not_localhost}{} -m addrtype --dst-type LOCAL -j {KUBE_NODEPORTS}",
                comment("kubernetes service nodeports; NOTE: this must be the last rule in this chain")
            ),
        );
    }
    let mut out = format!(
        "# kube-proxy iptables rules ({family}) for node {} of netdiag lab {:?}\n",
        node.name, plan.name
    );
    filter.write(&mut out);
    nat.write(&mut out);
    out
}

/// The `KUBE-SVC-`/`KUBE-SVL-`/`KUBE-EXT-` suffix of a service port: kube-proxy's
/// `portProtoHash`, base32(sha256(port name + protocol))[..16].
pub(crate) fn port_proto_hash(port_name: &str, proto: &str) -> String {
    hash_prefix(&format!("{port_name}{proto}"), 16)
}

/// kube-proxy's `servicePortEndpointChainName`.
pub(crate) fn endpoint_chain(port_name: &str, proto: &str, endpoint: SocketAddr) -> String {
    format!("KUBE-SEP-{}", hash_prefix(&format!("{port_name}{proto}{endpoint}"), 16))
}

/// The `--probability` of the rule choosing the first of `n` remaining endpoints, as
/// `iptables-save` prints it: kube-proxy writes `1/n` with 10 decimals, the kernel keeps it as a
/// fraction of 2^31 (libxt_statistic rounds), and `iptables-save` prints that with 11 decimals.
pub(crate) fn probability(n: usize) -> String {
    let exact = 1.0 / n.max(1) as f64;
    let written = format!("{exact:.10}");
    let parsed: f64 = written.parse().unwrap_or(exact);
    let stored = (parsed * 2_147_483_648.0).round();
    format!("{:.11}", stored / 2_147_483_648.0)
}

/// One table of `iptables-restore` input: chain declarations, then rules.
struct Table {
    name: &'static str,
    builtin: &'static [&'static str],
    chains: Vec<String>,
    rules: Vec<String>,
}

impl Table {
    fn new(name: &'static str, builtin: &'static [&'static str]) -> Self {
        Table { name, builtin, chains: Vec::new(), rules: Vec::new() }
    }

    fn chain(&mut self, name: &str) {
        if !self.chains.iter().any(|c| c == name) {
            self.chains.push(name.to_string());
        }
    }

    fn rule(&mut self, chain: &str, spec: String) {
        self.rules.push(format!("-A {chain} {spec}"));
    }

    fn write(&self, out: &mut String) {
        out.push('*');
        out.push_str(self.name);
        out.push('\n');
        for c in self.builtin {
            out.push_str(&format!(":{c} ACCEPT [0:0]\n"));
        }
        for c in &self.chains {
            out.push_str(&format!(":{c} - [0:0]\n"));
        }
        for r in &self.rules {
            out.push_str(r);
            out.push('\n');
        }
        out.push_str("COMMIT\n");
    }
}

/// `-m comment --comment TEXT`, quoted the way `iptables-save` quotes it.
fn comment(text: &str) -> String {
    format!("-m comment --comment {}", save_string(text))
}

/// libxtables' `xtables_save_string`: bare if only `[A-Za-z0-9_-]`, else double-quoted with
/// `"`, `\` and `'` escaped.
fn save_string(s: &str) -> String {
    let bare = !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        return s.to_string();
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '\'') {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// An address as `iptables-save` prints a host: `10.96.0.10/32`, `fd00::a/128`.
fn host(ip: IpAddr) -> String {
    IpNet::from(ip).to_string()
}

fn reject_with(family: Family) -> &'static str {
    match family {
        Family::V4 => "REJECT --reject-with icmp-port-unreachable",
        Family::V6 => "REJECT --reject-with icmp6-port-unreachable",
    }
}

/// The filter chains kube-proxy owns and the jumps it ensures into them. kube-proxy prepends
/// each jump in turn, so the built-in chains list them in reverse order of its table.
fn filter_skeleton(t: &mut Table, family: Family) {
    for c in [KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL] {
        t.chain(c);
    }
    let new = "-m conntrack --ctstate NEW";
    let lb_firewall = comment("kubernetes load balancer firewall");
    let portals = comment("kubernetes service portals");
    let external = comment("kubernetes externally-visible service portals");
    t.rule("INPUT", format!("{new} {lb_firewall} -j {KUBE_PROXY_FIREWALL}"));
    t.rule("INPUT", format!("{} -j {KUBE_NODEPORTS}", comment("kubernetes health check service ports")));
    t.rule("INPUT", format!("{new} {external} -j {KUBE_EXTERNAL_SERVICES}"));
    t.rule("FORWARD", format!("{new} {lb_firewall} -j {KUBE_PROXY_FIREWALL}"));
    t.rule("FORWARD", format!("{} -j {KUBE_FORWARD}", comment("kubernetes forwarding rules")));
    t.rule("FORWARD", format!("{new} {portals} -j {KUBE_SERVICES}"));
    t.rule("FORWARD", format!("{new} {external} -j {KUBE_EXTERNAL_SERVICES}"));
    t.rule("OUTPUT", format!("{new} {lb_firewall} -j {KUBE_PROXY_FIREWALL}"));
    t.rule("OUTPUT", format!("{new} {portals} -j {KUBE_SERVICES}"));

    t.rule(KUBE_FORWARD, "-m conntrack --ctstate INVALID -j DROP".to_string());
    t.rule(
        KUBE_FORWARD,
        format!(
            "{} -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT",
            comment("kubernetes forwarding rules")
        ),
    );
    t.rule(
        KUBE_FORWARD,
        format!(
            "{} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            comment("kubernetes forwarding conntrack rule")
        ),
    );

    // kubelet's anti-martian rule, which kube-proxy duplicates for IPv4 (localhost NodePorts).
    if family == Family::V4 {
        t.chain(KUBE_FIREWALL);
        t.rule("INPUT", format!("-j {KUBE_FIREWALL}"));
        t.rule("OUTPUT", format!("-j {KUBE_FIREWALL}"));
        t.rule(
            KUBE_FIREWALL,
            format!(
                "! -s 127.0.0.0/8 -d 127.0.0.0/8 {} -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
                comment("block incoming localnet connections")
            ),
        );
    }
}

fn nat_skeleton(t: &mut Table) {
    for c in [KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ] {
        t.chain(c);
    }
    let portals = comment("kubernetes service portals");
    t.rule("PREROUTING", format!("{portals} -j {KUBE_SERVICES}"));
    t.rule("OUTPUT", format!("{portals} -j {KUBE_SERVICES}"));
    t.rule("POSTROUTING", format!("{} -j {KUBE_POSTROUTING}", comment("kubernetes postrouting rules")));
    t.rule(KUBE_POSTROUTING, format!("-m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"));
    t.rule(KUBE_POSTROUTING, format!("-j MARK --set-xmark {MASQ_MARK}/0x0"));
    t.rule(
        KUBE_POSTROUTING,
        format!("{} -j MASQUERADE --random-fully", comment("kubernetes service traffic requiring SNAT")),
    );
    t.rule(KUBE_MARK_MASQ, format!("-j MARK --set-xmark {MASQ_MARK}/{MASQ_MARK}"));
}

/// The rules of one service port, in the order `syncProxyRules` writes them.
fn service_port(filter: &mut Table, nat: &mut Table, view: &NodeView<'_>, sp: &SvcPort<'_>) {
    let name = sp.name.as_str();
    let p = sp.proto();
    let vip = host(sp.cluster_ip);
    let port = sp.port.port;
    let hash = port_proto_hash(name, p);
    let svc_chain = format!("KUBE-SVC-{hash}");
    let svl_chain = format!("KUBE-SVL-{hash}");
    let ext_chain = format!("KUBE-EXT-{hash}");

    let has_endpoints = !sp.endpoints.is_empty();
    let has_local = sp.has_local_endpoints();
    // internalTrafficPolicy is always Cluster in the lab.
    let has_internal = has_endpoints;
    let has_external = has_endpoints && (!sp.etp_local || has_local);
    let uses_external_chain = has_endpoints && sp.port.node_port.is_some();
    let uses_local_chain = sp.etp_local && has_local;
    let external_policy_chain = if sp.etp_local { &svl_chain } else { &svc_chain };

    let (internal_filter, external_filter) = if !has_endpoints {
        let c = comment(&format!("{name} has no endpoints"));
        (Some((c.clone(), reject_with(view.family))), Some((c, reject_with(view.family))))
    } else if !has_external {
        (None, Some((comment(&format!("{name} has no local endpoints")), "DROP")))
    } else {
        (None, None)
    };

    if has_internal {
        nat.rule(
            KUBE_SERVICES,
            format!(
                "-d {vip} -p {p} {} -m {p} --dport {port} -j {svc_chain}",
                comment(&format!("{name} cluster IP"))
            ),
        );
    } else if let Some((c, target)) = &internal_filter {
        filter.rule(KUBE_SERVICES, format!("-d {vip} -p {p} {c} -m {p} --dport {port} -j {target}"));
    }

    if let Some(node_port) = sp.port.node_port {
        if has_endpoints {
            nat.rule(
                KUBE_NODEPORTS,
                format!("-p {p} {} -m {p} --dport {node_port} -j {ext_chain}", comment(name)),
            );
        }
        if let Some((c, target)) = &external_filter {
            filter.rule(
                KUBE_EXTERNAL_SERVICES,
                format!("-p {p} {c} -m addrtype --dst-type LOCAL -m {p} --dport {node_port} -j {target}"),
            );
        }
    }

    if !has_endpoints {
        return;
    }

    if uses_external_chain {
        nat.chain(&ext_chain);
    }
    nat.chain(&svc_chain);
    if uses_local_chain {
        nat.chain(&svl_chain);
    }

    // Masquerade off-cluster traffic to the VIP (--detect-local-mode=ClusterCIDR).
    nat.rule(
        &svc_chain,
        format!(
            "! -s {} -d {vip} -p {p} {} -m {p} --dport {port} -j {KUBE_MARK_MASQ}",
            view.cluster_cidr,
            comment(&format!("{name} cluster IP"))
        ),
    );

    if uses_external_chain {
        if !sp.etp_local {
            nat.rule(
                &ext_chain,
                format!(
                    "{} -j {KUBE_MARK_MASQ}",
                    comment(&format!("masquerade traffic for {name} external destinations"))
                ),
            );
        } else {
            nat.rule(
                &ext_chain,
                format!(
                    "-s {} {} -j {svc_chain}",
                    view.cluster_cidr,
                    comment(&format!("pod traffic for {name} external destinations"))
                ),
            );
            nat.rule(
                &ext_chain,
                format!(
                    "{} -m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}",
                    comment(&format!("masquerade LOCAL traffic for {name} external destinations"))
                ),
            );
            nat.rule(
                &ext_chain,
                format!(
                    "{} -m addrtype --src-type LOCAL -j {svc_chain}",
                    comment(&format!("route LOCAL traffic for {name} external destinations"))
                ),
            );
        }
        if has_external {
            nat.rule(&ext_chain, format!("-j {external_policy_chain}"));
        }
    }

    endpoint_jumps(nat, &svc_chain, sp, &sp.endpoints.iter().collect::<Vec<_>>());
    if uses_local_chain {
        endpoint_jumps(nat, &svl_chain, sp, &sp.local_endpoints().collect::<Vec<_>>());
    }

    for ep in &sp.endpoints {
        let sep = endpoint_chain(name, p, ep.addr);
        nat.chain(&sep);
        nat.rule(&sep, format!("-s {} {} -j {KUBE_MARK_MASQ}", host(ep.addr.ip()), comment(name)));
        nat.rule(&sep, format!("-p {p} {} -m {p} -j DNAT --to-destination {}", comment(name), ep.addr));
    }
}

/// kube-proxy's `writeServiceToEndpointRules`: one jump per endpoint, each but the last taken
/// with probability 1/(endpoints left).
fn endpoint_jumps(nat: &mut Table, chain: &str, sp: &SvcPort<'_>, endpoints: &[&Endpoint]) {
    let n = endpoints.len();
    for (i, ep) in endpoints.iter().enumerate() {
        let c = comment(&format!("{} -> {}", sp.name, ep.addr));
        let statistic = if i + 1 < n {
            format!(" -m statistic --mode random --probability {}", probability(n - i))
        } else {
            String::new()
        };
        let sep = endpoint_chain(&sp.name, sp.proto(), ep.addr);
        nat.rule(chain, format!("{c}{statistic} -j {sep}"));
    }
}

#[cfg(test)]
mod tests;
