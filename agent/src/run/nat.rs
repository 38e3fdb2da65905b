//! The `nat-rules` step: kube-proxy's frontend for a VIP:port (or a NodePort) in the source's
//! node namespace, and whether its DNAT targets are the service's ready endpoints. The rules are
//! read by the inspection's NAT part alone ([`crate::inspect::nat::inspect_nat`]); the matching
//! ([`check_nat`]) is pure.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use netdiag_model::NodeName;
use netdiag_model::inspect::{NatProtocol, NatService, NatTarget};
use netdiag_model::inventory::ProxyMode;
use netdiag_model::names::Port;
use netdiag_model::run::StepStatus;

use super::report::StepReport;
use crate::source::SourceNs;

/// What a `nat-rules` step looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NatQuery {
    pub(crate) vip: IpAddr,
    pub(crate) port: Port,
    pub(crate) protocol: NatProtocol,
    /// Ready endpoints the rules should send to.
    pub(crate) expected: Vec<SocketAddr>,
    pub(crate) node_port: bool,
}

impl NatQuery {
    fn frontend(&self) -> String {
        if self.node_port {
            format!("NodePort {}/{} (node address {})", self.port, self.protocol, self.vip)
        } else {
            format!("{}/{}", SocketAddr::new(self.vip, self.port.get()), self.protocol)
        }
    }

    /// Whether `svc` is the frontend asked for. A NodePort frontend that matches every local
    /// address (no `vip`) counts for the family of its targets (each family has its own rules).
    fn matches(&self, svc: &NatService) -> bool {
        if svc.port != self.port || svc.protocol != self.protocol || svc.node_port != self.node_port {
            return false;
        }
        match svc.vip {
            Some(vip) => vip == self.vip,
            None => {
                self.node_port
                    && (svc.targets.is_empty()
                        || svc.targets.iter().any(|t| t.ip.is_ipv4() == self.vip.is_ipv4()))
            }
        }
    }
}

/// Reads the NAT rules of the node namespace `node_ns` and checks them against `q`.
pub(crate) async fn nat_step(node_ns: &SourceNs, node: &NodeName, q: &NatQuery) -> StepReport {
    let nat = crate::inspect::nat::inspect_nat(node_ns).await;
    check_nat(&nat.services, nat.proxy_mode, &nat.errors, node, q)
}

fn mode_words(mode: Option<ProxyMode>) -> String {
    match mode {
        Some(m) => m.to_string(),
        None => "no kube-proxy rules at all".to_owned(),
    }
}

fn target_line(t: &NatTarget) -> String {
    let addr = SocketAddr::new(t.ip, t.port.get());
    match &t.chain {
        Some(chain) => format!("→ {addr} via {chain}"),
        None => format!("→ {addr}"),
    }
}

/// Failed when the node has no frontend for `q` or it DNATs nowhere while the service has
/// endpoints; Warning when its targets differ from the ready endpoints (stale or missing);
/// Ok otherwise. Evidence: the frontend, each target and its chain, each difference, and what
/// could not be read when nothing matched.
pub(crate) fn check_nat(
    services: &[NatService],
    mode: Option<ProxyMode>,
    errors: &[String],
    node: &NodeName,
    q: &NatQuery,
) -> StepReport {
    let matched: Vec<&NatService> = services.iter().filter(|s| q.matches(s)).collect();
    let rule = if q.node_port { "NodePort rule" } else { "DNAT rule" };
    if matched.is_empty() {
        let mut evidence =
            vec![format!("no {rule} for {} in {node}'s nat table ({})", q.frontend(), mode_words(mode))];
        evidence.extend(errors.iter().map(|e| format!("cannot read {node}'s NAT rules: {e}")));
        return StepReport::new(StepStatus::Failed, evidence);
    }
    let mut targets: Vec<&NatTarget> = Vec::new();
    for t in matched.iter().flat_map(|s| &s.targets) {
        if !targets.iter().any(|seen| seen.ip == t.ip && seen.port == t.port) {
            targets.push(t);
        }
    }
    let name = matched
        .iter()
        .find_map(|s| s.service.as_ref())
        .map_or_else(|| "a frontend without a kube-proxy comment".to_owned(), ToString::to_string);
    let mut evidence =
        vec![format!("{node} ({}): {name} {} → {} targets", mode_words(mode), q.frontend(), targets.len())];
    evidence.extend(targets.iter().map(|t| target_line(t)));

    let have: BTreeSet<SocketAddr> = targets.iter().map(|t| SocketAddr::new(t.ip, t.port.get())).collect();
    let want: BTreeSet<SocketAddr> = q.expected.iter().copied().collect();
    if have.is_empty() && !want.is_empty() {
        evidence.push(format!(
            "the {rule} DNATs to no endpoint while the service has {} ready: kube-proxy on {node} has \
             not synced (check its logs)",
            want.len()
        ));
        return StepReport::new(StepStatus::Failed, evidence);
    }
    let stale: Vec<&SocketAddr> = have.difference(&want).collect();
    let missing: Vec<&SocketAddr> = want.difference(&have).collect();
    evidence
        .extend(stale.iter().map(|a| format!("{a} is a DNAT target but not a ready endpoint (stale rule)")));
    evidence.extend(
        missing.iter().map(|a| format!("{a} is a ready endpoint with no DNAT target (missing rule)")),
    );
    let status = if stale.is_empty() && missing.is_empty() { StepStatus::Ok } else { StepStatus::Warning };
    StepReport::new(status, evidence)
}

#[cfg(test)]
mod tests;
