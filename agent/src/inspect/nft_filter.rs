//! Drop and reject rules of a node's own nftables tables — the ones an admin, firewalld or a
//! node bootstrap writes with `nft` and `iptables-save` never shows — read back from `nft -j
//! list table …` JSON. Pure: JSON text in, values out; nothing here panics on any input.
//!
//! Base chains of type `filter` on the `input`, `forward`, `output`, `prerouting` (before input
//! and forwarding) and `postrouting` (after forwarding and output) hooks (families `ip`, `ip6`,
//! `inet`) are walked rule by rule, through `jump`/`goto`, as the iptables reader walks
//! its chains; every base chain on a hook runs, so each one's drops count on their own. As
//! there, a rule is reported only when every condition on its way is understood (addresses,
//! protocol, destination ports, interface names, a connection state that includes new
//! connections); a rate limit, a mark, a negation or anything else makes it not stop all of
//! what the rest describes. A chain whose policy is `drop` ends its hook's list with the
//! policy. Tables other readers own are left to them: `kube-proxy` (the NAT reader) and the
//! iptables-nft compatibility tables (`ip`/`ip6` `filter`, `nat`, `mangle`, `raw`,
//! `security`: the iptables reader).

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use netdiag_model::Port;
use netdiag_model::inspect::{FilterDrop, FilterHook, FilterProtocol, PortRange};
use netdiag_model::limits::{MAX_FILTER_DROPS, MAX_FILTER_PORT_RANGES};
use serde_json::Value;

use super::iptables_filter::Conditions;
use super::nft_kube_proxy::{self, NftJsonError, document, objects, str_field};

/// How deep jumps between chains are followed.
const MAX_DEPTH: usize = 8;

/// The tables this reader leaves to others, by family and name.
pub fn owned_elsewhere(family: &str, table: &str) -> bool {
    table == nft_kube_proxy::TABLE
        || (matches!(family, "ip" | "ip6")
            && matches!(table, "filter" | "nat" | "mangle" | "raw" | "security"))
}

