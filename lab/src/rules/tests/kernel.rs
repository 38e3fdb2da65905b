//! The rendered rules against a real kernel. Each test makes a scratch network namespace
//! (`ndtest-rules-<pid>-<n>`, deleted by a drop guard even when the test fails), loads the text
//! with `iptables-restore`, `ip6tables-restore` or `nft -f -`, loads it a second time (it must
//! replace itself), reads the tables back and follows the jumps from every frontend to its DNAT
//! targets, which must be what [`expected_nat`] says.
//!
//! These tests need root and the `ip`, `iptables` (nf_tables backend) and `nft` binaries; they
//! fail with a message naming what is missing rather than pass without checking anything.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use super::*;

static NEXT_NETNS: AtomicUsize = AtomicUsize::new(0);

/// The full path of a system binary; `ip netns exec` gets it so a short `$PATH` cannot matter.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed (looked in $PATH, /usr/sbin, /sbin): these tests load \
                 kube-proxy rules into a real kernel and need iproute2, iptables (nf_tables backend) \
                 and nftables"
            )
        })
}

/// A network namespace that exists for one test.
struct ScratchNetns {
    name: String,
    ip: PathBuf,
}

impl ScratchNetns {
    fn new() -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests create network namespaces and load netfilter rules: run them as root"
        );
        let ip = tool("ip");
        let name =
            format!("ndtest-rules-{}-{}", std::process::id(), NEXT_NETNS.fetch_add(1, Ordering::Relaxed));
        let out = Command::new(&ip).args(["netns", "add", &name]).output().expect("run ip netns add");
        assert!(out.status.success(), "ip netns add {name}: {}", String::from_utf8_lossy(&out.stderr));
        ScratchNetns { name, ip }
    }

    /// Runs `program args…` in the namespace with `stdin`; the test fails unless it exits 0.
    fn run(&self, program: &str, args: &[&str], stdin: &str) -> String {
        let mut child = Command::new(&self.ip)
            .args(["netns", "exec", &self.name])
            .arg(tool(program))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program} in {}: {e}", self.name));
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes()).unwrap_or_else(|e| panic!("feed {program}: {e}"));
        }
        let out = child.wait_with_output().unwrap_or_else(|e| panic!("wait for {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} in {} failed ({}): {}\n--- input ---\n{stdin}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for ScratchNetns {
    fn drop(&mut self) {
        let deleted = Command::new(&self.ip).args(["netns", "del", &self.name]).status();
        if !matches!(deleted, Ok(s) if s.success()) {
            eprintln!("could not delete network namespace {}: {deleted:?}", self.name);
        }
    }
}

fn words(rule: &str) -> Vec<&str> {
    rule.split(' ').collect()
}

fn flag<'a>(rule: &'a str, name: &str) -> Option<&'a str> {
    let w = words(rule);
    w.iter().position(|x| *x == name).and_then(|i| w.get(i + 1)).copied()
}

/// `iptables-save -t TABLE` output as chain → rule specs (the text after `-A CHAIN `).
fn parse_save(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut chains: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(decl) = line.strip_prefix(':') {
            chains.entry(decl.split(' ').next().unwrap_or("").to_string()).or_default();
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let (chain, spec) = rule.split_once(' ').unwrap_or((rule, ""));
            chains.entry(chain.to_string()).or_default().push(spec.to_string());
        }
    }
    chains
}

