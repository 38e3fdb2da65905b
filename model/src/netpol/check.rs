//! The checked NetworkPolicy ([`Policy`]) and the step that makes one from the wire form:
//! the API server's defaulting [DEF] and validation [VAL], so a policy from a topology file is
//! treated exactly as the API server would have stored it.
//!
//! - `policyTypes` empty or omitted: `Ingress`, plus `Egress` when `egress` holds a rule.
//! - A rule's direction absent from `policyTypes` is dropped: it is never evaluated.
//! - A port's protocol defaults to TCP; `endPort` needs a numeric `port` no greater than it.
//! - A peer sets at least one field, and `ipBlock` stands alone; each `except` is a strict
//!   subset of `cidr` (host bits in a CIDR are accepted and cleared, as the API does).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::error::{PolicyError, PolicyProblem};
use super::selector::{LabelSelector, Selector};
use super::{IntOrString, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use crate::names::{Name, Namespace, Port, shorten};

/// A policy's identity, shown as `<namespace>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyRef {
    pub namespace: Namespace,
    pub name: Name,
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A validated, defaulted NetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    id: PolicyRef,
    pod_selector: Selector,
    ingress: Option<Vec<Rule>>,
    egress: Option<Vec<Rule>>,
}

impl Policy {
    pub fn id(&self) -> &PolicyRef {
        &self.id
    }

    pub fn namespace(&self) -> &Namespace {
        &self.id.namespace
    }

    /// Selects pods in [`Policy::namespace`] only.
    pub fn pod_selector(&self) -> &Selector {
        &self.pod_selector
    }

    /// `None` when the policy does not list `Ingress`: it neither isolates nor admits ingress.
    /// `Some([])` isolates and admits nothing.
    pub fn ingress(&self) -> Option<&[Rule]> {
        self.ingress.as_deref()
    }

    /// As [`Policy::ingress`], for `Egress`.
    pub fn egress(&self) -> Option<&[Rule]> {
        self.egress.as_deref()
    }
}

/// One ingress or egress rule: it matches when some peer and some port match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    peers: Vec<Peer>,
    ports: Vec<PortRule>,
}

impl Rule {
    /// `from`/`to`; empty matches every peer, pod or not.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// Empty matches every port and protocol.
    pub fn ports(&self) -> &[PortRule] {
        &self.ports
    }
}

/// A `from`/`to` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// Pods matching `pods` in the namespaces matching `namespaces`, or in the policy's own
    /// namespace when `namespaces` is `None` (no `namespaceSelector`). Never matches a non-pod.
    Pods {
        pods: Selector,
        namespaces: Option<Selector>,
    },
    IpBlock(IpBlock),
}

/// Addresses in `cidr` and in none of `except` (each a strict subset of `cidr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpBlock {
    cidr: IpNet,
    except: Vec<IpNet>,
}

impl IpBlock {
    pub fn cidr(&self) -> IpNet {
        self.cidr
    }

    pub fn except(&self) -> &[IpNet] {
        &self.except
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidr.contains(&ip) && !self.except.iter().any(|e| e.contains(&ip))
    }
}

impl fmt::Display for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cidr)?;
        for (i, e) in self.except.iter().enumerate() {
            write!(f, "{}{e}", if i == 0 { " except " } else { ", " })?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyProtocol {
    Tcp,
    Udp,
    Sctp,
}

impl fmt::Display for PolicyProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PolicyProtocol::Tcp => "TCP",
            PolicyProtocol::Udp => "UDP",
            PolicyProtocol::Sctp => "SCTP",
        })
    }
}

/// One `ports` item, defaulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    pub protocol: PolicyProtocol,
    pub port: PolicyPort,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyPort {
    /// No `port`: every port of the protocol.
    Any,
    Number(Port),
    /// `port`…`endPort`, inclusive; `start <= end` when checked.
    Range {
        start: Port,
        end: Port,
    },
    /// A container port's name, resolved on the destination pod.
    Named(String),
}

