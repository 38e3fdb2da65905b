//! NAT rules of a node's own nftables tables (the ones no other reader owns: not `kube-proxy`,
//! not iptables-nft's `ip`/`ip6 nat`), read back from `nft -j list table …` JSON: base chains of
//! type `nat` on the `prerouting`, `input`, `output` and `postrouting` hooks, walked rule by rule
//! through `jump`/`goto` as the iptables reader walks its chains ([`super::iptables_nat_rules`],
//! whose conditions it shares), base chains of one hook in priority order. Pure: JSON text in,
//! values out; nothing here panics on any input.
//!
//! `dnat`, `redirect`, `snat`, `masquerade`, `dnat … prefix` (netmap) and `accept` are read;
//! addresses with `==` or `!=`, protocols, destination ports and interface names are evaluated,
//! and a rule with any other condition on its way (a mark, a set lookup, a map) is opaque. Each
//! rule is shown as `nft <family> <table> <chain> (<hook>): <rule> # handle N`, so it can be
//! found with `nft -a list chain …` and deleted by handle.

use super::iptables_nat_rules::Target as Verdict;
use std::collections::HashMap;

use netdiag_model::Port;
use netdiag_model::inspect::{AddressMatch, NatAction, NatHook, NatRule};
use netdiag_model::limits::MAX_NAT_RULES;
use serde_json::Value;

use super::iptables_nat_rules::NatConditions;
use super::nft_filter::{address, owned_elsewhere, ports, protocol};
use super::nft_kube_proxy::{NftJsonError, document, objects, str_field};

/// How deep jumps between chains are followed.
const MAX_DEPTH: usize = 8;

/// The NAT rules of the tables in `json` this reader owns, hook by hook, each hook's base
/// chains in priority order.
pub fn parse(json: &str) -> Result<Vec<NatRule>, NftJsonError> {
    let doc = document(json)?;
    let mut bases: Vec<(NatHook, i64, Chain<'_>, &str)> = Vec::new();
    let mut rules: Rules<'_> = HashMap::new();
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
                let (Some(hook_name), Some("nat")) = (str_field(body, "hook"), str_field(body, "type"))
                else {
                    continue;
                };
                let hook = match hook_name {
                    "prerouting" => NatHook::Prerouting,
                    "input" => NatHook::Input,
                    "output" => NatHook::Output,
                    "postrouting" => NatHook::Postrouting,
                    _ => continue,
                };
                let prio = body.get("prio").and_then(Value::as_i64).unwrap_or(0);
                bases.push((hook, prio, chain, hook_name));
            }
            "rule" => {
                if let Some(expr) = body.get("expr").and_then(Value::as_array) {
                    let handle = body.get("handle").and_then(Value::as_u64);
                    rules.entry(chain).or_default().push((handle, expr.as_slice()));
                }
            }
            _ => {}
        }
    }
    bases.sort_by_key(|&(hook, prio, _, _)| (hook, prio));
    let mut out = Vec::new();
    for (hook, _, chain, hook_name) in bases {
        let mut walk = Walk { rules: &rules, hook, hook_name, out: &mut out, path: vec![chain] };
        walk.chain(&NatConditions::default(), false);
    }
    out.truncate(MAX_NAT_RULES);
    Ok(out)
}

/// Each chain's rules: handle and expressions, in order.
type Rules<'v> = HashMap<Chain<'v>, Vec<(Option<u64>, &'v [Value])>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Chain<'v> {
    family: &'v str,
    table: &'v str,
    name: &'v str,
}

struct Walk<'v, 'r, 'o> {
    rules: &'r Rules<'v>,
    hook: NatHook,
    hook_name: &'r str,
    out: &'o mut Vec<NatRule>,
    path: Vec<Chain<'v>>,
}