/// The DNAT targets reached from `chain` by traffic from outside the node: rules that match on
/// the source (masquerade marking, kube-proxy's short-circuits for pods and the node) are
/// skipped, every other jump is followed.
fn follow_iptables(nat: &BTreeMap<String, Vec<String>>, chain: &str, depth: usize) -> Vec<SocketAddr> {
    assert!(depth < 8, "jump loop through {chain}");
    let mut out = Vec::new();
    for rule in nat.get(chain).unwrap_or_else(|| panic!("chain {chain} was not loaded")) {
        let w = words(rule);
        if w.contains(&"-s") || w.contains(&"--src-type") {
            continue;
        }
        match flag(rule, "-j") {
            Some("DNAT") => {
                let to = flag(rule, "--to-destination").expect("DNAT has a destination");
                out.push(to.parse().unwrap_or_else(|e| panic!("DNAT target {to}: {e}")));
            }
            Some(next) if next.starts_with("KUBE-") && next != "KUBE-MARK-MASQ" => {
                out.extend(follow_iptables(nat, next, depth + 1));
            }
            _ => {}
        }
    }
    out
}

fn host_prefix(ip: IpAddr) -> String {
    ipnet::IpNet::from(ip).to_string()
}

/// Every rule of `rendered`'s `table` must read back verbatim: the renderer writes the
/// canonical `iptables-save` form.
fn assert_verbatim(rendered: &str, table: &str, saved: &str) {
    let saved: std::collections::BTreeSet<&str> = saved.lines().collect();
    let header = format!("*{table}");
    for line in rendered
        .lines()
        .skip_while(|l| *l != header)
        .take_while(|l| *l != "COMMIT")
        .filter(|l| l.starts_with("-A ") || l.starts_with(':'))
    {
        assert!(saved.contains(line), "{table}: `{line}` did not read back verbatim");
    }
}

fn without_comments(text: &str) -> String {
    text.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n")
}

/// Loads the iptables rules of every node of `plan` in `family`, then checks them.
fn check_iptables(plan: &LabPlan, family: Family) {
    for node in &plan.nodes {
        let ns = ScratchNetns::new();
        let rendered = iptables::render_iptables(plan, node, family);
        ns.run(family.restore_command(), &[], &rendered);
        let nat_text = ns.run(family.save_command(), &["-t", "nat"], "");
        let filter_text = ns.run(family.save_command(), &["-t", "filter"], "");
        ns.run(family.restore_command(), &[], &rendered);
        for (table, first) in [("nat", &nat_text), ("filter", &filter_text)] {
            assert_eq!(
                without_comments(&ns.run(family.save_command(), &["-t", table], "")),
                without_comments(first),
                "{}: loading the rules twice changed the {table} table",
                node.name
            );
        }
        assert_verbatim(&rendered, "nat", &nat_text);
        assert_verbatim(&rendered, "filter", &filter_text);

        let nat = parse_save(&nat_text);
        let filter = parse_save(&filter_text);
        let expected = expected_nat(plan, node, family);
        assert!(!expected.is_empty(), "{} {family}: nothing to check", node.name);
        for e in &expected {
            let p = e.protocol.to_string();
            let port = e.port.to_string();
            let what =
                format!("{} {family} {:?} {} {}/{p}", node.name, e.frontend, e.service, e.destination());
            let matches = |rule: &&String, dst: Option<&str>| {
                flag(rule, "-p") == Some(p.as_str())
                    && flag(rule, "--dport") == Some(port.as_str())
                    && dst.is_none_or(|d| flag(rule, "-d") == Some(d))
            };
            let dst = host_prefix(e.ip);
            let (portal_chain, dst) = match e.frontend {
                Frontend::ClusterIp => ("KUBE-SERVICES", Some(dst.as_str())),
                Frontend::NodePort => ("KUBE-NODEPORTS", None),
            };
            let portal = nat.get(portal_chain).into_iter().flatten().find(|r| matches(r, dst));
            match &e.outcome {
                NatOutcome::Dnat(targets) => {
                    let portal = portal.unwrap_or_else(|| panic!("{what}: no {portal_chain} rule"));
                    let next = flag(portal, "-j").unwrap_or("");
                    assert_eq!(&follow_iptables(&nat, next, 0), targets, "{what}");
                }
                NatOutcome::Reject | NatOutcome::Drop => {
                    let verdict = if e.outcome == NatOutcome::Reject { "REJECT" } else { "DROP" };
                    let filter_chain = match e.frontend {
                        Frontend::ClusterIp => "KUBE-SERVICES",
                        Frontend::NodePort => "KUBE-EXTERNAL-SERVICES",
                    };
                    let rule = filter.get(filter_chain).into_iter().flatten().find(|r| matches(r, dst));
                    let rule = rule.unwrap_or_else(|| panic!("{what}: no {filter_chain} rule in filter"));
                    assert_eq!(flag(rule, "-j"), Some(verdict), "{what}: {rule}");
                    if e.outcome == NatOutcome::Drop {
                        let portal = portal.unwrap_or_else(|| panic!("{what}: no {portal_chain} rule"));
                        let next = flag(portal, "-j").unwrap_or("");
                        assert!(
                            follow_iptables(&nat, next, 0).is_empty(),
                            "{what}: outside traffic is DNATed"
                        );
                    } else {
                        assert!(portal.is_none(), "{what}: a service without endpoints has a nat rule");
                    }
                }
            }
        }
    }
}

