//! The lab plays the CNI: it enforces the topology's NetworkPolicies with iptables rules, the
//! way Calico-style plugins do, computed here as a pure function of (plan, active faults).
//!
//! This is an implementation independent of `netdiag_diagnose::policy` (the evaluator of
//! expected verdicts): a diagnosis that compares what the network does with what the evaluator
//! expects can only catch an evaluator bug if the enforcement is written separately. The lab's
//! end-to-end tests cross-check the two.
//!
//! Where the rules live:
//!
//! - **Ingress** of a pod: chain [`INGRESS_CHAIN`] inside the pod's own network namespace,
//!   jumped to from `INPUT` (after the fault chain). It sees the connection after kube-proxy's
//!   DNAT (done on the node), with the client's own address, exactly what policy is about.
//! - **Egress** of a pod: on its node, chain [`EGRESS_CHAIN`] jumped to from the node's
//!   `FORWARD` and `INPUT`, dispatching on the pod's veth (`-i <host_if>`) to a chain per pod
//!   (`NETDIAG-NPO-<hash>`). Not inside the pod: a pod's own `OUTPUT` sees a Service VIP before
//!   the node's DNAT rewrites it, while policy applies to the backend pod after load balancing
//!   (NETPOL §6); Calico enforces egress on the host side of the veth for the same reason.
//!
//! Each chain, for a pod isolated in that direction: conntrack `ESTABLISHED,RELATED` accepted
//! first (replies are implicitly allowed), then, for ingress, loopback (`-i lo`: a pod reaching
//! itself) and the pod's own node's addresses (NETPOL §7), ICMPv6 neighbour discovery in the v6
//! family (without it nothing v6 reaches the pod), then one `ACCEPT` per (peer, port) a
//! selecting policy admits, then `DROP`. Peers are resolved to the pods' current IPs (pod and
//! namespace selectors), ipBlocks become `-s/-d <cidr>` with a small chain returning early for
//! each `except`; ports are `-p <proto> --dport <n>` or `<n>:<end>`; a named port is resolved on
//! the destination pod (the pod itself for ingress, each candidate destination pod for egress,
//! where the rule then names that pod's address). A pod no policy isolates in a direction gets
//! no chain for it.
//!
//! iptables (iptables-nft on current systems) in both kube-proxy modes: the pod namespaces hold
//! no kube-proxy rules at all, and on nodes the lab's fault chain already coexists with
//! kube-proxy's `ip kube-proxy` nftables table the same way. One `iptables-restore` per
//! namespace writes the fault chain and the policy chains in one transaction, so a namespace
//! never holds half of them, and the agent's firewall inspection reads them with
//! `iptables-save` as it reads the fault chain.
//!
//! Faults: `policy-not-enforced <node>` leaves out every policy chain of that node's pods (the
//! CNI's agent is down there); `extra-deny <pod> <source>` puts a stateful `DROP` no policy asks
//! for at the top of the pod's ingress chain (creating the chain if the pod is not isolated).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use netdiag_model::netpol::{
    IpBlock, NamespaceLabels, NamespaceObject, Peer, Policy, PolicyPort, PolicyProtocol, PortRule, Rule,
};
use netdiag_model::{Namespace, PodRef};

use crate::faults::{ActiveFault, DenySource, FaultSpec};
use crate::plan::{LabPlan, NodePlan, PodPlan, fnv32};
use crate::rules::Family;

/// The ingress chain inside a pod's namespace, jumped to from `INPUT`.
pub const INGRESS_CHAIN: &str = "NETDIAG-NETPOL-IN";
/// The egress dispatch chain on a node, jumped to from `FORWARD` and `INPUT`.
pub const EGRESS_CHAIN: &str = "NETDIAG-NETPOL-OUT";

/// Chains for one namespace's filter table: hooks from built-in chains and the chains' rules
/// (each rule is what follows `-A <chain>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chains {
    /// (built-in chain, chain jumped to), in hook order.
    pub hooks: Vec<(&'static str, String)>,
    /// (chain, its rules), in declaration order.
    pub chains: Vec<(String, Vec<String>)>,
}

