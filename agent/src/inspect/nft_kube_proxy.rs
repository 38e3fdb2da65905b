//! kube-proxy's nftables-mode rules read back from `nft -j list ruleset` (or `nft -j list table
//! ip kube-proxy`) JSON: every Service frontend and the DNAT targets its chains lead to. Pure:
//! JSON text in, values out. Read with `serde_json::Value`, not the typed `nftables` crate, which
//! rejects kube-proxy's verdict maps (nftables-rs#237).
//!
//! In tables `ip kube-proxy` and `ip6 kube-proxy`, frontends are the elements of the verdict
//! maps `service-ips` (`addr . proto . port : goto service-…`) and `service-nodeports`
//! (`proto . port : goto external-…`); from each, the parser follows `goto`/`jump` verdicts and
//! `numgen … vmap { … }` arms down to `dnat to addr:port` in the `endpoint-…` chains. In
//! `external-…` chains, rules matching the source (`ip saddr <cluster CIDR>`, `fib saddr type
//! local`) are kube-proxy's short-circuits for pod and node-local traffic and are not followed,
//! so an `externalTrafficPolicy: Local` frontend lists only local endpoints.
//!
//! Elements of `no-endpoint-services` / `no-endpoint-nodeports` (drop or reject) are reported as
//! frontends without targets. A node port is reported once per address of the `nodeport-ips`
//! set when the `services` chain restricts node ports to it (kube-proxy's default), else with no
//! address. The Service name comes from an element's comment or, for kube-proxy's
//! `service-HASH-ns/name/proto/port` chains, from the chain name (read, never recomputed).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use netdiag_model::Port;
use netdiag_model::inspect::{ChainName, NatProtocol, NatService, NatServiceName, NatTarget, PortName};
use serde_json::Value;

use super::iptables_nat::{protocol, same_frontend, service_name, sort_services};

/// The table kube-proxy's nftables proxier owns, in family `ip` and `ip6`.
pub const TABLE: &str = "kube-proxy";

/// How deep verdicts are followed; kube-proxy's deepest path is 3 (`external` → `local` →
/// `endpoint`).
const MAX_DEPTH: usize = 16;

/// The JSON is not `nft -j` output at all.
#[derive(Debug, thiserror::Error)]
pub enum NftJsonError {
    #[error("nft -j printed something that is not JSON: is nft at least 0.9.3?")]
    NotJson(#[source] serde_json::Error),
    #[error("nft -j printed JSON without an \"nftables\" array: not the output of `nft -j list …`")]
    NoNftablesArray,
}

/// An nftables family kube-proxy writes a table in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NftFamily {
    Ip,
    Ip6,
}

impl NftFamily {
    pub const fn as_str(self) -> &'static str {
        match self {
            NftFamily::Ip => "ip",
            NftFamily::Ip6 => "ip6",
        }
    }

    fn from_json(s: &str) -> Option<Self> {
        match s {
            "ip" => Some(NftFamily::Ip),
            "ip6" => Some(NftFamily::Ip6),
            _ => None,
        }
    }
}

/// The families that hold a `kube-proxy` table, from `nft -j list tables` (or any listing).
pub fn kube_proxy_tables(json: &str) -> Result<Vec<NftFamily>, NftJsonError> {
    let doc = document(json)?;
    let mut families: Vec<NftFamily> = objects(&doc)
        .filter(|(kind, body)| *kind == "table" && str_field(body, "name") == Some(TABLE))
        .filter_map(|(_, body)| str_field(body, "family").and_then(NftFamily::from_json))
        .collect();
    families.sort();
    families.dedup();
    Ok(families)
}