impl fmt::Display for PortRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.port {
            PolicyPort::Any => write!(f, "any {} port", self.protocol),
            PolicyPort::Number(p) => write!(f, "{p}/{}", self.protocol),
            PolicyPort::Range { start, end } => write!(f, "{start}-{end}/{}", self.protocol),
            PolicyPort::Named(n) => write!(f, "{n}/{}", self.protocol),
        }
    }
}

impl NetworkPolicy {
    /// Applies the API server's defaults and validation; the error names the policy and field.
    pub fn check(&self) -> Result<Policy, PolicyError> {
        let ns = self.metadata.namespace.as_deref();
        let name = self.metadata.name.as_deref();
        let object =
            format!("network policy {}/{}", shorten(ns.unwrap_or("?")), shorten(name.unwrap_or("?")));
        let fail =
            |field: String, problem: PolicyProblem| PolicyError { object: object.clone(), field, problem };
        let namespace = ns
            .ok_or(PolicyProblem::Missing)
            .and_then(|n| Ok(Namespace::new(n)?))
            .map_err(|p| fail("metadata.namespace".into(), p))?;
        let name = name
            .ok_or(PolicyProblem::Missing)
            .and_then(|n| Ok(Name::new(n)?))
            .map_err(|p| fail("metadata.name".into(), p))?;

        let spec = &self.spec;
        let pod_selector = match &spec.pod_selector {
            None => Selector::everything(),
            Some(s) => s.check().map_err(|(f, p)| fail(format!("spec.podSelector.{f}"), p))?,
        };

        let (mut wants_ingress, mut wants_egress) = (false, false);
        let types = spec.policy_types.as_deref().unwrap_or_default();
        if types.len() > 2 {
            return Err(fail("spec.policyTypes".into(), PolicyProblem::TooManyPolicyTypes(types.len())));
        }
        for (i, t) in types.iter().enumerate() {
            match t.as_str() {
                "Ingress" => wants_ingress = true,
                "Egress" => wants_egress = true,
                other => {
                    return Err(fail(
                        format!("spec.policyTypes[{i}]"),
                        PolicyProblem::UnknownPolicyType(shorten(other)),
                    ));
                }
            }
        }
        let ingress_rules = spec.ingress.as_deref().unwrap_or_default();
        let egress_rules = spec.egress.as_deref().unwrap_or_default();
        if types.is_empty() {
            wants_ingress = true;
            wants_egress = !egress_rules.is_empty();
        }

        // Every rule is validated, even one its direction's absence will drop, as the API does.
        let mut ingress = Vec::with_capacity(ingress_rules.len());
        for (i, r) in ingress_rules.iter().enumerate() {
            let at = format!("spec.ingress[{i}]");
            ingress.push(
                check_rule(r.from.as_deref(), "from", r.ports.as_deref(), &at)
                    .map_err(|(f, p)| fail(f, p))?,
            );
        }
        let mut egress = Vec::with_capacity(egress_rules.len());
        for (i, r) in egress_rules.iter().enumerate() {
            let at = format!("spec.egress[{i}]");
            egress.push(
                check_rule(r.to.as_deref(), "to", r.ports.as_deref(), &at).map_err(|(f, p)| fail(f, p))?,
            );
        }

        Ok(Policy {
            id: PolicyRef { namespace, name },
            pod_selector,
            ingress: wants_ingress.then_some(ingress),
            egress: wants_egress.then_some(egress),
        })
    }
}

type FieldError = (String, PolicyProblem);

fn check_rule(
    peers: Option<&[NetworkPolicyPeer]>,
    peers_field: &str,
    ports: Option<&[NetworkPolicyPort]>,
    at: &str,
) -> Result<Rule, FieldError> {
    let peers = peers
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, p)| check_peer(p, &format!("{at}.{peers_field}[{i}]")))
        .collect::<Result<_, _>>()?;
    let ports = ports
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, p)| check_port(p, &format!("{at}.ports[{i}]")))
        .collect::<Result<_, _>>()?;
    Ok(Rule { peers, ports })
}

fn check_selector(s: &LabelSelector, at: &str) -> Result<Selector, FieldError> {
    s.check().map_err(|(f, p)| (format!("{at}.{f}"), p))
}

