//! The evaluator's answer: the verdict, what the rules say as written, the deciding policies
//! of each direction, and the qualifiers. [`PolicyVerdict`]'s `Display` is the one sentence a
//! verdict shows ("denied: ingress is isolated by policy tidb/deny-all and no rule admits it").

use std::collections::BTreeSet;
use std::fmt;

use netdiag_model::netpol::PolicyRef;

/// What the policies expect of a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Allow,
    Deny,
    /// Left to the network plugin: see [`PolicyVerdict::undefined`].
    Undefined,
    /// A pod end has no IP yet: nothing to judge.
    Pending,
}

/// What the rules say read literally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Allow,
    Deny,
}

/// One direction's outcome: the source pod's egress, or the destination pod's ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    /// That end is not a pod, so this direction has no side of its own.
    NotAPod,
    /// No policy selects the pod for this direction.
    NotIsolated,
    /// Allowed whatever the rules say; `isolated_by` may still list policies selecting it.
    Exempt { exemption: Exemption, isolated_by: Vec<PolicyRef> },
    /// Isolated by `isolated_by`; `allowed_by` have a rule admitting the connection.
    Allowed { isolated_by: Vec<PolicyRef>, allowed_by: Vec<PolicyRef> },
    /// Isolated by `isolated_by`, and no rule of theirs admits the connection.
    Denied { isolated_by: Vec<PolicyRef> },
    /// Not evaluated: the verdict is pending.
    Pending,
}

impl Side {
    pub fn allows(&self) -> bool {
        !matches!(self, Side::Denied { .. })
    }

    /// The policies selecting the pod for this direction.
    pub fn isolated_by(&self) -> &[PolicyRef] {
        match self {
            Side::Exempt { isolated_by, .. }
            | Side::Allowed { isolated_by, .. }
            | Side::Denied { isolated_by } => isolated_by,
            Side::NotAPod | Side::NotIsolated | Side::Pending => &[],
        }
    }

    pub fn is_isolated(&self) -> bool {
        !self.isolated_by().is_empty()
    }
}

/// Why a direction is allowed regardless of policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exemption {
    /// Ingress from the pod's own node [API `ingress`].
    OwnNode,
    /// A pod reaching itself by its own IP: it cannot block access to itself.
    Loopback,
}

/// Why an allow relies on what not every plugin implements the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PluginDependence {
    /// An ipBlock matched a pod or node address (Cilium applies CIDR rules to outside traffic only).
    IpBlockInCluster,
    /// Admitted by an `endPort` range beyond its `port` (a plugin without it applies `port` alone).
    EndPort,
    /// SCTP with an isolated pod (plugins need not support SCTP).
    Sctp,
}

impl fmt::Display for PluginDependence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginDependence::IpBlockInCluster => "an ipBlock matching an in-cluster address",
            PluginDependence::EndPort => "an endPort range",
            PluginDependence::Sctp => "SCTP",
        })
    }
}

/// Why the verdict is left to the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UndefinedReason {
    /// ICMP (or anything but TCP, UDP and SCTP) with an isolated pod.
    Icmp,
    /// Egress from an isolated pod to its own node.
    EgressToOwnNode,
    /// A pod reaching itself through a Service.
    ServiceHairpin,
    /// A NodePort or LoadBalancer path: the source may be masqueraded.
    NodePortOrLoadBalancer,
    /// A hostNetwork pod at the other end.
    HostNetworkPeer,
    /// A Service rewritten to an address outside the cluster.
    ServiceToExternal,
}

impl fmt::Display for UndefinedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UndefinedReason::Icmp => "ICMP with an isolated pod",
            UndefinedReason::EgressToOwnNode => "egress to the pod's own node",
            UndefinedReason::ServiceHairpin => "a pod reaching itself through a Service",
            UndefinedReason::NodePortOrLoadBalancer => "a NodePort or LoadBalancer path",
            UndefinedReason::HostNetworkPeer => "a hostNetwork pod at the other end",
            UndefinedReason::ServiceToExternal => "a Service rewritten to an external address",
        })
    }
}

/// The evaluator's answer for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVerdict {
    /// `Undefined` exactly when `undefined` is not empty (and not pending).
    pub verdict: Verdict,
    /// The rules read literally; `None` when pending.
    pub as_written: Option<Decision>,
    /// The source pod's egress.
    pub egress: Side,
    /// The destination pod's ingress.
    pub ingress: Side,
    /// What an allow relies on (nothing for a deny), plus SCTP with an isolated pod either way.
    pub plugin_dependent: BTreeSet<PluginDependence>,
    pub undefined: BTreeSet<UndefinedReason>,
}

impl PolicyVerdict {
    /// Every policy that decided: on a deny, those isolating a denying side; on an allow,
    /// those admitting it.
    pub fn deciding_policies(&self) -> Vec<&PolicyRef> {
        let mut out = Vec::new();
        for side in [&self.egress, &self.ingress] {
            match side {
                Side::Denied { isolated_by } => out.extend(isolated_by),
                Side::Allowed { allowed_by, .. } if self.as_written == Some(Decision::Allow) => {
                    out.extend(allowed_by)
                }
                _ => {}
            }
        }
        out
    }
}

fn policies(refs: &[PolicyRef]) -> String {
    let mut out = String::from(if refs.len() == 1 { "policy " } else { "policies " });
    for (i, r) in refs.iter().enumerate() {
        let sep = match i {
            0 => "",
            _ if i + 1 == refs.len() => " and ",
            _ => ", ",
        };
        out.push_str(&format!("{sep}{r}"));
    }
    out
}

fn list<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items.into_iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// One direction as a clause; `None` for a side with nothing to say.
fn clause(direction: &str, s: &Side) -> Option<String> {
    Some(match s {
        Side::NotAPod | Side::Pending => return None,
        Side::NotIsolated => format!("no policy isolates {direction}"),
        Side::Exempt { exemption: Exemption::OwnNode, .. } => {
            format!("{direction} from the pod's own node is always allowed")
        }
        Side::Exempt { exemption: Exemption::Loopback, .. } => {
            "a pod reaching itself by its own IP is always allowed".to_owned()
        }
        Side::Allowed { allowed_by, .. } => format!("{direction} is allowed by {}", policies(allowed_by)),
        Side::Denied { isolated_by } => {
            format!("{direction} is isolated by {} and no rule admits it", policies(isolated_by))
        }
    })
}

impl fmt::Display for PolicyVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(decision) = self.as_written else {
            return f.write_str("pending: a pod end has no IP yet");
        };
        if self.verdict == Verdict::Undefined {
            write!(f, "undefined ({}); as written, ", list(&self.undefined))?;
        }
        f.write_str(if decision == Decision::Allow { "allowed: " } else { "denied: " })?;
        // On a deny only the denying sides matter; loopback exempts both sides in one clause.
        let mut clauses: Vec<String> = [("egress", &self.egress), ("ingress", &self.ingress)]
            .into_iter()
            .filter(|(_, s)| decision == Decision::Allow || !s.allows())
            .filter_map(|(direction, s)| clause(direction, s))
            .collect();
        clauses.dedup();
        if clauses.is_empty() {
            clauses.push("neither end is a pod".to_owned());
        }
        f.write_str(&clauses.join("; "))?;
        if !self.plugin_dependent.is_empty() {
            write!(f, " (plugin-dependent: relies on {})", list(&self.plugin_dependent))?;
        }
        Ok(())
    }
}