impl<'v> Walk<'v, '_, '_> {
    /// Walks the chain at the end of the path; `opaque` when an earlier rule may have taken
    /// some packets elsewhere.
    fn chain(&mut self, inherited: &NatConditions, opaque: bool) {
        let Some(&chain) = self.path.last() else { return };
        let base = self.path.len() == 1;
        let mut opaque = opaque;
        for &(handle, expr) in self.rules.get(&chain).into_iter().flatten() {
            if self.out.len() >= MAX_NAT_RULES {
                return;
            }
            let rule = Rule::read(expr);
            let conditions = inherited.and(&rule.conditions);
            let emit = match rule.verdict {
                Verdict::Nat(action) => Some(action),
                Verdict::Accept => Some(NatAction::Keep),
                Verdict::Return if base => Some(NatAction::Keep),
                Verdict::Return | Verdict::Goto(_) if rule.conditions.is_empty() => {
                    if let Verdict::Goto(target) = rule.verdict {
                        self.enter(target, &conditions, opaque);
                    }
                    return;
                }
                Verdict::Return => {
                    opaque = true;
                    None
                }
                Verdict::Goto(target) => {
                    self.enter(target, &conditions, opaque);
                    opaque = true;
                    None
                }
                Verdict::Jump(target) => {
                    self.enter(target, &conditions, opaque);
                    None
                }
                Verdict::Other => None,
            };
            if let Some(action) = emit {
                let text = self.label(handle, &rule.text);
                let hidden = opaque || rule.opaque_verdict;
                self.out.push(conditions.into_rule(self.hook, action, hidden, false, &text));
            }
        }
    }

    /// `nft <family> <table> <base chain> (<hook>) → <chain>…: <rule> # handle N`.
    fn label(&self, handle: Option<u64>, rule: &str) -> String {
        let Some(base) = self.path.first() else { return rule.to_owned() };
        let mut text = format!(
            "{}{} {} {} ({})",
            NatRule::NFT_RULE_PREFIX,
            base.family,
            base.table,
            base.name,
            self.hook_name
        );
        for c in &self.path[1..] {
            text.push_str(&format!(" → {}", c.name));
        }
        text.push_str(&format!(": {rule}"));
        if let Some(h) = handle {
            text.push_str(&format!(" # handle {h}"));
        }
        text
    }

    fn enter(&mut self, target: &'v str, conditions: &NatConditions, opaque: bool) {
        let Some(&here) = self.path.last() else { return };
        let Some((&next, _)) = self.rules.get_key_value(&Chain { name: target, ..here }) else { return };
        if self.path.len() >= MAX_DEPTH || self.path.contains(&next) {
            return;
        }
        self.path.push(next);
        self.chain(conditions, opaque);
        self.path.pop();
    }
}

/// One rule: its conditions, verdict and text as `nft list` prints it.
#[derive(Debug)]
struct Rule<'v> {
    conditions: NatConditions,
    verdict: Verdict<'v>,
    /// The NAT statement's arguments are not read (a map, a range, an expression).
    opaque_verdict: bool,
    text: String,
}

impl NatConditions {
    fn is_empty(&self) -> bool {
        self.protocol.is_none()
            && self.source.is_none()
            && self.destination.is_none()
            && self.in_interface.is_none()
            && self.out_interface.is_none()
            && self.ports.is_empty()
            && !self.opaque
    }
}

