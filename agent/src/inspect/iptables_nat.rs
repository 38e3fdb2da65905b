//! kube-proxy's iptables-mode rules read back from `iptables-save` (or `ip6tables-save`) text:
//! every Service frontend and the DNAT targets its rules lead to. Pure: text in, values out.
//!
//! Frontends are the `KUBE-SERVICES` rules matching a destination, protocol and port (cluster,
//! external and load-balancer IPs) and the `KUBE-NODEPORTS` rules matching a port (node ports).
//! From each, the parser follows the jumps as written — `KUBE-SVC-*`, `KUBE-SVL-*`, `KUBE-EXT-*`,
//! `KUBE-FW-*`, `KUBE-XLB-*` (older releases), `KUBE-SEP-*`, any chain the table defines — down
//! to `-j DNAT --to-destination`. Chain names are never recomputed from hashes.
//!
//! What traffic from outside the node sees is what a frontend reports: in `KUBE-EXT-*` and
//! `KUBE-XLB-*` chains the jumps conditioned on the source (`-s <cluster CIDR>`,
//! `--src-type LOCAL`) are kube-proxy's short-circuits for pod and node-local traffic and are
//! not followed, so an `externalTrafficPolicy: Local` frontend lists only local endpoints.
//!
//! With the `filter` table in the input, the frontends whose rules REJECT or DROP ("has no
//! endpoints", "has no local endpoints") are reported too, with no targets.
//!
//! Rules are read in any option order (`iptables-save`'s canonical order or the order
//! kube-proxy writes them in), hosts with or without `/32`, quoted or bare comments. Unknown
//! lines and options are skipped; nothing here panics on any input.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use netdiag_model::Port;
use netdiag_model::inspect::{ChainName, NatProtocol, NatService, NatServiceName, NatTarget};

/// How deep jumps are followed; kube-proxy's deepest path is 4 (`FW` → `EXT` → `SVL` → `SEP`).
const MAX_DEPTH: usize = 16;

/// Every Service frontend in `text` with its DNAT targets, sorted by (node port, address, port,
/// protocol). Targets keep the order the rules list them in, each once.
pub fn parse(text: &str) -> Vec<NatService> {
    let tables = Tables::parse(text);
    let mut out = Frontends::default();
    if let Some(nat) = tables.get("nat") {
        let mut resolver = Resolver { table: nat, memo: HashMap::new(), stack: Vec::new() };
        for (chain, node_port) in [("KUBE-SERVICES", false), ("KUBE-NODEPORTS", true)] {
            for rule in nat.rules(chain) {
                let Some(front) = Frontend::nat(rule, nat, node_port) else { continue };
                let targets = resolver.targets(front.chain);
                out.add(front.service(targets));
            }
        }
    }
    if let Some(filter) = tables.get("filter") {
        for chain in ["KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"] {
            for rule in filter.rules(chain) {
                if let Some(front) = Frontend::no_endpoints(rule) {
                    out.add_if_absent(front.service(Vec::new()));
                }
            }
        }
    }
    out.into_sorted()
}

/// Whether `text` holds kube-proxy's iptables-mode rules: a `nat` table with `KUBE-SERVICES`.
pub fn has_kube_proxy_rules(text: &str) -> bool {
    Tables::parse(text).get("nat").is_some_and(|nat| nat.has_chain("KUBE-SERVICES"))
}

/// The tables of one `iptables-save` output, by name.
#[derive(Debug, Default)]
struct Tables<'a> {
    tables: HashMap<&'a str, Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// Chains declared with `:NAME` or appended to.
    chains: HashSet<String>,
    rules: HashMap<String, Vec<Rule>>,
}

impl<'a> Tables<'a> {
    fn parse(text: &'a str) -> Self {
        let mut tables = Tables::default();
        // Rules before any `*table` line (a bare rule list) are taken as `nat` rules.
        let mut current = "nat";
        for line in text.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix('*') {
                current = name.trim();
            } else if let Some(decl) = line.strip_prefix(':') {
                if let Some(chain) = decl.split_whitespace().next() {
                    tables.tables.entry(current).or_default().chains.insert(chain.to_owned());
                }
            } else if let Some((chain, rule)) = Rule::parse_line(line) {
                let table = tables.tables.entry(current).or_default();
                table.chains.insert(chain.clone());
                table.rules.entry(chain).or_default().push(rule);
            }
        }
        tables
    }

    fn get(&self, table: &str) -> Option<&Table> {
        self.tables.get(table)
    }
}

