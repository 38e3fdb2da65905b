//! Which iptables backend a node's rules live in. iptables-legacy (`x_tables`) and iptables-nft
//! (nf_tables) cannot see each other's rules, so the agent must read the one kube-proxy and
//! kubelet write to, whatever its own image's `iptables` points at. The decision is the one
//! kubernetes-sigs/iptables-wrappers makes, as a pure function over the captured outputs
//! ([`decide`]); [`detect`] is the thin I/O around it.

use crate::source::SourceNs;

use super::command::{self, COMMAND_TIMEOUT, CommandError};

/// Chains kubelet and kube-proxy create in the `mangle` table of the backend they use, so that
/// other components can tell (KEP-3178).
const HINT_CHAINS: [&str; 2] = ["KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"];

/// iptables-wrappers' threshold: this many legacy rules means legacy is in use.
const LEGACY_RULES_IN_USE: usize = 10;

/// An iptables backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IptablesBackend {
    Legacy,
    Nft,
}

impl IptablesBackend {
    /// The save commands of this backend: (IPv4, IPv6).
    pub const fn save_commands(self) -> (&'static str, &'static str) {
        match self {
            IptablesBackend::Legacy => ("iptables-legacy-save", "ip6tables-legacy-save"),
            IptablesBackend::Nft => ("iptables-nft-save", "ip6tables-nft-save"),
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            IptablesBackend::Legacy => "legacy",
            IptablesBackend::Nft => "nft",
        }
    }
}

impl std::fmt::Display for IptablesBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decides from the `iptables-legacy-save` + `ip6tables-legacy-save` output (`legacy`) and the
/// `iptables-nft-save` + `ip6tables-nft-save` output (`nft`), `None` where a backend's tools
/// are missing: a backend holding a hint chain wins (nft first); else legacy when it holds at
/// least 10 rules or at least as many as nft; else nft. `None` when neither could be read.
pub fn decide(legacy: Option<&str>, nft: Option<&str>) -> Option<IptablesBackend> {
    let has_hint = |text: &str| {
        text.lines().any(|l| {
            l.strip_prefix(':')
                .and_then(|d| d.split_whitespace().next())
                .is_some_and(|c| HINT_CHAINS.contains(&c))
        })
    };
    let rules = |text: &str| text.lines().filter(|l| l.starts_with("-A ")).count();
    match (legacy, nft) {
        (None, None) => None,
        (Some(_), None) => Some(IptablesBackend::Legacy),
        (None, Some(_)) => Some(IptablesBackend::Nft),
        (Some(legacy), Some(nft)) => {
            if has_hint(nft) {
                Some(IptablesBackend::Nft)
            } else if has_hint(legacy) {
                Some(IptablesBackend::Legacy)
            } else {
                let legacy_rules = rules(legacy);
                if legacy_rules >= LEGACY_RULES_IN_USE || legacy_rules >= rules(nft) {
                    Some(IptablesBackend::Legacy)
                } else {
                    Some(IptablesBackend::Nft)
                }
            }
        }
    }
}

/// The backend an `iptables -V` (or `ip6tables -V`) line names: `iptables v1.8.9 (nf_tables)`
/// or `(legacy)`; versions before 1.8 had only legacy.
pub fn from_version(output: &str) -> Option<IptablesBackend> {
    let line = output.lines().find(|l| l.contains("tables v"))?;
    if line.contains("(nf_tables)") {
        Some(IptablesBackend::Nft)
    } else if line.contains("(legacy)") {
        Some(IptablesBackend::Legacy)
    } else {
        let version = line.split_once(" v")?.1.split_whitespace().next()?;
        let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
        let (major, minor) = (parts.next()??, parts.next()??);
        ((major, minor) < (1, 8)).then_some(IptablesBackend::Legacy)
    }
}

/// The save outputs [`decide`] looks at, so callers parse the chosen backend's rules without
/// running the tools again.
#[derive(Debug, Default)]
pub struct SaveOutputs {
    /// IPv4 and IPv6 `*-legacy-save` output; None when the tools are not installed or failed.
    pub legacy: Option<(String, String)>,
    pub nft: Option<(String, String)>,
    /// Why installed tools failed (a kernel without `ip_tables` fails `iptables-legacy-save`):
    /// such a backend counts as absent.
    pub failures: Vec<CommandError>,
}

impl SaveOutputs {
    pub fn decide(&self) -> Option<IptablesBackend> {
        let joined = |o: &Option<(String, String)>| o.as_ref().map(|(v4, v6)| format!("{v4}\n{v6}"));
        decide(joined(&self.legacy).as_deref(), joined(&self.nft).as_deref())
    }

    /// The (IPv4, IPv6) rules of `backend`.
    pub fn of(&self, backend: IptablesBackend) -> Option<&(String, String)> {
        match backend {
            IptablesBackend::Legacy => self.legacy.as_ref(),
            IptablesBackend::Nft => self.nft.as_ref(),
        }
    }
}

