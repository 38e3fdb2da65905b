//! A node firewall's drop and reject rules, read back from `iptables-save` (or
//! `ip6tables-save`) text: the `filter` table's rules reached from `INPUT`, `FORWARD` and
//! `OUTPUT`, and the `raw` and `mangle` tables' from their built-in chains (a `PREROUTING`
//! drop stops what the node receives, a `POSTROUTING` one what it sends), through the chains
//! they jump to, that end in `DROP` or `REJECT`. Pure: text in, values out; nothing here
//! panics on any input.
//!
//! A rule is reported only when every condition on its way is understood (protocol, addresses,
//! interfaces, destination ports, a connection-state match that includes new connections,
//! comments): a rule that drops a random share, by packet length, by mark or by anything else
//! does not stop all of the traffic the rest describes, and would mislead. Negated conditions
//! are not understood either. kube-proxy's own chains (`KUBE-*`) are left to the NAT reader.

use std::collections::HashMap;
use std::str::FromStr;

use ipnet::IpNet;
use netdiag_model::Port;
use netdiag_model::inspect::{FilterDrop, FilterHook, FilterProtocol, PortRange};
use netdiag_model::limits::{MAX_FILTER_DROPS, MAX_FILTER_PORT_RANGES, MAX_LINE_BYTES};
use netdiag_model::text::Text;

use super::iptables_nat::{Word, split_words};

/// How deep jumps between user chains are followed.
const MAX_DEPTH: usize = 8;

/// Where each built-in chain that can drop sits, by table: `(table, chain, hooks)`. A
/// `PREROUTING` rule meets what the node receives, for itself or to forward; a `POSTROUTING`
/// rule what it sends, its own or forwarded.
const CHAINS: [(&str, &str, &[FilterHook]); 10] = [
    ("filter", "INPUT", &[FilterHook::Input]),
    ("filter", "FORWARD", &[FilterHook::Forward]),
    ("filter", "OUTPUT", &[FilterHook::Output]),
    ("raw", "PREROUTING", &[FilterHook::Input, FilterHook::Forward]),
    ("raw", "OUTPUT", &[FilterHook::Output]),
    ("mangle", "PREROUTING", &[FilterHook::Input, FilterHook::Forward]),
    ("mangle", "INPUT", &[FilterHook::Input]),
    ("mangle", "FORWARD", &[FilterHook::Forward]),
    ("mangle", "OUTPUT", &[FilterHook::Output]),
    ("mangle", "POSTROUTING", &[FilterHook::Forward, FilterHook::Output]),
];

/// The drop and reject rules of the `filter`, `raw` and `mangle` tables in `text`, chain by
/// chain, in rule order; a built-in chain whose policy is DROP ends its list with that policy.
/// Rules of `filter` are shown as `FORWARD: …`, the others with their table (`raw
/// PREROUTING: …`).
pub fn parse(text: &str) -> Vec<FilterDrop> {
    let mut out = Vec::new();
    for table_name in ["filter", "raw", "mangle"] {
        let Table { chains, drop_policies } = table(text, table_name);
        for &(_, name, hooks) in CHAINS.iter().filter(|(t, _, _)| *t == table_name) {
            let shown = if table_name == "filter" { name.to_owned() } else { format!("{table_name} {name}") };
            for &hook in hooks {
                let mut path = vec![name.to_owned()];
                let mut found = Vec::new();
                walk(&chains, hook, name, &Conditions::default(), false, &mut path, &mut found);
                for mut drop in found {
                    if table_name != "filter" {
                        drop.rule = Text::<MAX_LINE_BYTES>::lossy(&format!("{table_name} {}", drop.rule));
                    }
                    out.push(drop);
                }
                if drop_policies.iter().any(|c| c == name) {
                    let flag =
                        if table_name == "filter" { String::new() } else { format!("-t {table_name} ") };
                    let rule = format!(
                        "{shown}: policy DROP (`iptables {flag}-P {name} DROP`: drops what no rule accepts)"
                    );
                    let mut drop = Conditions::default().into_drop(hook, false, &rule);
                    drop.policy = true;
                    drop.new_only = true;
                    out.push(drop);
                }
            }
            if out.len() >= MAX_FILTER_DROPS {
                break;
            }
        }
    }
    out.truncate(MAX_FILTER_DROPS);
    out
}

/// One table: each chain's rules (the words after `-A CHAIN`), as the table lists them, and
/// the built-in chains whose policy drops.
struct Table {
    chains: HashMap<String, Vec<Vec<Word>>>,
    drop_policies: Vec<String>,
}