fn check_peer(peer: &NetworkPolicyPeer, at: &str) -> Result<Peer, FieldError> {
    match (&peer.pod_selector, &peer.namespace_selector, &peer.ip_block) {
        (None, None, None) => Err((at.to_owned(), PolicyProblem::EmptyPeer)),
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            Err((at.to_owned(), PolicyProblem::IpBlockWithSelector))
        }
        (None, None, Some(block)) => {
            let at = format!("{at}.ipBlock");
            let cidr = parse_cidr(&block.cidr, &format!("{at}.cidr"))?;
            let mut except = Vec::new();
            for (i, e) in block.except.iter().flatten().enumerate() {
                let field = format!("{at}.except[{i}]");
                let net = parse_cidr(e, &field)?;
                if !cidr.contains(&net) || net.prefix_len() <= cidr.prefix_len() {
                    let problem =
                        PolicyProblem::ExceptNotStrictSubset { except: shorten(e), cidr: cidr.to_string() };
                    return Err((field, problem));
                }
                except.push(net);
            }
            Ok(Peer::IpBlock(IpBlock { cidr, except }))
        }
        (pods, namespaces, None) => {
            let pods = match pods {
                Some(s) => check_selector(s, &format!("{at}.podSelector"))?,
                None => Selector::everything(),
            };
            let namespaces = namespaces
                .as_ref()
                .map(|s| check_selector(s, &format!("{at}.namespaceSelector")))
                .transpose()?;
            Ok(Peer::Pods { pods, namespaces })
        }
    }
}

fn parse_cidr(text: &str, field: &str) -> Result<IpNet, FieldError> {
    if text.is_empty() {
        return Err((field.to_owned(), PolicyProblem::Missing));
    }
    text.parse::<IpNet>()
        .map(|n| n.trunc())
        .map_err(|_| (field.to_owned(), PolicyProblem::BadCidr(shorten(text))))
}

fn check_port(port: &NetworkPolicyPort, at: &str) -> Result<PortRule, FieldError> {
    let protocol = match port.protocol.as_deref() {
        None | Some("TCP") => PolicyProtocol::Tcp,
        Some("UDP") => PolicyProtocol::Udp,
        Some("SCTP") => PolicyProtocol::Sctp,
        Some(other) => {
            return Err((format!("{at}.protocol"), PolicyProblem::UnknownProtocol(shorten(other))));
        }
    };
    let number = |n: i64, field: &str| {
        u32::try_from(n)
            .ok()
            .and_then(|n| Port::new(n).ok())
            .ok_or_else(|| (format!("{at}.{field}"), PolicyProblem::BadPortNumber(n)))
    };
    let port = match (&port.port, port.end_port) {
        (None, None) => PolicyPort::Any,
        (None, Some(_)) => return Err((format!("{at}.endPort"), PolicyProblem::EndPortWithoutPort)),
        (Some(IntOrString::String(_)), Some(_)) => {
            return Err((format!("{at}.endPort"), PolicyProblem::EndPortWithNamedPort));
        }
        (Some(IntOrString::String(name)), None) => {
            if !is_port_name(name) {
                return Err((format!("{at}.port"), PolicyProblem::BadPortName(shorten(name))));
            }
            PolicyPort::Named(name.clone())
        }
        (Some(IntOrString::Int(n)), None) => PolicyPort::Number(number(*n, "port")?),
        (Some(IntOrString::Int(n)), Some(end)) => {
            let start = number(*n, "port")?;
            if end < *n {
                return Err((
                    format!("{at}.endPort"),
                    PolicyProblem::EndPortBelowPort { port: *n, end_port: end },
                ));
            }
            PolicyPort::Range { start, end: number(end, "endPort")? }
        }
    };
    Ok(PortRule { protocol, port })
}

/// Kubernetes' `IsValidPortName` (an IANA service name): what a container port's name must be.
pub fn is_port_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 15
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.iter().any(u8::is_ascii_lowercase)
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !s.contains("--")
}