/// Every Service frontend in the `kube-proxy` tables of `json`, sorted by (node port, address,
/// port, protocol). Targets keep the order the rules list them in, each once.
pub fn parse(json: &str) -> Result<Vec<NatService>, NftJsonError> {
    let doc = document(json)?;
    let ruleset = Ruleset::read(&doc);
    let mut out: Vec<NatService> = Vec::new();
    for &family in &ruleset.families {
        let mut found: Vec<NatService> = Vec::new();
        let mut resolver = Resolver { ruleset: &ruleset, family, memo: HashMap::new(), stack: Vec::new() };
        let node_port_ips = ruleset.node_port_addresses(family);
        for (map, node_port, reachable) in [
            ("service-ips", false, true),
            ("service-nodeports", true, true),
            ("no-endpoint-services", false, false),
            ("no-endpoint-nodeports", true, false),
        ] {
            for element in ruleset.elements(family, map) {
                let Some(key) = FrontendKey::read(&element.key, node_port) else { continue };
                let chain = element.verdict_chain();
                let targets = match chain {
                    Some(chain) if reachable => resolver.targets(chain),
                    _ => Vec::new(),
                };
                let service = service_name(element.comment).or_else(|| chain.and_then(service_from_chain));
                let vips = if node_port { node_port_ips.clone() } else { vec![key.vip] };
                for vip in vips {
                    let svc = NatService {
                        service: service.clone(),
                        vip,
                        port: key.port,
                        protocol: key.protocol,
                        targets: targets.iter().map(|t| t.to_target(key.port)).collect(),
                        node_port,
                    };
                    // A no-endpoint element for a frontend already seen (an external address of
                    // an `externalTrafficPolicy: Local` service) adds nothing.
                    if !found.iter().any(|s| same_frontend(s, &svc)) {
                        found.push(svc);
                    }
                }
            }
        }
        // Families never share a frontend, even node ports matching every local address.
        out.extend(found);
    }
    sort_services(&mut out);
    Ok(out)
}

pub(super) fn document(json: &str) -> Result<Value, NftJsonError> {
    let doc: Value = serde_json::from_str(json).map_err(NftJsonError::NotJson)?;
    if doc.get("nftables").and_then(Value::as_array).is_none() {
        return Err(NftJsonError::NoNftablesArray);
    }
    Ok(doc)
}

/// The `{"<kind>": {…}}` objects of the `nftables` array.
pub(super) fn objects(doc: &Value) -> impl Iterator<Item = (&str, &Value)> {
    doc.get("nftables").and_then(Value::as_array).into_iter().flatten().filter_map(|o| {
        let obj = o.as_object()?;
        let (kind, body) = obj.iter().next()?;
        Some((kind.as_str(), body))
    })
}

pub(super) fn str_field<'v>(v: &'v Value, field: &str) -> Option<&'v str> {
    v.get(field).and_then(Value::as_str)
}

/// The objects of the `kube-proxy` tables, by family.
#[derive(Debug, Default)]
struct Ruleset<'v> {
    families: Vec<NftFamily>,
    /// Set and map elements by family and name.
    elements: HashMap<NftFamily, HashMap<&'v str, &'v [Value]>>,
    /// Rule expression lists by family and chain, in order.
    rules: HashMap<NftFamily, HashMap<&'v str, Vec<&'v [Value]>>>,
}

impl<'v> Ruleset<'v> {
    fn read(doc: &'v Value) -> Self {
        let mut rs = Ruleset::default();
        for (kind, body) in objects(doc) {
            let in_table = match kind {
                "table" => str_field(body, "name") == Some(TABLE),
                _ => str_field(body, "table") == Some(TABLE),
            };
            if !in_table {
                continue;
            }
            let Some(family) = str_field(body, "family").and_then(NftFamily::from_json) else { continue };
            match kind {
                "table" if !rs.families.contains(&family) => rs.families.push(family),
                "set" | "map" => {
                    if let (Some(name), Some(elem)) =
                        (str_field(body, "name"), body.get("elem").and_then(Value::as_array))
                    {
                        rs.elements.entry(family).or_default().insert(name, elem.as_slice());
                    }
                }
                "rule" => {
                    if let (Some(chain), Some(expr)) =
                        (str_field(body, "chain"), body.get("expr").and_then(Value::as_array))
                    {
                        rs.rules.entry(family).or_default().entry(chain).or_default().push(expr.as_slice());
                    }
                }
                _ => {}
            }
        }
        rs.families.sort();
        rs
    }