fn table(text: &str, name: &str) -> Table {
    let mut chains: HashMap<String, Vec<Vec<Word>>> = HashMap::new();
    let mut drop_policies = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(table) = line.strip_prefix('*') {
            in_table = table.trim() == name;
            continue;
        }
        if !in_table {
            continue;
        }
        if let Some(decl) = line.strip_prefix(':') {
            let mut fields = decl.split_whitespace();
            if let Some(chain) = fields.next() {
                chains.entry(chain.to_owned()).or_default();
                // `:FORWARD DROP [0:0]`; user chains say `-`.
                if fields.next() == Some("DROP") && !drop_policies.iter().any(|c| c == chain) {
                    drop_policies.push(chain.to_owned());
                }
            }
            continue;
        }
        let mut words = split_words(line);
        if words.len() < 2 || words[0].quoted || !matches!(words[0].text.as_str(), "-A" | "--append") {
            continue;
        }
        let rest = words.split_off(2);
        chains.entry(words[1].text.clone()).or_default().push(rest);
    }
    Table { chains, drop_policies }
}

fn walk(
    chains: &HashMap<String, Vec<Vec<Word>>>,
    hook: FilterHook,
    chain: &str,
    inherited: &Conditions,
    established_accepted: bool,
    path: &mut Vec<String>,
    out: &mut Vec<FilterDrop>,
) {
    let Some(rules) = chains.get(chain) else { return };
    let mut established_accepted = established_accepted;
    for words in rules {
        if out.len() >= MAX_FILTER_DROPS {
            return;
        }
        if accepts_established(words) {
            established_accepted = true;
            continue;
        }
        let Some(rule) = Rule::read(words) else { continue };
        let Some(conditions) = inherited.and(&rule.conditions) else { continue };
        match rule.target.as_deref() {
            Some(target @ ("DROP" | "REJECT")) => {
                let text = format!("{}: {}", path.join(" → "), join(words));
                let mut drop = conditions.into_drop(hook, target == "REJECT", &text);
                drop.new_only |= established_accepted;
                out.push(drop);
            }
            Some(next)
                if chains.contains_key(next)
                    && !next.starts_with("KUBE-")
                    && path.len() < MAX_DEPTH
                    && !path.iter().any(|c| c == next) =>
            {
                path.push(next.to_owned());
                walk(chains, hook, next, &conditions, established_accepted, path, out);
                path.pop();
            }
            _ => {}
        }
    }
}

/// `-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT` (or `-m state --state …`, with a
/// comment at most): every later rule on the way meets new connections only.
fn accepts_established(words: &[Word]) -> bool {
    let mut accept = false;
    let mut states = false;
    let mut i = 0;
    while i < words.len() {
        let w = words[i].text.as_str();
        let value = words.get(i + 1).map(|v| v.text.as_str());
        match (w, value) {
            ("-m" | "--match", Some("conntrack" | "state" | "comment")) => i += 2,
            ("--comment", Some(_)) => i += 2,
            ("--ctstate" | "--state", Some(v)) => {
                states = v.split(',').all(|s| matches!(s, "ESTABLISHED" | "RELATED"));
                i += 2;
            }
            ("-j" | "--jump", Some("ACCEPT")) => {
                accept = true;
                i += 2;
            }
            _ => return false,
        }
    }
    accept && states
}