impl<'v> Rule<'v> {
    fn read(expr: &'v [Value]) -> Self {
        let mut c = NatConditions::default();
        let mut verdict = Verdict::Other;
        let mut opaque_verdict = false;
        let mut words: Vec<String> = Vec::new();
        for e in expr {
            let Some((kind, body)) = e.as_object().and_then(|o| o.iter().next()) else {
                c.opaque = true;
                continue;
            };
            match kind.as_str() {
                "match" => words.push(read_match(body, &mut c)),
                "counter" | "log" | "comment" => {}
                "accept" => {
                    verdict = Verdict::Accept;
                    words.push("accept".to_owned());
                }
                "return" => {
                    verdict = Verdict::Return;
                    words.push("return".to_owned());
                }
                "jump" | "goto" => match str_field(body, "target") {
                    Some(target) => {
                        verdict = if kind == "jump" { Verdict::Jump(target) } else { Verdict::Goto(target) };
                        words.push(format!("{kind} {target}"));
                    }
                    None => c.opaque = true,
                },
                "dnat" | "snat" | "redirect" | "masquerade" => {
                    let (action, shown) = nat_statement(kind, body);
                    opaque_verdict = action.is_none();
                    verdict = Verdict::Nat(action.unwrap_or(NatAction::Keep));
                    words.push(shown);
                }
                other => {
                    // A statement that may change what later conditions see (a mark, a set
                    // update) or end the rule another way.
                    c.opaque = true;
                    words.push(other.to_owned());
                }
            }
        }
        Rule { conditions: c, verdict, opaque_verdict, text: words.join(" ") }
    }
}

/// A NAT statement as the model's action (None when its arguments are not read) and as `nft`
/// prints it.
fn nat_statement(kind: &str, body: &Value) -> (Option<NatAction>, String) {
    let family = str_field(body, "family").map(|f| format!(" {f}")).unwrap_or_default();
    let port = body.get("port");
    let port_value = port.and_then(Value::as_u64).and_then(|p| Port::new(u32::try_from(p).ok()?).ok());
    let port_ok = port.is_none() || port_value.is_some();
    let addr = body.get("addr");
    let netmap =
        str_field(body, "flags") == Some("netmap") || str_field(body, "type_flags") == Some("prefix");
    match kind {
        "masquerade" => (Some(NatAction::Masquerade), "masquerade".to_owned()),
        "redirect" => {
            let shown = port_value.map_or_else(|| "redirect".to_owned(), |p| format!("redirect to :{p}"));
            (port_ok.then_some(NatAction::Redirect { port: port_value }), shown)
        }
        _ if netmap => {
            let to = addr.and_then(address);
            let shown =
                format!("{kind}{family} prefix to {}", to.map_or_else(|| "…".to_owned(), |t| t.to_string()));
            let action = to.filter(|_| kind == "dnat").map(|to| NatAction::Netmap { to });
            (action, shown)
        }
        _ => {
            let ip = addr.and_then(Value::as_str).and_then(|s| s.parse::<std::net::IpAddr>().ok());
            let shown_addr = match (ip, port_value) {
                (Some(std::net::IpAddr::V6(v6)), Some(p)) => format!("[{v6}]:{p}"),
                (Some(ip), Some(p)) => format!("{ip}:{p}"),
                (Some(ip), None) => ip.to_string(),
                (None, Some(p)) => format!(":{p}"),
                (None, None) => "…".to_owned(),
            };
            let shown = format!("{kind}{family} to {shown_addr}");
            let readable = port_ok && (addr.is_none() || ip.is_some());
            let action = match (kind, readable, ip) {
                ("dnat", true, _) if ip.is_some() || port_value.is_some() => {
                    Some(NatAction::Dnat { address: ip, port: port_value })
                }
                ("snat", true, Some(address)) => Some(NatAction::Snat { address }),
                _ => None,
            };
            (action, shown)
        }
    }
}

/// One `match` into `c`, with its text; a condition not evaluated makes `c` opaque.
fn read_match(m: &Value, c: &mut NatConditions) -> String {
    let op = str_field(m, "op").unwrap_or("?");
    let (left, right) = (m.get("left"), m.get("right"));
    let shown = format!(
        "{}{}{}",
        left.map_or_else(|| "?".to_owned(), show_left),
        match op {
            "==" | "in" => " ".to_owned(),
            other => format!(" {other} "),
        },
        right.map_or_else(|| "?".to_owned(), show_value)
    );
    if !evaluate(op, left, right, c) {
        c.opaque = true;
    }
    shown
}