    fn elements(&self, family: NftFamily, map: &str) -> Vec<Element<'v>> {
        self.elements_of(family, map).iter().filter_map(Element::read).collect()
    }

    fn elements_of(&self, family: NftFamily, name: &str) -> &'v [Value] {
        self.elements.get(&family).and_then(|m| m.get(name)).copied().unwrap_or_default()
    }

    fn rules(&self, family: NftFamily, chain: &str) -> &[&'v [Value]] {
        self.rules.get(&family).and_then(|m| m.get(chain)).map(Vec::as_slice).unwrap_or_default()
    }

    /// The addresses node ports answer on: the `nodeport-ips` set when the `services` chain
    /// matches node ports against it, else "every local address" (`None`).
    fn node_port_addresses(&self, family: NftFamily) -> Vec<Option<IpAddr>> {
        let restricted = self.rules(family, "services").iter().any(|expr| {
            let uses_map = expr.iter().any(|e| {
                e.get("vmap").and_then(|v| v.get("data")).and_then(Value::as_str)
                    == Some("@service-nodeports")
            });
            let matches_set = expr.iter().any(|e| {
                e.get("match").and_then(|m| m.get("right")).and_then(Value::as_str) == Some("@nodeport-ips")
            });
            uses_map && matches_set
        });
        let ips: Vec<Option<IpAddr>> = if restricted {
            self.elements_of(family, "nodeport-ips")
                .iter()
                .filter_map(|v| element_value(v).as_str().and_then(|s| s.parse().ok()))
                .map(Some)
                .collect()
        } else {
            Vec::new()
        };
        if ips.is_empty() { vec![None] } else { ips }
    }
}

/// `{"elem": {"val": X, "comment": …}}` → X; anything else as is.
fn element_value(v: &Value) -> &Value {
    v.get("elem").and_then(|e| e.get("val")).unwrap_or(v)
}

/// One map element: its key parts, its comment, its verdict.
#[derive(Debug)]
struct Element<'v> {
    key: Vec<&'v Value>,
    comment: Option<&'v str>,
    verdict: &'v Value,
}

impl<'v> Element<'v> {
    /// `[key, verdict]`, the key a `concat` (possibly wrapped in `elem` with a comment).
    fn read(v: &'v Value) -> Option<Self> {
        let pair = v.as_array()?;
        let (key, verdict) = (pair.first()?, pair.get(1)?);
        let comment = key.get("elem").and_then(|e| e.get("comment")).and_then(Value::as_str);
        let key = element_value(key);
        let parts = match key.get("concat").and_then(Value::as_array) {
            Some(parts) => parts.iter().collect(),
            None => vec![key],
        };
        Some(Element { key: parts, comment, verdict })
    }

    /// The chain a `goto`/`jump` verdict names.
    fn verdict_chain(&self) -> Option<&'v str> {
        verdict_target(self.verdict)
    }
}

fn verdict_target(v: &Value) -> Option<&str> {
    ["goto", "jump"].iter().find_map(|k| v.get(*k).and_then(|t| str_field(t, "target")))
}

/// A frontend's key: `addr . proto . port` or, for node ports, `proto . port`.
#[derive(Debug, Clone, Copy)]
struct FrontendKey {
    vip: Option<IpAddr>,
    protocol: NatProtocol,
    port: Port,
}

impl FrontendKey {
    fn read(parts: &[&Value], node_port: bool) -> Option<Self> {
        let (vip, proto, port) = match (node_port, parts) {
            (false, [addr, proto, port]) => (Some(addr.as_str()?.parse().ok()?), proto, port),
            (true, [proto, port]) => (None, proto, port),
            _ => return None,
        };
        let protocol = match proto {
            Value::String(s) => protocol(s)?,
            Value::Number(n) => protocol(&n.to_string())?,
            _ => return None,
        };
        Some(FrontendKey { vip, protocol, port: port_value(port)? })
    }
}