/// The `kube-proxy` table as `nft -j` lists it: rule expressions per chain, elements per set
/// or map.
struct NftTable {
    rules: BTreeMap<String, Vec<Value>>,
    elements: BTreeMap<String, Vec<Value>>,
}

impl NftTable {
    fn parse(json: &str) -> Self {
        let v: Value = serde_json::from_str(json).expect("nft -j output is JSON");
        let mut t = NftTable { rules: BTreeMap::new(), elements: BTreeMap::new() };
        for item in v["nftables"].as_array().expect("nftables array") {
            if let Some(chain) = item.get("chain") {
                t.rules.entry(chain["name"].as_str().unwrap_or("").to_string()).or_default();
            } else if let Some(rule) = item.get("rule") {
                let chain = rule["chain"].as_str().unwrap_or("").to_string();
                t.rules.entry(chain).or_default().push(rule["expr"].clone());
            } else if let Some(c) = item.get("map").or_else(|| item.get("set")) {
                let elems = c.get("elem").and_then(Value::as_array).cloned().unwrap_or_default();
                t.elements.insert(c["name"].as_str().unwrap_or("").to_string(), elems);
            }
        }
        t
    }

    /// The verdict of map `name` for a key, written `a . b . c` with each part as nft lists it.
    fn lookup(&self, name: &str, key: &[String]) -> Option<&Value> {
        self.elements.get(name)?.iter().find_map(|pair| {
            let k = &pair[0];
            let k = k.get("elem").map_or(k, |e| &e["val"]);
            let parts: Vec<String> = k["concat"]
                .as_array()?
                .iter()
                .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
                .collect();
            (parts == key).then(|| &pair[1])
        })
    }

    fn set_contains(&self, name: &str, item: &str) -> bool {
        self.elements.get(name).is_some_and(|e| e.iter().any(|x| x.as_str() == Some(item)))
    }

    /// The DNAT targets reached from `chain` by traffic from outside the node (see
    /// [`follow_iptables`]).
    fn follow(&self, chain: &str, depth: usize) -> Vec<SocketAddr> {
        assert!(depth < 8, "jump loop through {chain}");
        let mut out = Vec::new();
        for expr in self.rules.get(chain).unwrap_or_else(|| panic!("chain {chain} was not loaded")) {
            if expr.to_string().contains("\"saddr\"") {
                continue;
            }
            let mut found = Vec::new();
            walk(expr, &mut found);
            for step in found {
                match step {
                    Step::Dnat(addr) => out.push(addr),
                    Step::Chain(next) if next != "mark-for-masquerade" => {
                        out.extend(self.follow(&next, depth + 1))
                    }
                    Step::Chain(_) => {}
                }
            }
        }
        out
    }
}

enum Step {
    Chain(String),
    Dnat(SocketAddr),
}