/// `(family, name)` of every table in a `nft -j list tables` listing this reader reads.
pub fn tables_to_read(listing: &str) -> Result<Vec<(String, String)>, NftJsonError> {
    let doc = document(listing)?;
    let mut out: Vec<(String, String)> = objects(&doc)
        .filter(|(kind, _)| *kind == "table")
        .filter_map(|(_, body)| Some((str_field(body, "family")?, str_field(body, "name")?)))
        .filter(|(family, name)| matches!(*family, "ip" | "ip6" | "inet") && !owned_elsewhere(family, name))
        .map(|(f, n)| (f.to_owned(), n.to_owned()))
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// The drop and reject rules of the tables in `json` this reader owns, hook by hook.
pub fn parse(json: &str) -> Result<Vec<FilterDrop>, NftJsonError> {
    let doc = document(json)?;
    let mut bases: Vec<(Chain<'_>, &str, FilterHook, bool)> = Vec::new();
    let mut rules: HashMap<Chain<'_>, Vec<&[Value]>> = HashMap::new();
    for (kind, body) in objects(&doc) {
        let (Some(family), Some(table)) = (str_field(body, "family"), str_field(body, "table")) else {
            continue;
        };
        if !matches!(family, "ip" | "ip6" | "inet") || owned_elsewhere(family, table) {
            continue;
        }
        let Some(name) = str_field(body, if kind == "rule" { "chain" } else { "name" }) else { continue };
        let chain = Chain { family, table, name };
        match kind {
            "chain" => {
                // What each hook's drops stop: prerouting comes before input and forwarding,
                // postrouting after forwarding and output.
                let (Some(name), Some("filter")) = (str_field(body, "hook"), str_field(body, "type")) else {
                    continue;
                };
                let hooks: &[FilterHook] = match name {
                    "input" => &[FilterHook::Input],
                    "forward" => &[FilterHook::Forward],
                    "output" => &[FilterHook::Output],
                    "prerouting" => &[FilterHook::Input, FilterHook::Forward],
                    "postrouting" => &[FilterHook::Forward, FilterHook::Output],
                    _ => continue,
                };
                let drops = str_field(body, "policy") == Some("drop");
                bases.extend(hooks.iter().map(|&h| (chain, name, h, drops)));
            }
            "rule" => {
                if let Some(expr) = body.get("expr").and_then(Value::as_array) {
                    rules.entry(chain).or_default().push(expr.as_slice());
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (chain, hook_name, hook, policy_drop) in bases {
        let mut path = vec![chain];
        let established = walk(&rules, hook_name, hook, &Conditions::default(), false, &mut path, &mut out);
        if policy_drop && out.len() < MAX_FILTER_DROPS {
            let text = format!("{}: policy drop (drops what no rule accepts)", chain.label(hook_name));
            let mut drop = Conditions::default().into_drop(hook, false, &text);
            drop.policy = true;
            drop.new_only = established;
            out.push(drop);
        }
    }
    out.truncate(MAX_FILTER_DROPS);
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Chain<'v> {
    family: &'v str,
    table: &'v str,
    name: &'v str,
}

impl Chain<'_> {
    fn label(&self, hook: &str) -> String {
        format!("{}{} {} {} ({hook})", FilterDrop::NFT_RULE_PREFIX, self.family, self.table, self.name)
    }
}

/// Walks the chain at the end of `path`; true when a rule on the way accepts established and
/// related flows (so what follows meets new connections only).
fn walk<'v>(
    rules: &HashMap<Chain<'v>, Vec<&'v [Value]>>,
    hook_name: &str,
    hook: FilterHook,
    inherited: &Conditions,
    established_accepted: bool,
    path: &mut Vec<Chain<'v>>,
    out: &mut Vec<FilterDrop>,
) -> bool {
    let Some(&chain) = path.last() else { return established_accepted };
    let mut established_accepted = established_accepted;
    for expr in rules.get(&chain).into_iter().flatten() {
        if out.len() >= MAX_FILTER_DROPS {
            break;
        }
        if accepts_established(expr) {
            established_accepted = true;
            continue;
        }
        let Some(rule) = Rule::read(expr) else { continue };
        let Some(conditions) = inherited.and(&rule.conditions) else { continue };
        match rule.verdict {
            Verdict::Drop | Verdict::Reject => {
                let mut text = path[0].label(hook_name);
                for c in &path[1..] {
                    text.push_str(&format!(" → {}", c.name));
                }
                text.push_str(&format!(": {}", rule.text));
                let mut drop = conditions.into_drop(hook, rule.verdict == Verdict::Reject, &text);
                drop.new_only |= established_accepted;
                out.push(drop);
            }
            Verdict::Jump(target) => {
                let next = Chain { name: target, ..chain };
                if rules.contains_key(&next) && path.len() < MAX_DEPTH && !path.contains(&next) {
                    path.push(next);
                    walk(rules, hook_name, hook, &conditions, established_accepted, path, out);
                    path.pop();
                }
            }
            Verdict::Other => {}
        }
    }
    established_accepted
}

/// `ct state established,related accept` (a counter at most): every later rule on the way
/// meets new connections only.
fn accepts_established(expr: &[Value]) -> bool {
    let mut states = false;
    let mut accept = false;
    for e in expr {
        if let Some(m) = e.get("match") {
            let is_ct_state =
                m.get("left").and_then(|l| l.get("ct")).and_then(|c| str_field(c, "key")) == Some("state");
            let positive = matches!(str_field(m, "op"), Some("==" | "in"));
            let names = state_names(m.get("right"));
            if !(is_ct_state
                && positive
                && !names.is_empty()
                && names.iter().all(|s| matches!(*s, "established" | "related")))
            {
                return false;
            }
            states = true;
        } else if e.get("accept").is_some() {
            accept = true;
        } else if e.get("counter").is_none() {
            return false;
        }
    }
    states && accept
}

fn state_names(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(Value::Object(o)) => o
            .get("set")
            .and_then(Value::as_array)
            .map_or_else(Vec::new, |items| items.iter().filter_map(Value::as_str).collect()),
        _ => Vec::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict<'v> {
    Drop,
    Reject,
    Jump(&'v str),
    Other,
}

/// One rule's conditions, verdict and text as `nft list` would print it; None when a
/// condition or statement is not understood.
#[derive(Debug)]
struct Rule<'v> {
    conditions: Conditions,
    verdict: Verdict<'v>,
    text: String,
}

impl<'v> Rule<'v> {
    fn read(expr: &'v [Value]) -> Option<Self> {
        let mut c = Conditions::default();
        let mut verdict = Verdict::Other;
        let mut words: Vec<String> = Vec::new();
        for e in expr {
            let obj = e.as_object()?;
            let (kind, body) = obj.iter().next()?;
            match kind.as_str() {
                "match" => words.push(read_match(body, &mut c)?),
                // Statements that do not change what the rule stops.
                "counter" | "log" => {}
                "drop" => {
                    verdict = Verdict::Drop;
                    words.push("drop".to_owned());
                }
                "reject" => {
                    verdict = Verdict::Reject;
                    words.push("reject".to_owned());
                }
                "accept" => words.push("accept".to_owned()),
                "jump" | "goto" => {
                    let target = str_field(body, "target")?;
                    verdict = Verdict::Jump(target);
                    words.push(format!("{kind} {target}"));
                }
                "return" | "continue" => words.push(kind.clone()),
                _ => return None,
            }
        }
        Some(Rule { conditions: c, verdict, text: words.join(" ") })
    }
}

/// One `match` expression into `c`, with its text; None when not understood.
fn read_match(m: &Value, c: &mut Conditions) -> Option<String> {
    let op = str_field(m, "op")?;
    let (left, right) = (m.get("left")?, m.get("right")?);
    if let Some(ct) = left.get("ct") {
        // A connection-state match that takes new connections stops them all.
        let names = state_names(Some(right));
        let new = names.contains(&"new");
        let old_only = !names.is_empty() && names.iter().all(|s| matches!(*s, "established" | "related"));
        let understood = match op {
            "==" | "in" => new,
            "!=" => old_only,
            _ => false,
        };
        if !(str_field(ct, "key") == Some("state") && understood) {
            return None;
        }
        c.new_only = true;
        return Some(format!("ct state {}{}", if op == "!=" { "!= " } else { "" }, names.join(",")));
    }
    if !matches!(op, "==" | "in") {
        return None;
    }
    if let Some(meta) = left.get("meta") {
        let key = str_field(meta, "key")?;
        return match key {
            "l4proto" => {
                set_protocol(c, protocol(right.as_str()?)?)?;
                Some(format!("meta l4proto {}", right.as_str()?))
            }
            "iifname" | "oifname" | "iif" | "oif" => {
                let name = right.as_str()?;
                // nft's wildcard `eth*` is iptables' `eth+`.
                let pattern = name.strip_suffix('*').map_or_else(|| name.to_owned(), |p| format!("{p}+"));
                let slot = if key.starts_with('i') { &mut c.in_interface } else { &mut c.out_interface };
                if slot.is_some() {
                    return None;
                }
                *slot = Some(pattern);
                Some(format!("{key} \"{name}\""))
            }
            _ => None,
        };
    }
    let payload = left.get("payload")?;
    let (proto, field) = (str_field(payload, "protocol")?, str_field(payload, "field")?);
    match (proto, field) {
        ("ip" | "ip6", "saddr" | "daddr") => {
            let net = address(right)?;
            if net.addr().is_ipv4() != (proto == "ip") {
                return None;
            }
            let slot = if field == "saddr" { &mut c.source } else { &mut c.destination };
            if slot.is_some() {
                return None;
            }
            *slot = Some(net);
            Some(format!("{proto} {field} {net}"))
        }
        ("ip", "protocol") | ("ip6", "nexthdr") => {
            set_protocol(c, protocol(right.as_str()?)?)?;
            Some(format!("{proto} {field} {}", right.as_str()?))
        }
        ("tcp" | "udp" | "sctp", "dport") => {
            set_protocol(c, protocol(proto)?)?;
            if !c.ports.is_empty() {
                return None;
            }
            c.ports = ports(right)?;
            let shown: Vec<String> =
                c.ports
                    .iter()
                    .map(|r| {
                        if r.first == r.last {
                            r.first.to_string()
                        } else {
                            format!("{}-{}", r.first, r.last)
                        }
                    })
                    .collect();
            Some(match shown.as_slice() {
                [one] => format!("{proto} dport {one}"),
                _ => format!("{proto} dport {{ {} }}", shown.join(", ")),
            })
        }
        // An ICMP type singles out some echoes only in rules iptables' reader reads the same
        // way: the protocol is what stops the probes.
        ("icmp" | "icmpv6", "type") => {
            set_protocol(c, FilterProtocol::Icmp)?;
            Some(format!("{proto} type {}", right.as_str().unwrap_or("…")))
        }
        _ => None,
    }
}

fn set_protocol(c: &mut Conditions, p: FilterProtocol) -> Option<()> {
    match c.protocol {
        Some(q) if q != p => None,
        _ => {
            c.protocol = Some(p);
            Some(())
        }
    }
}

pub(super) fn protocol(name: &str) -> Option<FilterProtocol> {
    Some(match name {
        "tcp" => FilterProtocol::Tcp,
        "udp" => FilterProtocol::Udp,
        "sctp" => FilterProtocol::Sctp,
        "icmp" | "icmpv6" | "ipv6-icmp" => FilterProtocol::Icmp,
        _ => return None,
    })
}

/// `"10.0.0.1"` or `{"prefix": {"addr": "10.0.0.0", "len": 8}}`.
pub(super) fn address(v: &Value) -> Option<IpNet> {
    if let Some(s) = v.as_str() {
        return IpNet::from_str(s).ok().or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from));
    }
    let p = v.get("prefix")?;
    let addr: IpAddr = str_field(p, "addr")?.parse().ok()?;
    let len = u8::try_from(p.get("len")?.as_u64()?).ok()?;
    IpNet::new(addr, len).ok()
}

/// `80`, `{"range": [1000, 2000]}`, `{"set": [80, {"range": [8000, 8080]}]}`.
pub(super) fn ports(v: &Value) -> Option<Vec<PortRange>> {
    let one = |v: &Value| -> Option<PortRange> {
        let port = |v: &Value| Port::new(u32::try_from(v.as_u64()?).ok()?).ok();
        match v.get("range").and_then(Value::as_array) {
            Some(r) if r.len() == 2 => {
                let (first, last) = (port(&r[0])?, port(&r[1])?);
                (first <= last).then_some(PortRange { first, last })
            }
            Some(_) => None,
            None => port(v).map(|p| PortRange { first: p, last: p }),
        }
    };
    let out: Vec<PortRange> = match v.get("set").and_then(Value::as_array) {
        Some(items) => items.iter().map(one).collect::<Option<_>>()?,
        None => vec![one(v)?],
    };
    (!out.is_empty() && out.len() <= MAX_FILTER_PORT_RANGES).then_some(out)
}

#[cfg(test)]
mod tests;
