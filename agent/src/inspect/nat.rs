//! The NAT part of a node inspection: reads kube-proxy's rules in both proxy modes from inside
//! the node's namespace — `iptables-save`/`ip6tables-save` of the backend the node uses, and the
//! `kube-proxy` tables through `nft -j` — parses them, gathers the frontends and says which mode
//! the rules belong to. The same reads give the node firewall's drop rules (iptables' `filter`
//! table, and the node's own nftables tables: `nft_filter`) and the NAT rules outside
//! kube-proxy's chains (`iptables_nat_rules`, `nft_nat`).

use netdiag_model::inspect::NatService;
use netdiag_model::inventory::ProxyMode;

use crate::source::SourceNs;

use super::command::{self, COMMAND_TIMEOUT, CommandError};
use super::error_chain;
use super::iptables_backend::{self, IptablesBackend};
use super::iptables_nat;
use super::iptables_nat::sort_services;
use super::nft_filter;
use super::nft_kube_proxy::{self, NftJsonError};
use super::nft_nat;

/// What the NAT inspection found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatInspection {
    pub services: Vec<NatService>,
    /// Which mode's rules the node holds; None when it holds kube-proxy rules of neither.
    pub proxy_mode: Option<ProxyMode>,
    /// The iptables backend the rules were read from, when iptables could be read.
    pub iptables_backend: Option<IptablesBackend>,
    /// What could not be read, one line each, naming the step and what to do.
    pub errors: Vec<String>,
    /// The node firewall's drop and reject rules: the `filter` table of the same `*-save`
    /// output, then the node's own nftables tables.
    pub filter_drops: Vec<netdiag_model::inspect::FilterDrop>,
    /// The NAT rules outside kube-proxy's chains: iptables' `nat` table, then the node's own
    /// nftables tables' `nat` chains.
    pub nat_rules: Vec<netdiag_model::inspect::NatRule>,
}