/// Jumps, gotos and DNATs in a rule expression, in the order nft lists them.
fn walk(v: &Value, out: &mut Vec<Step>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
        Value::Object(map) => {
            for (k, val) in map {
                match k.as_str() {
                    "goto" | "jump" => {
                        out.push(Step::Chain(val["target"].as_str().unwrap_or("").to_string()));
                    }
                    "dnat" => {
                        let ip: IpAddr =
                            val["addr"].as_str().and_then(|a| a.parse().ok()).expect("dnat addr");
                        let port =
                            val["port"].as_u64().and_then(|p| u16::try_from(p).ok()).expect("dnat port");
                        out.push(Step::Dnat(SocketAddr::new(ip, port)));
                    }
                    _ => walk(val, out),
                }
            }
        }
        _ => {}
    }
}

/// Loads the nftables rules of every node of `plan` in `family`, then checks them.
fn check_nftables(plan: &LabPlan, family: Family) {
    let fam = family.nft_family();
    for node in &plan.nodes {
        let ns = ScratchNetns::new();
        let rendered = nftables::render_nftables(plan, node, family);
        ns.run("nft", &["-f", "-"], &rendered);
        let listed = ns.run("nft", &["list", "table", fam, "kube-proxy"], "");
        ns.run("nft", &["-f", "-"], &rendered);
        assert_eq!(
            ns.run("nft", &["list", "table", fam, "kube-proxy"], ""),
            listed,
            "{}: loading the script twice changed the ruleset",
            node.name
        );
        let table = NftTable::parse(&ns.run("nft", &["-j", "list", "table", fam, "kube-proxy"], ""));

        let expected = expected_nat(plan, node, family);
        assert!(!expected.is_empty(), "{} {family}: nothing to check", node.name);
        for e in &expected {
            let what = format!(
                "{} {family} {:?} {} {}/{}",
                node.name,
                e.frontend,
                e.service,
                e.destination(),
                e.protocol
            );
            let (frontend_map, no_endpoint_map, key) = match e.frontend {
                Frontend::ClusterIp => (
                    "service-ips",
                    "no-endpoint-services",
                    vec![e.ip.to_string(), e.protocol.to_string(), e.port.to_string()],
                ),
                Frontend::NodePort => {
                    assert!(
                        table.set_contains("nodeport-ips", &e.ip.to_string()),
                        "{what}: not in nodeport-ips"
                    );
                    (
                        "service-nodeports",
                        "no-endpoint-nodeports",
                        vec![e.protocol.to_string(), e.port.to_string()],
                    )
                }
            };
            let dispatch = table.lookup(frontend_map, &key);
            let chain_of = |verdict: &Value| verdict["goto"]["target"].as_str().unwrap_or("").to_string();
            match &e.outcome {
                NatOutcome::Dnat(targets) => {
                    let verdict = dispatch.unwrap_or_else(|| panic!("{what}: no {frontend_map} element"));
                    assert_eq!(&table.follow(&chain_of(verdict), 0), targets, "{what}");
                    assert!(
                        table.lookup(no_endpoint_map, &key).is_none(),
                        "{what}: also in {no_endpoint_map}"
                    );
                }
                NatOutcome::Reject => {
                    let verdict = table.lookup(no_endpoint_map, &key);
                    let verdict = verdict.unwrap_or_else(|| panic!("{what}: no {no_endpoint_map} element"));
                    assert_eq!(chain_of(verdict), "reject-chain", "{what}");
                    assert!(dispatch.is_none(), "{what}: a service without endpoints is in {frontend_map}");
                }
                NatOutcome::Drop => {
                    let verdict = table.lookup(no_endpoint_map, &key);
                    let verdict = verdict.unwrap_or_else(|| panic!("{what}: no {no_endpoint_map} element"));
                    assert!(verdict.get("drop").is_some(), "{what}: {verdict}");
                    let verdict = dispatch.unwrap_or_else(|| panic!("{what}: no {frontend_map} element"));
                    assert!(
                        table.follow(&chain_of(verdict), 0).is_empty(),
                        "{what}: outside traffic is DNATed"
                    );
                }
            }
        }
    }
}