/// Reads one condition into `c`; false when it is not one the model evaluates.
fn evaluate(op: &str, left: Option<&Value>, right: Option<&Value>, c: &mut NatConditions) -> bool {
    let (Some(left), Some(right)) = (left, right) else { return false };
    let positive = matches!(op, "==" | "in");
    if let Some(ct) = left.get("ct") {
        // NAT meets new connections only: a state match that takes them takes all it meets.
        let names: Vec<&str> = match right {
            Value::String(s) => vec![s.as_str()],
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        return str_field(ct, "key") == Some("state") && positive && names.contains(&"new");
    }
    if let Some(meta) = left.get("meta") {
        if !positive {
            return false;
        }
        return match str_field(meta, "key") {
            Some("l4proto") => {
                right.as_str().and_then(protocol).is_some_and(|p| set_once(&mut c.protocol, p))
            }
            Some(key @ ("iifname" | "oifname")) => {
                let Some(name) = right.as_str() else { return false };
                let pattern = name.strip_suffix('*').map_or_else(|| name.to_owned(), |p| format!("{p}+"));
                let slot = if key == "iifname" { &mut c.in_interface } else { &mut c.out_interface };
                set_once(slot, pattern)
            }
            _ => false,
        };
    }
    let Some(payload) = left.get("payload") else { return false };
    let (Some(proto), Some(field)) = (str_field(payload, "protocol"), str_field(payload, "field")) else {
        return false;
    };
    match (proto, field) {
        ("ip" | "ip6", "saddr" | "daddr") => {
            let negated = match op {
                "==" => false,
                "!=" => true,
                _ => return false,
            };
            let Some(net) = address(right) else { return false };
            if net.addr().is_ipv4() != (proto == "ip") {
                return false;
            }
            let slot = if field == "saddr" { &mut c.source } else { &mut c.destination };
            set_once(slot, AddressMatch { net, negated })
        }
        ("ip", "protocol") | ("ip6", "nexthdr") if positive => {
            right.as_str().and_then(protocol).is_some_and(|p| set_once(&mut c.protocol, p))
        }
        ("tcp" | "udp" | "sctp", "dport") if positive => {
            let Some(p) = protocol(proto) else { return false };
            let Some(ranges) = ports(right) else { return false };
            if !c.ports.is_empty() || !set_once(&mut c.protocol, p) {
                return false;
            }
            c.ports = ranges;
            true
        }
        _ => false,
    }
}

/// Sets an unset field (or one already equal); false when it holds another value.
fn set_once<T: PartialEq>(slot: &mut Option<T>, value: T) -> bool {
    match slot {
        Some(v) => *v == value,
        None => {
            *slot = Some(value);
            true
        }
    }
}

fn show_left(v: &Value) -> String {
    if let Some(p) = v.get("payload") {
        return format!(
            "{} {}",
            str_field(p, "protocol").unwrap_or("?"),
            str_field(p, "field").unwrap_or("?")
        );
    }
    for key in ["meta", "ct"] {
        if let Some(k) = v.get(key).and_then(|m| str_field(m, "key")) {
            return if key == "meta" && matches!(k, "iifname" | "oifname" | "mark") {
                k.to_owned()
            } else {
                format!("{key} {k}")
            };
        }
    }
    "…".to_owned()
}

fn show_value(v: &Value) -> String {
    match v {
        Value::String(s) if s.contains(|c: char| !(c.is_ascii_alphanumeric() || "._:-/".contains(c))) => {
            format!("\"{s}\"")
        }
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => items.iter().map(show_value).collect::<Vec<_>>().join(","),
        Value::Object(o) => {
            if let Some(net) = address(v) {
                return net.to_string();
            }
            if let Some(Value::Array(r)) = o.get("range")
                && r.len() == 2
            {
                return format!("{}-{}", show_value(&r[0]), show_value(&r[1]));
            }
            if let Some(Value::Array(items)) = o.get("set") {
                return format!("{{ {} }}", items.iter().map(show_value).collect::<Vec<_>>().join(", "));
            }
            "…".to_owned()
        }
        _ => "…".to_owned(),
    }
}

#[cfg(test)]
mod tests;