impl Chains {
    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty() && self.chains.is_empty()
    }

    /// The rules of one chain (empty if there is none).
    pub fn rules(&self, chain: &str) -> &[String] {
        self.chains.iter().find(|(c, _)| c == chain).map(|(_, r)| r.as_slice()).unwrap_or_default()
    }
}

/// The name of a pod's egress chain on its node.
pub fn egress_pod_chain(pod: &PodRef) -> String {
    format!("NETDIAG-NPO-{:08x}", fnv32(&pod.to_string()))
}

fn family_of(ip: IpAddr) -> Family {
    if ip.is_ipv4() { Family::V4 } else { Family::V6 }
}

fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

fn comment(text: &str) -> String {
    format!("-m comment --comment \"{text}\"")
}

const ESTABLISHED: &str = "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT";

/// ICMPv6 neighbour discovery, which must pass for anything v6 to reach a pod.
fn ndp_rules() -> Vec<String> {
    ["neighbour-solicitation", "neighbour-advertisement"]
        .iter()
        .map(|t| format!("-p ipv6-icmp -m icmp6 --icmpv6-type {t} -j ACCEPT"))
        .collect()
}

/// The lab's policies, checked, with the namespaces' labels: what enforcement reads.
#[derive(Debug, Clone, Default)]
pub struct Enforcement {
    policies: Vec<Policy>,
    namespaces: BTreeMap<Namespace, NamespaceLabels>,
}

/// Which side of a connection a rule list is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn rules_of(self, p: &Policy) -> Option<&[Rule]> {
        match self {
            Direction::Ingress => p.ingress(),
            Direction::Egress => p.egress(),
        }
    }

    /// The address flag naming the far end (`-s` for ingress, `-d` for egress).
    fn far(self) -> &'static str {
        match self {
            Direction::Ingress => "-s",
            Direction::Egress => "-d",
        }
    }
}

/// The far end of a rule, resolved to addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PeerMatch {
    Any,
    Addr(IpNet),
    Block { cidr: IpNet, except: Vec<IpNet> },
}

impl PeerMatch {
    fn contains(&self, ip: IpAddr) -> bool {
        match self {
            PeerMatch::Any => true,
            PeerMatch::Addr(n) => n.contains(&ip),
            PeerMatch::Block { cidr, except } => {
                cidr.contains(&ip) && !except.iter().any(|e| e.contains(&ip))
            }
        }
    }
}

fn proto_name(p: PolicyProtocol) -> &'static str {
    match p {
        PolicyProtocol::Tcp => "tcp",
        PolicyProtocol::Udp => "udp",
        PolicyProtocol::Sctp => "sctp",
    }
}

/// The `-p … --dport …` text of a numeric port rule; `None` for a named port.
fn port_match(p: &PortRule) -> Option<String> {
    let proto = proto_name(p.protocol);
    match &p.port {
        PolicyPort::Any => Some(format!("-p {proto}")),
        PolicyPort::Number(n) => Some(format!("-p {proto} -m {proto} --dport {n}")),
        PolicyPort::Range { start, end } => Some(format!("-p {proto} -m {proto} --dport {start}:{end}")),
        PolicyPort::Named(_) => None,
    }
}

/// A named port on a pod: the number of its container port with that name and protocol.
fn resolve_named(plan: &LabPlan, pod: &PodPlan, name: &str, protocol: PolicyProtocol) -> Option<String> {
    let proto = proto_name(protocol);
    plan.listening_ports(pod).into_iter().find_map(|(port, p)| {
        let same_proto = matches!(
            (p, protocol),
            (netdiag_model::inventory::Protocol::Tcp, PolicyProtocol::Tcp)
                | (netdiag_model::inventory::Protocol::Udp, PolicyProtocol::Udp)
        );
        (same_proto && pod.port_names.get(&port).is_some_and(|n| n == name))
            .then(|| format!("-p {proto} -m {proto} --dport {port}"))
    })
}