#[test]
fn iptables_rules_load_into_a_kernel() {
    check_iptables(&default_plan(), Family::V4);
}

#[test]
fn ip6tables_rules_load_into_a_kernel() {
    let plan = plan_from(&dual_stack_yaml());
    check_iptables(&plan, Family::V6);
    check_iptables(&plan, Family::V4);
}

#[test]
fn iptables_variants_load_into_a_kernel() {
    check_iptables(&plan_from(&etp_local_yaml()), Family::V4);
    let both = no_endpoints_yaml().replace("ipv6: false", "ipv6: true");
    check_iptables(&plan_from(&both), Family::V6);
}

#[test]
fn nftables_rules_load_into_a_kernel() {
    check_nftables(&plan_from(&nftables_yaml(OPEN_TOPOLOGY)), Family::V4);
}

#[test]
fn nftables_ipv6_rules_load_into_a_kernel() {
    let plan = plan_from(&nftables_yaml(&dual_stack_yaml()));
    check_nftables(&plan, Family::V6);
    check_nftables(&plan, Family::V4);
}

#[test]
fn nftables_variants_load_into_a_kernel() {
    check_nftables(&plan_from(&nftables_yaml(&etp_local_yaml())), Family::V4);
    let both = nftables_yaml(&no_endpoints_yaml()).replace("ipv6: false", "ipv6: true");
    check_nftables(&plan_from(&both), Family::V6);
}

#[test]
fn a_family_the_lab_lacks_loads_as_nothing() {
    let plan = default_plan();
    let node = node(&plan, "node-1");
    let ns = ScratchNetns::new();
    ns.run("ip6tables-restore", &[], &iptables::render_iptables(&plan, node, Family::V6));
    let saved = ns.run("ip6tables-save", &[], "");
    assert!(!saved.contains("KUBE-"), "{saved}");
    // Removing a table that is not there must work too: the script is safe on a fresh node.
    ns.run("nft", &["-f", "-"], &nftables::render_nftables(&plan, node, Family::V6));
    let tables = ns.run("nft", &["list", "tables"], "");
    assert!(!tables.contains("kube-proxy"), "{tables}");
}

/// Every fault's rules in a dual-stack lab, both families: the kernel takes each one (the
/// `statistic`, `length`, `conntrack` and `comment` matches included) and keeps them all.
#[test]
fn fault_chain_rules_load_into_a_kernel() {
    use crate::desired::{FAULT_CHAIN, fault_chain_restore, fault_rules};
    use crate::faults::{ActiveFault, FaultSpec};

    let plan = plan_from(&dual_stack_yaml());
    let commands = [
        "node-pair node-1 node-2",
        "node-isolate node-3",
        // (port-closed and dns-servfail live in the lab's server: no rule.)
        "port-drop tidb/demo-pd-1 2380",
        "pod-filter tidb/demo-pd-1 node/node-1",
        "pod-filter tidb/demo-pd-2 namespace/tidb",
        "dns-down",
        "dns-block node-2",
        "dns-loss 30",
        "loss node-3 30",
        "loss node-2 10 --direction in",
        "mtu node-1 1200 --direction out",
        "idle-cut node-2 30",
    ];
    let faults: Vec<ActiveFault> = commands
        .iter()
        .zip(1..)
        .map(|(text, id)| {
            let mut words = text.split_whitespace();
            let name = words.next().unwrap_or_default();
            let args: Vec<String> = words.map(str::to_owned).collect();
            let spec = FaultSpec::parse(name, &args, &plan).unwrap_or_else(|e| panic!("{text}: {e}"));
            ActiveFault { id, description: spec.to_string(), spec, since_unix_ms: 0 }
        })
        .collect();
    for family in [Family::V4, Family::V6] {
        let rules: Vec<String> =
            plan.namespaces().iter().flat_map(|ns| fault_rules(&plan, &faults, ns, family)).collect();
        for f in &faults {
            let tag = format!("netdiag-fault-{} {}", f.id, f.spec.name());
            assert!(rules.iter().any(|r| r.contains(&tag)), "{family}: no rule for {tag}");
        }
        let ns = ScratchNetns::new();
        let text = fault_chain_restore(&rules);
        ns.run(family.restore_command(), &[], &text);
        ns.run(family.restore_command(), &[], &text);
        let saved = ns.run(family.save_command(), &["-t", "filter"], "");
        let loaded = parse_save(&saved).remove(FAULT_CHAIN).unwrap_or_default();
        assert_eq!(loaded.len(), rules.len(), "{family}: the kernel kept another rule set:\n{saved}");
        for (want, got) in rules.iter().zip(&loaded) {
            let id = |r: &str| {
                r.split("netdiag-fault-").nth(1).map(|t| t.split('"').next().unwrap_or("").to_owned())
            };
            assert_eq!(id(want), id(got), "{family}: rule order changed\n{want}\n{got}");
        }
    }
}