fn port_value(v: &Value) -> Option<Port> {
    match v {
        Value::Number(n) => Port::new(u32::try_from(n.as_u64()?).ok()?).ok(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// `{"dnat": {"addr": "10.0.0.1", "port": 80}}` (ranges keep their first address and port).
fn dnat_target(v: &Value) -> Option<(IpAddr, Option<Port>)> {
    let dnat = v.get("dnat")?;
    let first = |v: &'_ Value| -> Value {
        v.get("range").and_then(Value::as_array).and_then(|r| r.first()).cloned().unwrap_or_else(|| v.clone())
    };
    let ip = first(dnat.get("addr")?).as_str()?.parse().ok()?;
    let port = match dnat.get("port") {
        Some(p) => Some(port_value(&first(p))?),
        None => None,
    };
    Some((ip, port))
}

/// Whether an expression matches on the packet's source (`ip saddr …`, `fib saddr …`).
fn matches_source(v: &Value) -> bool {
    let Some(left) = v.get("match").and_then(|m| m.get("left")) else { return false };
    let payload_saddr = left.get("payload").and_then(|p| str_field(p, "field")) == Some("saddr");
    let fib_saddr = left
        .get("fib")
        .and_then(|f| f.get("flags"))
        .and_then(Value::as_array)
        .is_some_and(|flags| flags.iter().any(|f| f.as_str() == Some("saddr")));
    payload_saddr || fib_saddr
}

/// A DNAT target before its frontend is known.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawTarget {
    ip: IpAddr,
    port: Option<Port>,
    chain: String,
}

impl RawTarget {
    fn to_target(&self, frontend_port: Port) -> NatTarget {
        NatTarget {
            ip: self.ip,
            port: self.port.unwrap_or(frontend_port),
            chain: ChainName::new(&self.chain).ok(),
        }
    }
}

/// Follows verdicts from a chain down to `dnat` statements, remembering each chain's result.
struct Resolver<'r, 'v> {
    ruleset: &'r Ruleset<'v>,
    family: NftFamily,
    memo: HashMap<String, Vec<RawTarget>>,
    stack: Vec<String>,
}

impl Resolver<'_, '_> {
    fn targets(&mut self, chain: &str) -> Vec<RawTarget> {
        if let Some(done) = self.memo.get(chain) {
            return done.clone();
        }
        if self.stack.len() >= MAX_DEPTH || self.stack.iter().any(|c| c == chain) {
            return Vec::new();
        }
        self.stack.push(chain.to_owned());
        let short_circuits = chain.starts_with("external-");
        let mut out: Vec<RawTarget> = Vec::new();
        for expr in self.ruleset.rules(self.family, chain) {
            if short_circuits && expr.iter().any(matches_source) {
                continue;
            }
            for e in expr.iter() {
                if let Some((ip, port)) = dnat_target(e) {
                    out.push(RawTarget { ip, port, chain: chain.to_owned() });
                } else if let Some(next) = verdict_target(e) {
                    let found = self.targets(next);
                    out.extend(found);
                } else if let Some(arms) = e
                    .get("vmap")
                    .and_then(|m| m.get("data"))
                    .and_then(|d| d.get("set"))
                    .and_then(Value::as_array)
                {
                    for arm in arms {
                        if let Some(next) = arm.as_array().and_then(|a| a.get(1)).and_then(verdict_target) {
                            let found = self.targets(next);
                            out.extend(found);
                        }
                    }
                }
            }
        }
        let mut seen = HashSet::new();
        out.retain(|t| seen.insert((t.ip, t.port)));
        self.stack.pop();
        self.memo.insert(chain.to_owned(), out.clone());
        out
    }
}

/// The Service of kube-proxy's `service-`/`external-`/`local-HASH-ns/name/proto/port` chains.
fn service_from_chain(chain: &str) -> Option<NatServiceName> {
    let rest = ["service-", "external-", "local-"].iter().find_map(|p| chain.strip_prefix(p))?;
    let (_hash, name) = rest.split_once('-')?;
    let mut parts = name.split('/');
    let (ns, svc, _proto, port) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let port_name = if port.is_empty() { None } else { Some(PortName::new(port).ok()?) };
    Some(NatServiceName { service: format!("{ns}/{svc}").parse().ok()?, port_name })
}

#[cfg(test)]
mod tests;