impl Enforcement {
    /// Checks the plan's policies and namespaces. They were checked when the topology was
    /// loaded; one that no longer checks (a hand-edited state file) enforces nothing.
    pub fn new(plan: &LabPlan) -> Self {
        Self::from_objects(plan, &plan.namespaces)
    }

    fn from_objects(plan: &LabPlan, namespaces: &[NamespaceObject]) -> Self {
        let policies = plan
            .network_policies
            .iter()
            .filter_map(|p| match p.check() {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(error = %e, "a NetworkPolicy in the lab's plan does not check; it is not enforced");
                    None
                }
            })
            .collect();
        let namespaces =
            namespaces.iter().filter_map(|n| n.check().ok()).map(|n| (n.name().clone(), n)).collect();
        Self { policies, namespaces }
    }

    fn namespace_matches(&self, selector: &netdiag_model::netpol::Selector, ns: &Namespace) -> bool {
        match self.namespaces.get(ns) {
            Some(n) => selector.matches(n.labels()),
            None => selector.matches(NamespaceLabels::unlabelled(ns.clone()).labels()),
        }
    }

    /// The policies that select `pod` and list `direction`, with their rules for it.
    fn selecting<'a>(&'a self, pod: &'a PodPlan, direction: Direction) -> Vec<(&'a Policy, &'a [Rule])> {
        self.policies
            .iter()
            .filter(|p| *p.namespace() == pod.pod.namespace && p.pod_selector().matches(&pod.labels))
            .filter_map(|p| Some((p, direction.rules_of(p)?)))
            .collect()
    }

    /// Whether some policy isolates `pod` for ingress.
    pub fn isolates_ingress(&self, pod: &PodPlan) -> bool {
        !self.selecting(pod, Direction::Ingress).is_empty()
    }

    /// Whether some policy isolates `pod` for egress.
    pub fn isolates_egress(&self, pod: &PodPlan) -> bool {
        !self.selecting(pod, Direction::Egress).is_empty()
    }

    /// The pods a `Pods` peer of a policy in `policy_ns` selects.
    fn peer_pods<'a>(
        &'a self,
        plan: &'a LabPlan,
        policy_ns: &'a Namespace,
        pods: &'a netdiag_model::netpol::Selector,
        namespaces: Option<&'a netdiag_model::netpol::Selector>,
    ) -> impl Iterator<Item = &'a PodPlan> + 'a {
        plan.pods.iter().filter(move |p| {
            let ns_ok = match namespaces {
                None => p.pod.namespace == *policy_ns,
                Some(sel) => self.namespace_matches(sel, &p.pod.namespace),
            };
            ns_ok && pods.matches(&p.labels)
        })
    }

    /// A rule's peers as address matches in one family (empty peers: anything).
    fn peer_matches(&self, plan: &LabPlan, policy: &Policy, rule: &Rule, family: Family) -> Vec<PeerMatch> {
        if rule.peers().is_empty() {
            return vec![PeerMatch::Any];
        }
        let mut out = Vec::new();
        for peer in rule.peers() {
            match peer {
                Peer::Pods { pods, namespaces } => {
                    for p in self.peer_pods(plan, policy.namespace(), pods, namespaces.as_ref()) {
                        for ip in p.ips().into_iter().filter(|ip| family_of(*ip) == family) {
                            push_unique(&mut out, PeerMatch::Addr(host_net(ip)));
                        }
                    }
                }
                Peer::IpBlock(block) => {
                    if let Some(m) = block_match(block, family) {
                        push_unique(&mut out, m);
                    }
                }
            }
        }
        out
    }

    /// The accept rules (and except chains) one pod's selecting policies give in a direction.
    /// `chain_prefix` names the except chains (`<prefix>-E<n>`).
    fn allow_rules(
        &self,
        plan: &LabPlan,
        pod: &PodPlan,
        direction: Direction,
        family: Family,
        chain_prefix: &str,
    ) -> (Vec<String>, Vec<(String, Vec<String>)>) {
        let far = direction.far();
        let mut rules: Vec<String> = Vec::new();
        let mut except_chains: Vec<(String, Vec<String>)> = Vec::new();
        for (policy, policy_rules) in self.selecting(pod, direction) {
            let c = comment(&format!("netpol {}", policy.id()));
            for rule in policy_rules {
                let peers = self.peer_matches(plan, policy, rule, family);
                // Numeric ports (or every port) apply to every peer; a named port is resolved on
                // the destination pod.
                let mut numeric: Vec<String> = Vec::new();
                let mut named: Vec<&PortRule> = Vec::new();
                if rule.ports().is_empty() {
                    numeric.push(String::new());
                }
                for port in rule.ports() {
                    match port_match(port) {
                        Some(m) => numeric.push(m),
                        None => named.push(port),
                    }
                }
                if direction == Direction::Ingress {
                    for port in &named {
                        if let PolicyPort::Named(name) = &port.port
                            && let Some(m) = resolve_named(plan, pod, name, port.protocol)
                        {
                            numeric.push(m);
                        }
                    }
                }
                for peer in &peers {
                    if numeric.is_empty() {
                        break;
                    }
                    match peer {
                        PeerMatch::Any => {
                            for m in &numeric {
                                push_unique(&mut rules, join(&[m, &c, "-j ACCEPT"]));
                            }
                        }
                        PeerMatch::Addr(net) => {
                            for m in &numeric {
                                push_unique(&mut rules, join(&[&format!("{far} {net}"), m, &c, "-j ACCEPT"]));
                            }
                        }
                        PeerMatch::Block { cidr, except } => {
                            let name = format!("{chain_prefix}-E{}", except_chains.len());
                            let mut body: Vec<String> =
                                except.iter().map(|e| format!("{far} {e} -j RETURN")).collect();
                            for m in &numeric {
                                body.push(join(&[m, &c, "-j ACCEPT"]));
                            }
                            rules.push(join(&[&format!("{far} {cidr}"), &c, &format!("-j {name}")]));
                            except_chains.push((name, body));
                        }
                    }
                }
                if direction == Direction::Egress && !named.is_empty() {
                    // Every destination pod the peers cover that declares the name (with that
                    // protocol), at its own address and port number.
                    for dest in &plan.pods {
                        for ip in dest.ips().into_iter().filter(|ip| family_of(*ip) == family) {
                            if !peers.iter().any(|p| p.contains(ip)) {
                                continue;
                            }
                            for port in &named {
                                if let PolicyPort::Named(name) = &port.port
                                    && let Some(m) = resolve_named(plan, dest, name, port.protocol)
                                {
                                    push_unique(
                                        &mut rules,
                                        join(&[&format!("-d {}", host_net(ip)), &m, &c, "-j ACCEPT"]),
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
        (rules, except_chains)
    }

    /// What a pod's own namespace's filter table holds for policies and `extra-deny` faults, in
    /// one family: [`INGRESS_CHAIN`] hooked from `INPUT`, or nothing.
    pub fn pod_chains(
        &self,
        plan: &LabPlan,
        faults: &[ActiveFault],
        pod: &PodPlan,
        family: Family,
    ) -> Chains {
        let enforced = !not_enforced_on(faults, &pod.node);
        let isolated = enforced && self.isolates_ingress(pod);
        let extra = extra_deny_rules(plan, faults, pod, family);
        if !isolated && extra.is_empty() {
            return Chains::default();
        }
        let mut rules = vec![ESTABLISHED.to_owned()];
        rules.extend(extra);
        let mut chains = Vec::new();
        if isolated {
            rules.push("-i lo -j ACCEPT".to_owned());
            if family == Family::V6 {
                rules.extend(ndp_rules());
            }
            if let Some(node) = plan.node(&pod.node) {
                for ip in node_ips(node).into_iter().filter(|ip| family_of(*ip) == family) {
                    rules.push(format!("-s {} {} -j ACCEPT", host_net(ip), comment("netpol own node")));
                }
            }
            let (allow, except_chains) =
                self.allow_rules(plan, pod, Direction::Ingress, family, INGRESS_CHAIN);
            rules.extend(allow);
            rules.push(format!("{} -j DROP", comment("netpol default deny")));
            chains = except_chains;
        }
        let mut all = vec![(INGRESS_CHAIN.to_owned(), rules)];
        all.extend(chains);
        Chains { hooks: vec![("INPUT", INGRESS_CHAIN.to_owned())], chains: all }
    }

    /// What a node's filter table holds for its pods' egress, in one family: [`EGRESS_CHAIN`]
    /// hooked from `FORWARD` and `INPUT` (present whenever the lab has policies, so the hooks
    /// never move), dispatching each egress-isolated pod's traffic to its own chain.
    pub fn node_chains(
        &self,
        plan: &LabPlan,
        faults: &[ActiveFault],
        node: &NodePlan,
        family: Family,
    ) -> Chains {
        if self.policies.is_empty() {
            return Chains::default();
        }
        let mut dispatch = Vec::new();
        let mut chains = Vec::new();
        if !not_enforced_on(faults, &node.name) {
            for pod in plan.pods.iter().filter(|p| p.node == node.name && self.isolates_egress(p)) {
                let chain = egress_pod_chain(&pod.pod);
                dispatch.push(format!(
                    "-i {} {} -j {chain}",
                    pod.host_if,
                    comment(&format!("netpol egress {}", pod.pod))
                ));
                let mut rules = vec![ESTABLISHED.to_owned()];
                if family == Family::V6 {
                    rules.extend(ndp_rules());
                }
                let (allow, except_chains) = self.allow_rules(plan, pod, Direction::Egress, family, &chain);
                rules.extend(allow);
                rules.push(format!("{} -j DROP", comment("netpol default deny")));
                chains.push((chain, rules));
                chains.extend(except_chains);
            }
        }
        let mut all = vec![(EGRESS_CHAIN.to_owned(), dispatch)];
        all.extend(chains);
        Chains {
            hooks: vec![("INPUT", EGRESS_CHAIN.to_owned()), ("FORWARD", EGRESS_CHAIN.to_owned())],
            chains: all,
        }
    }
}

fn node_ips(node: &NodePlan) -> Vec<IpAddr> {
    std::iter::once(IpAddr::V4(node.ip)).chain(node.ip_v6.map(IpAddr::V6)).collect()
}

fn not_enforced_on(faults: &[ActiveFault], node: &netdiag_model::NodeName) -> bool {
    faults.iter().any(|f| matches!(&f.spec, FaultSpec::PolicyNotEnforced { node: n } if n == node))
}

/// `extra-deny` faults on `pod`: a stateful DROP per source address (the chain accepts
/// established traffic first, so only new connections are hit, as by a policy).
fn extra_deny_rules(plan: &LabPlan, faults: &[ActiveFault], pod: &PodPlan, family: Family) -> Vec<String> {
    let mut out = Vec::new();
    for f in faults {
        let FaultSpec::ExtraDeny { pod: target, from } = &f.spec else { continue };
        if *target != pod.pod {
            continue;
        }
        let c = comment(&format!("netdiag-fault-{} {}", f.id, f.spec.name()));
        let sources = plan.pods.iter().filter(|q| q.pod != pod.pod).filter(|q| match from {
            DenySource::Pod(p) => q.pod == *p,
            DenySource::Namespace(ns) => q.pod.namespace == *ns,
        });
        for q in sources {
            for ip in q.ips().into_iter().filter(|ip| family_of(*ip) == family) {
                push_unique(&mut out, format!("-s {} {c} -j DROP", host_net(ip)));
            }
        }
    }
    out
}

fn block_match(block: &IpBlock, family: Family) -> Option<PeerMatch> {
    let same = |n: &IpNet| matches!((n, family), (IpNet::V4(_), Family::V4) | (IpNet::V6(_), Family::V6));
    if !same(&block.cidr()) {
        return None;
    }
    let except: Vec<IpNet> = block.except().iter().copied().filter(same).collect();
    Some(if except.is_empty() {
        PeerMatch::Addr(block.cidr())
    } else {
        PeerMatch::Block { cidr: block.cidr(), except }
    })
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, item: T) {
    if !v.contains(&item) {
        v.push(item);
    }
}

/// Joins non-empty parts with one space.
fn join(parts: &[&str]) -> String {
    parts.iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