/// The policy lab's filter tables, every pod's and every node's (iptables mode, with the kube
/// filter rules) with both policy faults active, in both families: the kernel takes each, a
/// second load replaces rather than duplicates, and every chain keeps its rule count.
#[test]
fn policy_chains_load_into_a_kernel() {
    use crate::faults::{ActiveFault, FaultSpec};
    use crate::netpol::Enforcement;
    use crate::reconcile::{node_iptables, pod_iptables};

    let plan = plan_from(&edit(crate::topology::DEFAULT_TOPOLOGY, "ipv6: false", "ipv6: true"));
    let enforcement = Enforcement::new(&plan);
    let faults: Vec<ActiveFault> =
        ["extra-deny tidb/demo-tikv-1 namespace/monitoring", "policy-not-enforced node-3"]
            .iter()
            .zip(1..)
            .map(|(text, id)| {
                let mut words = text.split_whitespace();
                let name = words.next().unwrap_or_default();
                let args: Vec<String> = words.map(str::to_owned).collect();
                let spec = FaultSpec::parse(name, &args, &plan).unwrap_or_else(|e| panic!("{text}: {e}"));
                ActiveFault { id, description: spec.to_string(), spec, since_unix_ms: 0 }
            })
            .collect();
    let count = |text: &str| {
        let mut by_chain: BTreeMap<String, usize> = BTreeMap::new();
        for line in text.lines().skip_while(|l| *l != "*filter").take_while(|l| *l != "COMMIT") {
            if let Some(rest) = line.strip_prefix("-A ") {
                *by_chain.entry(rest.split(' ').next().unwrap_or_default().to_owned()).or_default() += 1;
            }
        }
        by_chain
    };
    for family in [Family::V4, Family::V6] {
        let mut texts: Vec<String> =
            plan.pods.iter().filter_map(|p| pod_iptables(&plan, &enforcement, p, &faults, family)).collect();
        assert_eq!(texts.len(), 5, "{family}: the tidb pods on node-1 and node-2 get filter tables");
        texts.extend(plan.nodes.iter().map(|n| node_iptables(&plan, &enforcement, n, &faults, family)));
        for text in texts {
            let ns = ScratchNetns::new();
            ns.run(family.restore_command(), &[], &text);
            ns.run(family.restore_command(), &[], &text);
            let saved = ns.run(family.save_command(), &["-t", "filter"], "");
            let want = count(&text);
            assert_eq!(
                count(&saved),
                want,
                "{family}: the kernel kept another rule set:\n{text}\n---\n{saved}"
            );
        }
    }
}