/// Why one NAT source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NatError {
    #[error("reading kube-proxy's iptables rules")]
    Iptables(#[source] CommandError),
    #[error("listing nftables tables")]
    NftList(#[source] CommandError),
    #[error("reading nftables table {family} {table}", table = nft_kube_proxy::TABLE)]
    NftTable {
        family: &'static str,
        #[source]
        error: CommandError,
    },
    #[error("reading nftables table {family} {table} for its drop and NAT rules")]
    NftOwnTable {
        family: String,
        table: String,
        #[source]
        error: CommandError,
    },
    #[error("parsing `nft -j` output")]
    NftJson(#[source] NftJsonError),
}

/// Reads and parses kube-proxy's NAT rules in `src`'s namespace, both families, both modes.
pub async fn inspect_nat(src: &SourceNs) -> NatInspection {
    let (iptables, nft) = tokio::join!(iptables_rules(src), nft_rules(src));
    let mut out = NatInspection::default();
    let mut iptables_mode = false;
    let mut nft_mode = false;
    match iptables {
        Ok(Some(read)) => {
            iptables_mode = read.kube_proxy;
            out.iptables_backend = read.backend;
            out.services.extend(read.services);
            out.filter_drops = read.filter_drops;
            out.nat_rules = read.nat_rules;
        }
        Ok(None) => {}
        Err(e) => out.errors.push(error_chain(&e)),
    }
    match nft {
        Ok(read) => {
            nft_mode = read.kube_proxy;
            out.services.extend(read.services);
            out.filter_drops.extend(read.filter_drops);
            out.nat_rules.extend(read.nat_rules);
            out.errors.extend(read.errors.iter().map(|e| error_chain(e)));
        }
        Err(e) => out.errors.push(error_chain(&e)),
    }
    out.proxy_mode = match (iptables_mode, nft_mode) {
        (true, true) => {
            out.errors.push(
                "kube-proxy rules of both modes are present (iptables KUBE-SERVICES and nftables table \
                 kube-proxy): one is stale from a previous proxy mode; the services of both are reported"
                    .to_owned(),
            );
            Some(ProxyMode::Nftables)
        }
        (true, false) => Some(ProxyMode::Iptables),
        (false, true) => Some(ProxyMode::Nftables),
        (false, false) => None,
    };
    sort_services(&mut out.services);
    out
}

/// kube-proxy's iptables rules, read from the backend the node uses.
#[derive(Debug)]
struct IptablesRead {
    backend: Option<IptablesBackend>,
    services: Vec<NatService>,
    kube_proxy: bool,
    filter_drops: Vec<netdiag_model::inspect::FilterDrop>,
    nat_rules: Vec<netdiag_model::inspect::NatRule>,
}

/// The rules of the backend the node uses. Images without the `*-legacy-save`/`*-nft-save`
/// tools fall back to `iptables-save`/`ip6tables-save`, whichever backend they are. An error
/// only when no backend could be read.
async fn iptables_rules(src: &SourceNs) -> Result<Option<IptablesRead>, NatError> {
    let mut outputs = iptables_backend::save_outputs(src).await;
    let (backend, v4, v6) = match outputs.decide() {
        // The other backend's tools may have failed: it holds no rules the node uses.
        Some(backend) => match outputs.of(backend) {
            Some((v4, v6)) => (Some(backend), v4.clone(), v6.clone()),
            None => return Ok(None),
        },
        None if !outputs.failures.is_empty() => {
            return Err(NatError::Iptables(outputs.failures.swap_remove(0)));
        }
        None => fallback(src).await?,
    };
    // One family each: a node port of each (both with no address) are two frontends.
    let mut services = iptables_nat::parse(&v4);
    services.extend(iptables_nat::parse(&v6));
    let kube_proxy = iptables_nat::has_kube_proxy_rules(&v4) || iptables_nat::has_kube_proxy_rules(&v6);
    let mut filter_drops = super::iptables_filter::parse(&v4);
    filter_drops.extend(super::iptables_filter::parse(&v6));
    let mut nat_rules = super::iptables_nat_rules::parse(&v4);
    nat_rules.extend(super::iptables_nat_rules::parse(&v6));
    Ok(Some(IptablesRead { backend, services, kube_proxy, filter_drops, nat_rules }))
}

/// `iptables-save` and `ip6tables-save`, with the backend `iptables -V` names (if it does).
async fn fallback(src: &SourceNs) -> Result<(Option<IptablesBackend>, String, String), NatError> {
    let (v4, v6, version) = tokio::join!(
        command::output(src, "iptables-save", &[], COMMAND_TIMEOUT),
        command::output(src, "ip6tables-save", &[], COMMAND_TIMEOUT),
        command::output(src, "iptables", &["-V"], COMMAND_TIMEOUT),
    );
    let v4 = v4.map_err(NatError::Iptables)?;
    let v6 = v6.map_err(NatError::Iptables)?;
    let backend = version.ok().and_then(|v| iptables_backend::from_version(&v));
    Ok((backend, v4, v6))
}

/// What the node's nftables tables hold: kube-proxy's services (and whether it has a table),
/// the drop and NAT rules of the tables no other reader owns, and what could not be read.
#[derive(Debug, Default)]
struct NftRead {
    services: Vec<NatService>,
    kube_proxy: bool,
    filter_drops: Vec<netdiag_model::inspect::FilterDrop>,
    nat_rules: Vec<netdiag_model::inspect::NatRule>,
    errors: Vec<NatError>,
}

/// Lists the tables once, then reads kube-proxy's and the admin's own ones (none on most
/// nodes: no further `nft` run).
async fn nft_rules(src: &SourceNs) -> Result<NftRead, NatError> {
    let listing = command::output(src, "nft", &["-j", "list", "tables"], COMMAND_TIMEOUT)
        .await
        .map_err(NatError::NftList)?;
    let families = nft_kube_proxy::kube_proxy_tables(&listing).map_err(NatError::NftJson)?;
    let own = nft_filter::tables_to_read(&listing).map_err(NatError::NftJson)?;
    let mut read = NftRead { kube_proxy: !families.is_empty(), ..NftRead::default() };
    for family in &families {
        let family = family.as_str();
        match command::output(
            src,
            "nft",
            &["-j", "list", "table", family, nft_kube_proxy::TABLE],
            COMMAND_TIMEOUT,
        )
        .await
        {
            Ok(json) => match nft_kube_proxy::parse(&json) {
                Ok(found) => read.services.extend(found),
                Err(e) => read.errors.push(NatError::NftJson(e)),
            },
            Err(error) => read.errors.push(NatError::NftTable { family, error }),
        }
    }
    for (family, table) in &own {
        match command::output(src, "nft", &["-j", "list", "table", family, table], COMMAND_TIMEOUT).await {
            Ok(json) => match (nft_filter::parse(&json), nft_nat::parse(&json)) {
                (Ok(drops), Ok(rules)) => {
                    read.filter_drops.extend(drops);
                    read.nat_rules.extend(rules);
                }
                (Err(e), _) | (_, Err(e)) => read.errors.push(NatError::NftJson(e)),
            },
            Err(error) => read.errors.push(NatError::NftOwnTable {
                family: family.clone(),
                table: table.clone(),
                error,
            }),
        }
    }
    read.filter_drops.truncate(netdiag_model::limits::MAX_FILTER_DROPS);
    read.nat_rules.truncate(netdiag_model::limits::MAX_NAT_RULES);
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_name_every_step() {
        let err = NatError::NftTable { family: "ip6", error: CommandError::NotInstalled { program: "nft" } };
        assert_eq!(
            error_chain(&err),
            "reading nftables table ip6 kube-proxy: nft is not installed where the agent runs: add it to the agent's image"
        );
    }
}