/// Runs both backends' save tools (all tables: the hint chains are in `mangle`; without `-t`,
/// nothing is created in a backend that has no tables) in `src`'s namespace.
pub async fn save_outputs(src: &SourceNs) -> SaveOutputs {
    async fn both(
        src: &SourceNs,
        backend: IptablesBackend,
    ) -> Result<Option<(String, String)>, CommandError> {
        let (v4, v6) = backend.save_commands();
        let (a, b) = tokio::join!(
            command::output(src, v4, &[], COMMAND_TIMEOUT),
            command::output(src, v6, &[], COMMAND_TIMEOUT)
        );
        match (a, b) {
            (Ok(a), Ok(b)) => Ok(Some((a, b))),
            (Err(e), _) | (_, Err(e)) if e.is_not_installed() => Ok(None),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }
    let (legacy, nft) = tokio::join!(both(src, IptablesBackend::Legacy), both(src, IptablesBackend::Nft));
    let mut out = SaveOutputs::default();
    match legacy {
        Ok(l) => out.legacy = l,
        Err(e) => out.failures.push(e),
    }
    match nft {
        Ok(n) => out.nft = n,
        Err(e) => out.failures.push(e),
    }
    out
}

/// The backend `src`'s namespace uses: [`decide`] over both backends' rules, or, when the
/// `*-legacy-save`/`*-nft-save` tools are missing, what `iptables -V` says. An error only when
/// no backend could be read.
pub async fn detect(src: &SourceNs) -> Result<Option<IptablesBackend>, CommandError> {
    let mut outputs = save_outputs(src).await;
    if let Some(backend) = outputs.decide() {
        return Ok(Some(backend));
    }
    if !outputs.failures.is_empty() {
        return Err(outputs.failures.swap_remove(0));
    }
    let version = command::output(src, "iptables", &["-V"], COMMAND_TIMEOUT).await?;
    Ok(from_version(&version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save(chains: &[&str], rules: usize) -> String {
        let mut s = String::from("*mangle\n");
        for c in chains {
            s.push_str(&format!(":{c} - [0:0]\n"));
        }
        for i in 0..rules {
            s.push_str(&format!("-A INPUT -s 10.0.0.{i}/32 -j ACCEPT\n"));
        }
        s.push_str("COMMIT\n");
        s
    }

    #[test]
    fn decides_like_iptables_wrappers() {
        use IptablesBackend::{Legacy, Nft};
        let hint = ["KUBE-IPTABLES-HINT"];
        let canary = ["KUBE-KUBELET-CANARY"];
        // (what, legacy save output, nft save output, decision)
        type Case = (&'static str, Option<String>, Option<String>, Option<IptablesBackend>);
        let cases: &[Case] = &[
            ("no tools", None, None, None),
            ("only legacy tools", Some(save(&[], 0)), None, Some(Legacy)),
            ("only nft tools", None, Some(save(&[], 0)), Some(Nft)),
            ("nft hint wins over legacy rules", Some(save(&[], 50)), Some(save(&hint, 0)), Some(Nft)),
            ("legacy hint wins over nft rules", Some(save(&canary, 0)), Some(save(&[], 50)), Some(Legacy)),
            ("ten legacy rules mean legacy", Some(save(&[], 10)), Some(save(&[], 40)), Some(Legacy)),
            ("more nft rules mean nft", Some(save(&[], 3)), Some(save(&[], 4)), Some(Nft)),
            ("a tie is legacy", Some(save(&[], 2)), Some(save(&[], 2)), Some(Legacy)),
            ("nothing anywhere is legacy", Some(String::new()), Some(String::new()), Some(Legacy)),
        ];
        for (what, legacy, nft, want) in cases {
            assert_eq!(decide(legacy.as_deref(), nft.as_deref()), *want, "{what}");
        }
    }

    #[test]
    fn the_lab_nodes_use_nft() {
        // This machine's iptables is iptables-nft; the lab's rules are there, legacy is empty.
        let lab = crate::inspect::testing::fixture("lab-node-1-iptables.save");
        assert_eq!(decide(Some(""), Some(&lab)), Some(IptablesBackend::Nft));
    }

    #[test]
    fn versions() {
        let cases = [
            ("iptables v1.8.9 (nf_tables)", Some(IptablesBackend::Nft)),
            ("iptables v1.8.7 (legacy)\n", Some(IptablesBackend::Legacy)),
            ("iptables v1.6.1", Some(IptablesBackend::Legacy)),
            ("iptables v1.8.4", None),
            ("ip6tables v1.8.9 (nf_tables)", Some(IptablesBackend::Nft)),
            ("", None),
            ("iptables vX", None),
        ];
        for (output, want) in cases {
            assert_eq!(from_version(output), want, "{output:?}");
        }
    }

    #[test]
    fn save_outputs_decide_over_both_families() {
        let outputs = SaveOutputs {
            legacy: Some((String::new(), String::new())),
            nft: Some((save(&[], 1), save(&[], 1))),
            failures: Vec::new(),
        };
        assert_eq!(outputs.decide(), Some(IptablesBackend::Nft));
        assert_eq!(outputs.of(IptablesBackend::Legacy), Some(&(String::new(), String::new())));
    }
}
