//! kube-proxy's nftables mode: an `nft -f` script that (re)creates `table ip kube-proxy` (or
//! `ip6 kube-proxy`) for one node.
//!
//! Shaped after kubernetes `pkg/proxy/nftables/proxier.go` (`setupNFTables` and
//! `syncProxyRules`, the revision with the `filter-output-post-dnat` chain and `cluster-ips`
//! set), with kube-proxy's defaults: mark `0x4000`, `--detect-local-mode=ClusterCIDR`, and the
//! nftables default `--nodeport-addresses=primary`, which puts the node's own address in
//! `nodeport-ips`. Base-chain priorities are written as numbers (`dstnat - 10` is -110).
//!
//! The script starts with `add table` + `delete table`, so loading it replaces whatever table
//! was there: loading it twice leaves the same ruleset.

use super::{Endpoint, Family, NodeView, SvcPort, hash_prefix};
use crate::plan::{LabPlan, NodePlan};

/// kube-proxy's default masquerade mark.
pub const MASQ_MARK: &str = "0x4000";

/// kube-proxy's table name, in family `ip` or `ip6`.
pub const TABLE: &str = "kube-proxy";

const MARK_MASQ: &str = "mark-for-masquerade";
const REJECT_CHAIN: &str = "reject-chain";

/// knftables' `NameLengthMax` minus kube-proxy's longest chain-name prefix.
const CHAIN_NAME_BASE_MAX: usize = 256 - 16;

/// An `nft -f` script with the `kube-proxy` table kube-proxy would program on `node` in
/// `family`. A lab with nothing in `family` gets a script that only removes the table.
pub fn render_nftables(plan: &LabPlan, node: &NodePlan, family: Family) -> String {
    let fam = family.nft_family();
    let mut out = format!(
        "# kube-proxy nftables rules ({family}) for node {} of netdiag lab {:?}\nadd table {fam} {TABLE}\ndelete table {fam} {TABLE}\n",
        node.name, plan.name
    );
    let Some(view) = NodeView::new(plan, node, family) else {
        return out;
    };
    let mut t = Table::skeleton(&view);
    for sp in &view.ports {
        service_port(&mut t, &view, sp);
    }
    t.write(fam, &mut out);
    out
}