impl Table {
    fn rules(&self, chain: &str) -> &[Rule] {
        self.rules.get(chain).map(Vec::as_slice).unwrap_or_default()
    }

    fn has_chain(&self, chain: &str) -> bool {
        self.chains.contains(chain)
    }
}

/// What one `-A` rule says, as far as NAT is concerned.
#[derive(Debug, Default, Clone)]
struct Rule {
    /// `-d`, unless negated.
    destination: Option<String>,
    /// Any `-d`, negated or not, was present.
    any_destination: bool,
    /// The rule matches on the source: `-s`, `--src-type`.
    source_match: bool,
    /// `--dst-type LOCAL`.
    destination_local: bool,
    protocol: Option<String>,
    /// `--dport`, unless negated.
    dport: Option<String>,
    comment: Option<String>,
    /// `-j` or `-g`.
    target: Option<String>,
    to_destination: Option<String>,
}

/// One shell-like word of a rule, and whether it was quoted (a quoted word is never an option).
#[derive(Debug)]
pub(super) struct Word {
    pub(super) text: String,
    pub(super) quoted: bool,
}

impl Rule {
    /// `-A CHAIN …` → (chain, rule); anything else → None.
    fn parse_line(line: &str) -> Option<(String, Rule)> {
        let words = split_words(line);
        let mut it = words.iter();
        let first = it.next()?;
        if first.quoted || !matches!(first.text.as_str(), "-A" | "--append") {
            return None;
        }
        let chain = it.next()?.text.clone();
        let rest: Vec<&Word> = it.collect();
        Some((chain, Rule::from_words(&rest)))
    }

    fn from_words(words: &[&Word]) -> Rule {
        let mut rule = Rule::default();
        let mut negated = false;
        let mut i = 0;
        while i < words.len() {
            let word = words[i];
            i += 1;
            if word.quoted || !word.text.starts_with('-') || word.text == "-" {
                negated = !word.quoted && word.text == "!";
                continue;
            }
            let option = word.text.as_str();
            let arg = words.get(i).filter(|a| a.quoted || !(a.text.starts_with('-') || a.text == "!"));
            if arg.is_some() {
                i += 1;
            }
            let value = arg.map(|a| a.text.clone());
            match option {
                "-d" | "--destination" | "--dst" => {
                    rule.any_destination = true;
                    if !negated {
                        rule.destination = value;
                    }
                }
                "-s" | "--source" | "--src" | "--src-type" => rule.source_match = true,
                "--dst-type" => rule.destination_local |= !negated && value.as_deref() == Some("LOCAL"),
                "-p" | "--protocol" if !negated => rule.protocol = value,
                "--dport" | "--destination-port" if !negated => rule.dport = value,
                "--comment" => rule.comment = value,
                "-j" | "--jump" | "-g" | "--goto" => rule.target = value,
                "--to-destination" => rule.to_destination = value,
                _ => {}
            }
            negated = false;
        }
        rule
    }
}

/// Splits a rule into words the way `iptables-restore` does: whitespace separates, double
/// (or single) quotes group, and a backslash inside quotes escapes the next character.
pub(super) fn split_words(line: &str) -> Vec<Word> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        current.push(next);
                    }
                } else if c == q {
                    quote = None;
                } else {
                    current.push(c);
                }
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(Word { text: std::mem::take(&mut current), quoted });
                    in_word = false;
                    quoted = false;
                }
            }
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
                quoted = true;
            }
            None => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(Word { text: current, quoted });
    }
    words
}

