//! [`PolicySet`]: the checked policies indexed by namespace (a lookup reads one namespace's
//! policies, never all of them) with the namespaces' labels, and [`PolicySet::evaluate`], which
//! follows NETPOL.md §8 step by step.

use std::collections::{BTreeMap, BTreeSet};

use hashbrown::HashMap;
use netdiag_model::netpol::{
    NamespaceLabels, NamespaceObject, NetworkPolicy, Policy, PolicyError, PolicyRef, Rule, Selector,
};
use netdiag_model::{Name, Namespace};

use super::rules::{Reliance, admits, sturdiest};
use super::traffic::{Endpoint, HostKind, PodEndpoint, Traffic, Via};
use super::verdict::{Decision, Exemption, PluginDependence, PolicyVerdict, Side, UndefinedReason, Verdict};

/// The cluster's policies and namespaces, ready to judge connections.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    /// Per namespace, by name: a policy given twice keeps its last version.
    policies: HashMap<Namespace, BTreeMap<Name, Policy>>,
    namespaces: HashMap<Namespace, NamespaceLabels>,
}

/// Which way a rule list is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Egress,
    Ingress,
}

impl Direction {
    fn rules_of(self, p: &Policy) -> Option<&[Rule]> {
        match self {
            Direction::Egress => p.egress(),
            Direction::Ingress => p.ingress(),
        }
    }
}

impl PolicySet {
    /// A namespace that is not given is taken to carry only `kubernetes.io/metadata.name`.
    pub fn new(
        policies: impl IntoIterator<Item = Policy>,
        namespaces: impl IntoIterator<Item = NamespaceLabels>,
    ) -> Self {
        let mut set = Self::default();
        for p in policies {
            set.policies.entry(p.namespace().clone()).or_default().insert(p.id().name.clone(), p);
        }
        for ns in namespaces {
            set.namespaces.insert(ns.name().clone(), ns);
        }
        set
    }

    /// The set an inventory's objects make, leaving out each that fails the API's
    /// validation, with why (what the API server would have refused).
    pub fn from_inventory(inventory: &netdiag_model::inventory::Inventory) -> (Self, Vec<PolicyError>) {
        fn keep<T>(r: Result<T, PolicyError>, errors: &mut Vec<PolicyError>) -> Option<T> {
            r.map_err(|e| errors.push(e)).ok()
        }
        let mut errors = Vec::new();
        let policies: Vec<Policy> =
            inventory.network_policies.iter().filter_map(|p| keep(p.check(), &mut errors)).collect();
        let namespaces: Vec<NamespaceLabels> =
            inventory.namespaces.iter().filter_map(|n| keep(n.check(), &mut errors)).collect();
        (Self::new(policies, namespaces), errors)
    }