/// kube-proxy's `hashAndTruncate`: `HASH8-name`, cut to fit a chain name.
pub(crate) fn hash_and_truncate(name: &str) -> String {
    let mut s = format!("{}-{name}", hash_prefix(name, 8));
    if s.len() > CHAIN_NAME_BASE_MAX {
        let mut cut = CHAIN_NAME_BASE_MAX - 3;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// kube-proxy's `servicePortChainNameBase`: `HASH-namespace/name/protocol/portname`.
pub(crate) fn service_chain_base(sp: &SvcPort<'_>) -> String {
    hash_and_truncate(&format!(
        "{}/{}/{}/{}",
        sp.service.namespace,
        sp.service.name,
        sp.proto(),
        sp.port.name.as_deref().unwrap_or("")
    ))
}

/// kube-proxy's endpoint chain: `endpoint-HASH-namespace/name/protocol/portname__ip/port`,
/// with an IPv6 address's colons turned into dots.
pub(crate) fn endpoint_chain(sp: &SvcPort<'_>, ep: &Endpoint) -> String {
    let ip = ep.addr.ip().to_string().replace(':', ".");
    format!(
        "endpoint-{}",
        hash_and_truncate(&format!(
            "{}/{}/{}/{}__{ip}/{}",
            sp.service.namespace,
            sp.service.name,
            sp.proto(),
            sp.port.name.as_deref().unwrap_or(""),
            ep.addr.port()
        ))
    )
}

/// A named set or map and its elements.
struct Container {
    keyword: &'static str,
    name: &'static str,
    kind: String,
    comment: &'static str,
    elements: Vec<String>,
}

struct Chain {
    name: String,
    /// `type … hook … priority …; policy accept;` for base chains.
    base: Option<String>,
    comment: Option<&'static str>,
    rules: Vec<String>,
}

struct Table {
    ip: &'static str,
    containers: Vec<Container>,
    chains: Vec<Chain>,
}

impl Table {
    /// Everything `setupNFTables` creates: sets, maps, base chains, the top-level chains and
    /// the jumps between them.
    fn skeleton(view: &NodeView<'_>) -> Self {
        let (ip, addr) = match view.family {
            Family::V4 => ("ip", "ipv4_addr"),
            Family::V6 => ("ip6", "ipv6_addr"),
        };
        let keyed = format!("{addr} . inet_proto . inet_service : verdict");
        let ported = "inet_proto . inet_service : verdict".to_string();
        let container = |keyword, name, kind: &String, comment| Container {
            keyword,
            name,
            kind: kind.clone(),
            comment,
            elements: Vec::new(),
        };
        let mut t = Table {
            ip,
            containers: vec![
                container("set", "cluster-ips", &addr.to_string(), "Active ClusterIPs"),
                container("set", "nodeport-ips", &addr.to_string(), "IPs that accept NodePort traffic"),
                container(
                    "map",
                    "firewall-ips",
                    &keyed,
                    "destinations that are subject to LoadBalancerSourceRanges",
                ),
                container(
                    "map",
                    "no-endpoint-nodeports",
                    &ported,
                    "vmap to drop or reject packets to service nodeports with no endpoints",
                ),
                container(
                    "map",
                    "no-endpoint-services",
                    &keyed,
                    "vmap to drop or reject packets to services with no endpoints",
                ),
                container("map", "service-ips", &keyed, "ClusterIP, ExternalIP and LoadBalancer IP traffic"),
                container("map", "service-nodeports", &ported, "NodePort traffic"),
            ],
            chains: Vec::new(),
        };

        for (name, kind, hook, priority) in [
            ("filter-prerouting", "filter", "prerouting", -110),
            ("filter-input", "filter", "input", -110),
            ("filter-forward", "filter", "forward", -110),
            ("filter-output", "filter", "output", -110),
            ("filter-output-post-dnat", "filter", "output", -90),
            ("nat-prerouting", "nat", "prerouting", -100),
            ("nat-output", "nat", "output", -100),
            ("nat-postrouting", "nat", "postrouting", 100),
        ] {
            t.chain(name).base = Some(format!("type {kind} hook {hook} priority {priority}; policy accept;"));
        }
        // kube-proxy's nftablesJumpChains, in order.
        for (dst, src, extra) in [
            ("nodeport-endpoints-check", "filter-input", "ct state new "),
            ("service-endpoints-check", "filter-input", "ct state new "),
            ("service-endpoints-check", "filter-forward", "ct state new "),
            ("service-endpoints-check", "filter-output", "ct state new "),
            ("firewall-check", "filter-prerouting", "ct state new "),
            ("firewall-check", "filter-output", "ct state new "),
            ("services", "nat-output", ""),
            ("services", "nat-prerouting", ""),
            ("masquerading", "nat-postrouting", ""),
            ("cluster-ips-check", "filter-forward", "ct state new "),
            ("cluster-ips-check", "filter-output-post-dnat", "ct state new "),
        ] {
            t.chain(dst);
            t.rule(src, format!("{extra}jump {dst}"));
        }
        t.rule(MARK_MASQ, format!("mark set mark or {MASQ_MARK}"));
        t.rule("masquerading", format!("mark and {MASQ_MARK} == 0 return"));
        t.rule("masquerading", format!("mark set mark xor {MASQ_MARK}"));
        t.rule("masquerading", "masquerade fully-random".to_string());
        t.rule(
            "cluster-ips-check",
            format!(
                "{ip} daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\""
            ),
        );
        t.rule(
            "cluster-ips-check",
            format!(
                "{ip} daddr {{ {} }} drop comment \"Drop traffic to unallocated ClusterIPs\"",
                view.service_cidr
            ),
        );
        t.element("nodeport-ips", view.node_ip.to_string());
        t.chain(REJECT_CHAIN).comment = Some("helper for @no-endpoint-services / @no-endpoint-nodeports");
        t.rule(REJECT_CHAIN, "reject".to_string());
        t.rule(
            "service-endpoints-check",
            format!("{ip} daddr . meta l4proto . th dport vmap @no-endpoint-services"),
        );
        t.rule(
            "nodeport-endpoints-check",
            format!("{ip} daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports"),
        );
        t.rule("firewall-check", format!("{ip} daddr . meta l4proto . th dport vmap @firewall-ips"));
        t.rule("services", format!("{ip} daddr . meta l4proto . th dport vmap @service-ips"));
        t.rule(
            "services",
            format!("{ip} daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"),
        );
        t
    }

    /// The chain called `name`, created empty on first use.
    fn chain(&mut self, name: &str) -> &mut Chain {
        let i = match self.chains.iter().position(|c| c.name == name) {
            Some(i) => i,
            None => {
                self.chains.push(Chain {
                    name: name.to_string(),
                    base: None,
                    comment: None,
                    rules: Vec::new(),
                });
                self.chains.len() - 1
            }
        };
        &mut self.chains[i]
    }

    fn rule(&mut self, chain: &str, rule: String) {
        self.chain(chain).rules.push(rule);
    }

    /// Adds an element unless a set or map already holds it (kube-proxy's `ensureElem`).
    fn element(&mut self, container: &str, element: String) {
        if let Some(c) = self.containers.iter_mut().find(|c| c.name == container)
            && !c.elements.contains(&element)
        {
            c.elements.push(element);
        }
    }

    fn write(&self, fam: &str, out: &mut String) {
        out.push_str(&format!("table {fam} {TABLE} {{\n\tcomment \"rules for kube-proxy\"\n"));
        for c in &self.containers {
            out.push_str(&format!(
                "\n\t{} {} {{\n\t\ttype {}\n\t\tcomment \"{}\"\n",
                c.keyword, c.name, c.kind, c.comment
            ));
            if !c.elements.is_empty() {
                out.push_str("\t\telements = {\n");
                let last = c.elements.len() - 1;
                for (i, e) in c.elements.iter().enumerate() {
                    let sep = if i == last { "" } else { "," };
                    out.push_str(&format!("\t\t\t{e}{sep}\n"));
                }
                out.push_str("\t\t}\n");
            }
            out.push_str("\t}\n");
        }
        for c in &self.chains {
            out.push_str(&format!("\n\tchain {} {{\n", c.name));
            if let Some(base) = &c.base {
                out.push_str(&format!("\t\t{base}\n"));
            }
            if let Some(comment) = c.comment {
                out.push_str(&format!("\t\tcomment \"{comment}\"\n"));
            }
            for r in &c.rules {
                out.push_str(&format!("\t\t{r}\n"));
            }
            out.push_str("\t}\n");
        }
        out.push_str("}\n");
    }
}

/// The chains and elements of one service port, as `syncProxyRules` writes them.
fn service_port(t: &mut Table, view: &NodeView<'_>, sp: &SvcPort<'_>) {
    let ip = t.ip;
    let p = sp.proto();
    let base = service_chain_base(sp);
    let svc_chain = format!("service-{base}");
    let local_chain = format!("local-{base}");
    let ext_chain = format!("external-{base}");

    let has_endpoints = !sp.endpoints.is_empty();
    let has_local = sp.has_local_endpoints();
    // internalTrafficPolicy is always Cluster in the lab.
    let has_internal = has_endpoints;
    let has_external = has_endpoints && (!sp.etp_local || has_local);
    let uses_external_chain = has_endpoints && sp.port.node_port.is_some();
    let uses_local_chain = sp.etp_local && has_local;
    let external_policy_chain = if sp.etp_local { &local_chain } else { &svc_chain };
    let external_filter_verdict =
        if has_endpoints { "drop".to_string() } else { format!("goto {REJECT_CHAIN}") };

    if has_endpoints {
        for ep in &sp.endpoints {
            t.chain(&endpoint_chain(sp, ep));
        }
        t.chain(&svc_chain);
        if uses_local_chain {
            t.chain(&local_chain);
        }
        if uses_external_chain {
            t.chain(&ext_chain);
        }
    }

    let vip = sp.cluster_ip;
    let port = sp.port.port;
    t.element("cluster-ips", vip.to_string());
    if has_internal {
        t.element("service-ips", format!("{vip} . {p} . {port} : goto {svc_chain}"));
    } else {
        t.element(
            "no-endpoint-services",
            format!("{vip} . {p} . {port} comment \"{}\" : goto {REJECT_CHAIN}", sp.name),
        );
    }
    if let Some(node_port) = sp.port.node_port {
        if has_endpoints {
            t.element("service-nodeports", format!("{p} . {node_port} : goto {ext_chain}"));
        }
        if !has_external {
            t.element(
                "no-endpoint-nodeports",
                format!("{p} . {node_port} comment \"{}\" : {external_filter_verdict}", sp.name),
            );
        }
    }

    if !has_endpoints {
        return;
    }

    // Masquerade off-cluster traffic to the VIP (--detect-local-mode=ClusterCIDR).
    t.rule(
        &svc_chain,
        format!("{ip} daddr {vip} {p} dport {port} {ip} saddr != {} jump {MARK_MASQ}", view.cluster_cidr),
    );

    if uses_external_chain {
        if !sp.etp_local {
            t.rule(&ext_chain, format!("jump {MARK_MASQ}"));
        } else {
            t.rule(
                &ext_chain,
                format!(
                    "{ip} saddr {} goto {svc_chain} comment \"short-circuit pod traffic\"",
                    view.cluster_cidr
                ),
            );
            t.rule(
                &ext_chain,
                format!("fib saddr type local jump {MARK_MASQ} comment \"masquerade local traffic\""),
            );
            t.rule(
                &ext_chain,
                format!("fib saddr type local goto {svc_chain} comment \"short-circuit local traffic\""),
            );
        }
        if has_external {
            t.rule(&ext_chain, format!("goto {external_policy_chain}"));
        }
    }

    let all: Vec<&Endpoint> = sp.endpoints.iter().collect();
    t.rule(&svc_chain, numgen(sp, &all));
    if uses_local_chain {
        let local: Vec<&Endpoint> = sp.local_endpoints().collect();
        t.rule(&local_chain, numgen(sp, &local));
    }

    for ep in &sp.endpoints {
        let chain = endpoint_chain(sp, ep);
        t.rule(&chain, format!("{ip} saddr {} jump {MARK_MASQ}", ep.addr.ip()));
        t.rule(&chain, format!("meta l4proto {p} dnat to {}", ep.addr));
    }
}

/// kube-proxy's load-balancing rule: `numgen random mod N vmap { 0 : goto …, 1 : goto … }`.
fn numgen(sp: &SvcPort<'_>, endpoints: &[&Endpoint]) -> String {
    let arms: Vec<String> = endpoints
        .iter()
        .enumerate()
        .map(|(i, ep)| format!("{i} : goto {}", endpoint_chain(sp, ep)))
        .collect();
    format!("numgen random mod {} vmap {{ {} }}", endpoints.len(), arms.join(", "))
}

#[cfg(test)]
mod tests;