/// A frontend rule, read.
#[derive(Debug)]
struct Frontend<'r> {
    service: Option<NatServiceName>,
    vip: Option<IpAddr>,
    port: Port,
    protocol: NatProtocol,
    node_port: bool,
    /// The chain the frontend jumps to (`KUBE-SVC-…`); empty for REJECT/DROP frontends.
    chain: &'r str,
}

impl<'r> Frontend<'r> {
    /// A `KUBE-SERVICES` (`node_port` false) or `KUBE-NODEPORTS` rule jumping into a chain of
    /// `nat`. Rules matching on the source (older releases' masquerade rules) are not frontends.
    fn nat(rule: &'r Rule, nat: &Table, node_port: bool) -> Option<Self> {
        let chain = rule.target.as_deref()?;
        if !nat.has_chain(chain) || chain.starts_with("KUBE-MARK-") || rule.source_match {
            return None;
        }
        let vip = match &rule.destination {
            Some(d) => Some(host(d)?),
            // A node port matches every local address; a service rule must name its address.
            None if node_port && !rule.any_destination => None,
            None => return None,
        };
        Some(Frontend {
            service: service_name(rule.comment.as_deref()),
            vip,
            port: port(rule.dport.as_deref()?)?,
            protocol: protocol(rule.protocol.as_deref()?)?,
            node_port,
            chain,
        })
    }

    /// A filter rule rejecting or dropping a frontend with no (local) endpoints: with a
    /// destination it is a service address, with `--dst-type LOCAL` a node port.
    fn no_endpoints(rule: &'r Rule) -> Option<Self> {
        if !matches!(rule.target.as_deref(), Some("REJECT" | "DROP")) || rule.source_match {
            return None;
        }
        let (vip, node_port) = match &rule.destination {
            Some(d) => (Some(host(d)?), false),
            None if rule.destination_local && !rule.any_destination => (None, true),
            None => return None,
        };
        Some(Frontend {
            service: service_name(rule.comment.as_deref()),
            vip,
            port: port(rule.dport.as_deref()?)?,
            protocol: protocol(rule.protocol.as_deref()?)?,
            node_port,
            chain: "",
        })
    }

    fn service(self, targets: Vec<RawTarget>) -> NatService {
        let targets = targets
            .into_iter()
            .map(|t| NatTarget {
                ip: t.ip,
                // DNAT without a port keeps the destination port the packet arrived with.
                port: t.port.unwrap_or(self.port),
                chain: ChainName::new(t.chain).ok(),
            })
            .collect();
        NatService {
            service: self.service,
            vip: self.vip,
            port: self.port,
            protocol: self.protocol,
            targets,
            node_port: self.node_port,
        }
    }
}

/// A DNAT target before its frontend is known (the port may be left to the frontend).
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawTarget {
    ip: IpAddr,
    port: Option<Port>,
    chain: String,
}

/// Follows jumps from a chain down to DNAT rules, remembering each chain's result.
struct Resolver<'t> {
    table: &'t Table,
    memo: HashMap<String, Vec<RawTarget>>,
    stack: Vec<String>,
}

impl Resolver<'_> {
    fn targets(&mut self, chain: &str) -> Vec<RawTarget> {
        if let Some(done) = self.memo.get(chain) {
            return done.clone();
        }
        if self.stack.len() >= MAX_DEPTH || self.stack.iter().any(|c| c == chain) {
            return Vec::new();
        }
        self.stack.push(chain.to_owned());
        let short_circuits = chain.starts_with("KUBE-EXT-") || chain.starts_with("KUBE-XLB-");
        let mut out: Vec<RawTarget> = Vec::new();
        for rule in self.table.rules(chain) {
            match rule.target.as_deref() {
                Some("DNAT") => {
                    if let Some((ip, port)) = rule.to_destination.as_deref().and_then(to_destination) {
                        out.push(RawTarget { ip, port, chain: chain.to_owned() });
                    }
                }
                Some(next) if self.table.has_chain(next) && !next.starts_with("KUBE-MARK-") => {
                    if short_circuits && rule.source_match {
                        continue;
                    }
                    let found = self.targets(next);
                    out.extend(found);
                }
                _ => {}
            }
        }
        dedup_targets(&mut out);
        self.stack.pop();
        self.memo.insert(chain.to_owned(), out.clone());
        out
    }
}