    /// Checks every object first; the first invalid one is the error.
    pub fn from_objects(
        policies: &[NetworkPolicy],
        namespaces: &[NamespaceObject],
    ) -> Result<Self, PolicyError> {
        let policies = policies.iter().map(NetworkPolicy::check).collect::<Result<Vec<_>, _>>()?;
        let namespaces = namespaces.iter().map(NamespaceObject::check).collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(policies, namespaces))
    }

    pub fn len(&self) -> usize {
        self.policies.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The policies of one namespace, by name.
    pub fn policies_in<'a>(&'a self, namespace: &Namespace) -> impl Iterator<Item = &'a Policy> + 'a {
        self.policies.get(namespace).into_iter().flat_map(BTreeMap::values)
    }

    pub(crate) fn namespace_matches(&self, selector: &Selector, namespace: &Namespace) -> bool {
        if selector.is_everything() {
            return true;
        }
        match self.namespaces.get(namespace) {
            Some(ns) => selector.matches(ns.labels()),
            None => selector.matches(NamespaceLabels::unlabelled(namespace.clone()).labels()),
        }
    }

    /// What the policies expect of `traffic`, following NETPOL.md §8.
    pub fn evaluate(&self, traffic: &Traffic<'_>) -> PolicyVerdict {
        let unaddressed = |e: &Endpoint<'_>| matches!(e, Endpoint::Pod(p) if p.ip.is_none());
        if unaddressed(&traffic.source) || unaddressed(&traffic.destination) {
            return PolicyVerdict {
                verdict: Verdict::Pending,
                as_written: None,
                egress: Side::Pending,
                ingress: Side::Pending,
                plugin_dependent: BTreeSet::new(),
                undefined: BTreeSet::new(),
            };
        }

        let (src, dst) = (&traffic.source, &traffic.destination);
        let same_pod = match (src, dst) {
            (Endpoint::Pod(s), Endpoint::Pod(d)) => s.same_pod(d),
            _ => false,
        };
        let loopback = same_pod && traffic.via == Via::Direct;

        // Step 2: the source's egress. Step 3: the destination's ingress, exemptions first.
        let (egress, egress_reliance) = match src {
            Endpoint::Pod(pod) => {
                self.side(pod, Direction::Egress, traffic, loopback.then_some(Exemption::Loopback))
            }
            _ => (Side::NotAPod, Reliance::new()),
        };
        let (ingress, ingress_reliance) = match dst {
            Endpoint::Pod(pod) => {
                let own_node = matches!(src, Endpoint::Host { node, .. } if *node == pod.node);
                let exemption =
                    if loopback { Some(Exemption::Loopback) } else { own_node.then_some(Exemption::OwnNode) };
                self.side(pod, Direction::Ingress, traffic, exemption)
            }
            _ => (Side::NotAPod, Reliance::new()),
        };

        // Step 4: the AND, then the qualifiers.
        let decision = if egress.allows() && ingress.allows() { Decision::Allow } else { Decision::Deny };
        let isolated = egress.is_isolated() || ingress.is_isolated();
        let mut plugin_dependent = BTreeSet::new();
        if decision == Decision::Allow {
            plugin_dependent.extend(egress_reliance);
            plugin_dependent.extend(ingress_reliance);
        }
        if isolated && matches!(traffic.transport, super::Transport::Sctp(_)) && !loopback {
            plugin_dependent.insert(PluginDependence::Sctp);
        }

        let mut undefined = BTreeSet::new();
        let ruled = |s: &Side| matches!(s, Side::Allowed { .. } | Side::Denied { .. });
        if isolated && traffic.transport.l4().is_none() && !loopback {
            undefined.insert(UndefinedReason::Icmp);
        }
        if let (Endpoint::Pod(s), Endpoint::Host { node, .. }) = (src, dst)
            && s.node == *node
            && ruled(&egress)
        {
            undefined.insert(UndefinedReason::EgressToOwnNode);
        }
        if same_pod && traffic.via.is_service() && isolated {
            undefined.insert(UndefinedReason::ServiceHairpin);
        }
        if matches!(traffic.via, Via::NodePort { .. } | Via::LoadBalancer { .. }) && isolated {
            undefined.insert(UndefinedReason::NodePortOrLoadBalancer);
        }
        let host_network =
            |e: &Endpoint<'_>| matches!(e, Endpoint::Host { kind: HostKind::HostNetworkPod, .. });
        if (host_network(src) && ruled(&ingress)) || (host_network(dst) && ruled(&egress)) {
            undefined.insert(UndefinedReason::HostNetworkPeer);
        }
        if traffic.via == Via::ClusterIp && matches!(dst, Endpoint::External(_)) && ruled(&egress) {
            undefined.insert(UndefinedReason::ServiceToExternal);
        }

        let verdict = match (undefined.is_empty(), decision) {
            (false, _) => Verdict::Undefined,
            (true, Decision::Allow) => Verdict::Allow,
            (true, Decision::Deny) => Verdict::Deny,
        };
        PolicyVerdict { verdict, as_written: Some(decision), egress, ingress, plugin_dependent, undefined }
    }

    /// One pod's side for one direction: the policies of its namespace that select it and list
    /// the direction, then whether an exemption or one of their rules lets `traffic` through.
    fn side(
        &self,
        pod: &PodEndpoint<'_>,
        direction: Direction,
        traffic: &Traffic<'_>,
        exemption: Option<Exemption>,
    ) -> (Side, Reliance) {
        let selecting: Vec<(&Policy, &[Rule])> = self
            .policies_in(pod.namespace)
            .filter(|p| p.pod_selector().matches(pod.labels))
            .filter_map(|p| Some((p, direction.rules_of(p)?)))
            .collect();
        let isolated_by: Vec<PolicyRef> = selecting.iter().map(|(p, _)| p.id().clone()).collect();
        if let Some(exemption) = exemption {
            return (Side::Exempt { exemption, isolated_by }, Reliance::new());
        }
        if selecting.is_empty() {
            return (Side::NotIsolated, Reliance::new());
        }
        let far = match direction {
            Direction::Egress => &traffic.destination,
            Direction::Ingress => &traffic.source,
        };
        let mut allowed_by = Vec::new();
        let mut ways = Vec::new();
        for (policy, rules) in &selecting {
            let admitted = sturdiest(rules.iter().filter_map(|rule| {
                admits(self, policy.namespace(), rule, far, &traffic.destination, traffic.transport)
            }));
            if let Some(reliance) = admitted {
                allowed_by.push(policy.id().clone());
                ways.push(reliance);
            }
        }
        match sturdiest(ways) {
            Some(reliance) => (Side::Allowed { isolated_by, allowed_by }, reliance),
            None => (Side::Denied { isolated_by }, Reliance::new()),
        }
    }
}