fn join(words: &[Word]) -> String {
    words
        .iter()
        .map(|w| if w.quoted { format!("\"{}\"", w.text) } else { w.text.clone() })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a rule matches, each field set by at most one rule on the way (shared with the
/// nftables reader, whose rules match the same fields).
#[derive(Debug, Clone, Default)]
pub(super) struct Conditions {
    pub(super) protocol: Option<FilterProtocol>,
    pub(super) source: Option<IpNet>,
    pub(super) destination: Option<IpNet>,
    /// In iptables' syntax: a trailing `+` matches any suffix.
    pub(super) in_interface: Option<String>,
    pub(super) out_interface: Option<String>,
    pub(super) ports: Vec<PortRange>,
    /// A connection-state match takes new connections only (`--ctstate NEW`): replies and
    /// flows already established pass.
    pub(super) new_only: bool,
}

impl Conditions {
    /// Both sets at once; None when they contradict or overlap in a way not modelled.
    pub(super) fn and(&self, other: &Conditions) -> Option<Conditions> {
        fn one<T: Clone + PartialEq>(a: &Option<T>, b: &Option<T>) -> Option<Option<T>> {
            match (a, b) {
                (Some(x), Some(y)) if x != y => None,
                (Some(x), _) | (None, Some(x)) => Some(Some(x.clone())),
                (None, None) => Some(None),
            }
        }
        let ports = match (self.ports.is_empty(), other.ports.is_empty()) {
            (true, _) => other.ports.clone(),
            (false, true) => self.ports.clone(),
            (false, false) => return None,
        };
        Some(Conditions {
            protocol: one(&self.protocol, &other.protocol)?,
            source: one(&self.source, &other.source)?,
            destination: one(&self.destination, &other.destination)?,
            in_interface: one(&self.in_interface, &other.in_interface)?,
            out_interface: one(&self.out_interface, &other.out_interface)?,
            ports,
            new_only: self.new_only || other.new_only,
        })
    }

    pub(super) fn into_drop(self, hook: FilterHook, reject: bool, rule: &str) -> FilterDrop {
        let iface = |s: Option<String>| s.map(|s| Text::<64>::lossy(&s));
        FilterDrop {
            hook,
            protocol: self.protocol,
            source: self.source,
            destination: self.destination,
            in_interface: iface(self.in_interface),
            out_interface: iface(self.out_interface),
            destination_ports: self.ports,
            reject,
            policy: false,
            new_only: self.new_only,
            rule: Text::<MAX_LINE_BYTES>::lossy(rule),
        }
    }
}

/// One rule's conditions and target; None when a condition is not understood.
#[derive(Debug)]
struct Rule {
    conditions: Conditions,
    target: Option<String>,
}

impl Rule {
    fn read(words: &[Word]) -> Option<Rule> {
        let mut c = Conditions::default();
        let mut target = None;
        let mut negated = false;
        let mut i = 0;
        while i < words.len() {
            let word = &words[i];
            i += 1;
            if !word.quoted && word.text == "!" {
                negated = true;
                continue;
            }
            if word.quoted || !word.text.starts_with('-') {
                return None;
            }
            let option = word.text.as_str();
            let value = words.get(i).filter(|w| w.quoted || !(w.text.starts_with('-') || w.text == "!"));
            if value.is_some() {
                i += 1;
            }
            let value = value.map(|w| w.text.as_str());
            let was_negated = std::mem::take(&mut negated);
            match (option, value) {
                // A connection-state match that takes new connections stops them all.
                ("--ctstate" | "--state", Some(states)) => {
                    let new = states.split(',').any(|s| s == "NEW");
                    let old_only = states.split(',').all(|s| matches!(s, "ESTABLISHED" | "RELATED"));
                    if !(new && !was_negated || was_negated && old_only) {
                        return None;
                    }
                    c.new_only = true;
                }
                _ if was_negated => return None,
                ("-m" | "--match", Some(module)) => {
                    if !matches!(
                        module,
                        "tcp"
                            | "udp"
                            | "sctp"
                            | "icmp"
                            | "icmp6"
                            | "icmpv6"
                            | "multiport"
                            | "comment"
                            | "conntrack"
                            | "state"
                    ) {
                        return None;
                    }
                }
                ("--comment", _) | ("--icmp-type" | "--icmpv6-type", _) | ("--reject-with", _) => {}
                ("-p" | "--protocol", Some(p)) => {
                    c.protocol = Some(match p {
                        "tcp" | "6" => FilterProtocol::Tcp,
                        "udp" | "17" => FilterProtocol::Udp,
                        "sctp" | "132" => FilterProtocol::Sctp,
                        "icmp" | "1" | "icmpv6" | "ipv6-icmp" | "58" => FilterProtocol::Icmp,
                        "all" | "0" => continue,
                        _ => return None,
                    });
                }
                ("-s" | "--source" | "--src", Some(a)) => c.source = Some(prefix(a)?),
                ("-d" | "--destination" | "--dst", Some(a)) => c.destination = Some(prefix(a)?),
                ("-i" | "--in-interface", Some(n)) => c.in_interface = Some(n.to_owned()),
                ("-o" | "--out-interface", Some(n)) => c.out_interface = Some(n.to_owned()),
                ("--dport" | "--destination-port" | "--dports" | "--destination-ports", Some(p)) => {
                    c.ports = ports(p)?;
                }
                ("--syn", None) => {}
                ("-j" | "--jump" | "-g" | "--goto", Some(t)) => target = Some(t.to_owned()),
                _ => return None,
            }
        }
        Some(Rule { conditions: c, target })
    }
}

/// An address with or without a prefix length (`10.0.0.1` is `/32`).
pub(super) fn prefix(s: &str) -> Option<IpNet> {
    if s.contains(',') {
        return None;
    }
    IpNet::from_str(s).ok().or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// `80`, `1000:2000`, `80,443,8000:8080`.
pub(super) fn ports(s: &str) -> Option<Vec<PortRange>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let (a, b) = part.split_once(':').unwrap_or((part, part));
        let bound = |text: &str, default: u32| {
            let n = if text.is_empty() { default } else { text.parse::<u32>().ok()? };
            Port::new(n).ok()
        };
        let (first, last) = (bound(a, 1)?, bound(b, 65535)?);
        if last < first {
            return None;
        }
        out.push(PortRange { first, last });
    }
    // More ranges than a report may carry: not a rule worth reading (multiport takes 15).
    (!out.is_empty() && out.len() <= MAX_FILTER_PORT_RANGES).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = r#"# Generated by iptables-nft-save v1.8.9
*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -p tcp --dport 20160 -j DROP
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:BLOCK - [0:0]
:KUBE-SERVICES - [0:0]
-A INPUT -m conntrack --ctstate INVALID -j DROP
-A FORWARD -p tcp -m tcp --dport 20160 -j DROP
-A FORWARD -i eth0 -m statistic --mode random --probability 0.3 -j DROP
-A FORWARD -m length --length 1201:65535 -j DROP
-A FORWARD -s 10.244.1.0/24 -j BLOCK
-A FORWARD -j KUBE-SERVICES
-A FORWARD ! -s 10.0.0.0/8 -j DROP
-A BLOCK -p udp -m multiport --dports 53,5353:5354 -m comment --comment "no dns" -j REJECT --reject-with icmp-port-unreachable
-A BLOCK -s 10.244.2.0/24 -j DROP
-A BLOCK -j BLOCK
-A OUTPUT -d 10.244.3.7 -m conntrack ! --ctstate ESTABLISHED,RELATED -j DROP
-A KUBE-SERVICES -d 10.96.0.5/32 -p tcp -j REJECT
COMMIT
"#;

    #[test]
    fn drops_are_read_with_their_conditions_and_path() {
        let got = parse(SAVE);
        let lines: Vec<&str> = got.iter().map(|d| d.rule.as_str()).collect();
        assert_eq!(
            lines,
            vec![
                "FORWARD: -p tcp -m tcp --dport 20160 -j DROP",
                "FORWARD → BLOCK: -p udp -m multiport --dports 53,5353:5354 -m comment --comment \"no dns\" -j REJECT --reject-with icmp-port-unreachable",
                "OUTPUT: -d 10.244.3.7 -m conntrack ! --ctstate ESTABLISHED,RELATED -j DROP",
            ],
            "a random share, a length, INVALID only, a negated source, a contradiction (10.244.1 and .2), a loop and kube-proxy's chains are left out"
        );
        let port = |p| Port::new(p).unwrap();
        assert_eq!(got[0].hook, FilterHook::Forward);
        assert_eq!(got[0].protocol, Some(FilterProtocol::Tcp));
        assert_eq!(got[0].destination_ports, vec![PortRange { first: port(20160), last: port(20160) }]);
        assert!(!got[0].reject);
        assert_eq!(got[1].source, Some("10.244.1.0/24".parse().unwrap()), "inherited from the jump");
        assert_eq!(got[1].protocol, Some(FilterProtocol::Udp));
        assert_eq!(
            got[1].destination_ports,
            vec![
                PortRange { first: port(53), last: port(53) },
                PortRange { first: port(5353), last: port(5354) }
            ]
        );
        assert!(got[1].reject);
        assert_eq!(got[2].hook, FilterHook::Output);
        assert_eq!(got[2].destination, Some("10.244.3.7/32".parse().unwrap()));
        assert!(got[2].new_only, "`! --ctstate ESTABLISHED,RELATED`: new connections only");
        assert!(!got[0].new_only, "no state match: every packet, replies too");
    }

    #[test]
    fn raw_and_mangle_drops_meet_the_hooks_their_chains_come_before() {
        let save = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                    -A PREROUTING -p tcp -m tcp --dport 20160 -j DROP\n-A PREROUTING -p udp -j CT --notrack\nCOMMIT\n\
                    *mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                    :POSTROUTING DROP [0:0]\n-A POSTROUTING -d 10.244.2.0/24 -j DROP\n\
                    -A FORWARD -m mark --mark 0x1 -j DROP\nCOMMIT\n";
        let drops = parse(save);
        let got: Vec<(FilterHook, &str, bool)> =
            drops.iter().map(|d| (d.hook, d.rule.as_str(), d.policy)).collect();
        let prerouting = "raw PREROUTING: -p tcp -m tcp --dport 20160 -j DROP";
        let postrouting = "mangle POSTROUTING: -d 10.244.2.0/24 -j DROP";
        let policy = "mangle POSTROUTING: policy DROP (`iptables -t mangle -P POSTROUTING DROP`: drops what no rule accepts)";
        assert_eq!(
            got,
            vec![
                (FilterHook::Input, prerouting, false),
                (FilterHook::Forward, prerouting, false),
                (FilterHook::Forward, postrouting, false),
                (FilterHook::Forward, policy, true),
                (FilterHook::Output, postrouting, false),
                (FilterHook::Output, policy, true),
            ],
            "NOTRACK is no drop, a mark is not understood"
        );
    }

    #[test]
    fn a_dropping_policy_ends_its_hooks_list() {
        let save = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [12:720]\n:OUTPUT ACCEPT [0:0]\n:USER - [0:0]\n\
                    -A FORWARD -p tcp --dport 22 -j DROP\n-A FORWARD -s 10.244.0.0/16 -j ACCEPT\nCOMMIT\n\
                    *nat\n:PREROUTING DROP [0:0]\nCOMMIT\n";
        let got = parse(save);
        let lines: Vec<(&str, bool)> = got.iter().map(|d| (d.rule.as_str(), d.policy)).collect();
        assert_eq!(
            lines,
            vec![
                ("FORWARD: -p tcp --dport 22 -j DROP", false),
                ("FORWARD: policy DROP (`iptables -P FORWARD DROP`: drops what no rule accepts)", true),
            ],
            "the policy comes after the chain's rules; the nat table's policies are not the firewall's"
        );
        let policy = &got[1];
        assert_eq!(policy.hook, FilterHook::Forward);
        assert!(policy.protocol.is_none() && policy.source.is_none() && policy.destination_ports.is_empty());
        assert!(!policy.reject);
        assert!(
            parse(&SAVE.replace(":OUTPUT ACCEPT", ":OUTPUT DROP"))
                .last()
                .is_some_and(|d| d.policy && d.hook == FilterHook::Output)
        );
    }

    #[test]
    fn rules_after_a_stateful_accept_meet_new_connections_only() {
        let save = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:IN - [0:0]\n\
                    -A INPUT -p tcp --dport 22 -j DROP\n-A INPUT -j IN\n\
                    -A IN -m conntrack --ctstate ESTABLISHED,RELATED -m comment --comment \"replies\" -j ACCEPT\n\
                    -A IN -s 10.244.2.4/32 -j DROP\n\
                    -A FORWARD -m state --state ESTABLISHED -s 10.0.0.0/8 -j ACCEPT\n-A FORWARD -j DROP\nCOMMIT\n";
        let drops = parse(save);
        let got: Vec<(&str, bool)> = drops.iter().map(|d| (d.rule.as_str(), d.new_only)).collect();
        assert_eq!(
            got,
            vec![
                ("INPUT: -p tcp --dport 22 -j DROP", false),
                ("INPUT → IN: -s 10.244.2.4/32 -j DROP", true),
                ("FORWARD: -j DROP", false),
            ],
            "only an accept of established flows alone (a comment at most) makes later rules new-only"
        );
    }

    #[test]
    fn odd_input_gives_nothing_and_never_panics() {
        for text in [
            "",
            "*filter\n-A",
            "*filter\n-A FORWARD",
            "*filter\n-A FORWARD -p",
            "*filter\n-A FORWARD --dport 0 -j DROP",
            "*filter\n-A FORWARD --dport 9:1 -j DROP",
            "*filter\n-A FORWARD -s not-an-ip -j DROP",
            "*filter\n-A FORWARD \"-j\" DROP",
            "-A FORWARD -j DROP",
        ] {
            assert!(parse(text).is_empty(), "{text:?}");
        }
        let many: String = std::iter::once("*filter\n".to_owned())
            .chain((0..5000).map(|i| format!("-A INPUT -s 10.0.{}.{}/32 -j DROP\n", i / 256, i % 256)))
            .collect();
        assert_eq!(parse(&many).len(), MAX_FILTER_DROPS);
    }
}