/// Keeps the first of each (ip, port).
fn dedup_targets(targets: &mut Vec<RawTarget>) {
    let mut seen = HashSet::new();
    targets.retain(|t| seen.insert((t.ip, t.port)));
}

/// The frontends found so far, merged by (address, port, protocol, node port).
#[derive(Debug, Default)]
struct Frontends {
    services: Vec<NatService>,
}

impl Frontends {
    /// Adds a frontend, merging targets into an existing one with the same key.
    fn add(&mut self, svc: NatService) {
        match self.services.iter_mut().find(|s| same_frontend(s, &svc)) {
            Some(existing) => {
                for t in svc.targets {
                    if !existing.targets.iter().any(|e| e.ip == t.ip && e.port == t.port) {
                        existing.targets.push(t);
                    }
                }
                if existing.service.is_none() {
                    existing.service = svc.service;
                }
            }
            None => self.services.push(svc),
        }
    }

    fn add_if_absent(&mut self, svc: NatService) {
        if !self.services.iter().any(|s| same_frontend(s, &svc)) {
            self.services.push(svc);
        }
    }

    fn into_sorted(mut self) -> Vec<NatService> {
        sort_services(&mut self.services);
        self.services
    }
}

pub(crate) fn same_frontend(a: &NatService, b: &NatService) -> bool {
    a.vip == b.vip && a.port == b.port && a.protocol == b.protocol && a.node_port == b.node_port
}

/// The order both parsers return frontends in: cluster and external addresses first, then node
/// ports; by address, port, protocol.
pub(crate) fn sort_services(services: &mut [NatService]) {
    services.sort_by(|a, b| {
        (a.node_port, a.vip, a.port, a.protocol).cmp(&(b.node_port, b.vip, b.port, b.protocol))
    });
}

/// The Service a rule comment names: its first word that reads as `<ns>/<name>[:<port>]`
/// (`"ns/svc:port cluster IP"`, `"ns/svc:port has no endpoints"`, `ns/svc:port`).
pub(crate) fn service_name(comment: Option<&str>) -> Option<NatServiceName> {
    comment?.split_whitespace().filter(|w| w.contains('/')).find_map(|w| w.parse().ok())
}

/// `10.96.0.10`, `10.96.0.10/32`, `fd00::a/128`; a prefix that is not a host is not a frontend.
fn host(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    let net: IpNet = s.parse().ok()?;
    (net.prefix_len() == net.max_prefix_len()).then(|| net.addr())
}

/// `--dport 80`; ranges (`80:90`) are not Service ports.
fn port(s: &str) -> Option<Port> {
    s.parse().ok()
}

/// `tcp`/`udp`/`sctp`, or their protocol numbers.
pub(crate) fn protocol(s: &str) -> Option<NatProtocol> {
    match s {
        "6" => Some(NatProtocol::Tcp),
        "17" => Some(NatProtocol::Udp),
        "132" => Some(NatProtocol::Sctp),
        _ => s.parse().ok(),
    }
}

/// `--to-destination` as `ip`, `ip:port`, `[v6]`, `[v6]:port`, or ranges of either (the first
/// address and port are kept).
fn to_destination(s: &str) -> Option<(IpAddr, Option<Port>)> {
    let first_port = |p: &str| -> Option<Option<Port>> {
        let p = p.split('-').next()?;
        Some(Some(port(p)?))
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip = ip.parse().ok()?;
        let port = match after.strip_prefix(':') {
            Some(p) => first_port(p)?,
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((ip, port));
    }
    let first_ip = |ip: &str| ip.split('-').next().and_then(|ip| ip.parse::<IpAddr>().ok());
    match s.matches(':').count() {
        0 => Some((first_ip(s)?, None)),
        1 => {
            let (ip, p) = s.split_once(':')?;
            Some((first_ip(ip)?, first_port(p)?))
        }
        _ => Some((first_ip(s)?, None)),
    }
}

#[cfg(test)]
mod tests;
