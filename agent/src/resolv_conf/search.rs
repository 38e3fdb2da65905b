//! Search-list expansion: the absolute names glibc's `res_search` asks for, in its order.
//!
//! * A name with a trailing dot is absolute: only itself.
//! * A name with at least `ndots` dots is tried as-is first, then with each search domain.
//! * Otherwise each search domain first, then the name as-is last, except for a single-label
//!   name under `options no-tld-query` once a search list was tried.
//!
//! Duplicates are kept (glibc asks twice). A candidate longer than a DNS name can be (253
//! characters) is left out; glibc would end the search list there instead.

use netdiag_model::dns::DnsName;

use super::ResolvConf;

/// One name to ask for, absolute (with the trailing dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    /// The name as given (not extended with a search domain).
    pub as_is: bool,
}

/// The names glibc tries for `name`, in order, as absolute names (`demo-pd.tidb.svc.cluster.local.`).
pub fn candidates(name: &DnsName, conf: &ResolvConf) -> Vec<String> {
    search_order(name, conf).into_iter().map(|c| c.name).collect()
}

/// Like [`candidates`], marking which candidate is the name as given.
pub fn search_order(name: &DnsName, conf: &ResolvConf) -> Vec<Candidate> {
    let body = name.as_str().strip_suffix('.').unwrap_or(name.as_str());
    let as_is = Candidate { name: format!("{body}."), as_is: true };
    if name.is_fully_qualified() {
        return vec![as_is];
    }
    let dots = name.dots();
    let as_is_first = dots >= usize::from(conf.options.ndots);
    let mut out = Vec::with_capacity(conf.search.len() + 1);
    if as_is_first {
        out.push(as_is.clone());
    }
    for domain in &conf.search {
        let full = format!("{body}.{domain}.");
        if full.len() - 1 <= DnsName::MAX_LEN {
            out.push(Candidate { name: full, as_is: false });
        }
    }
    let searched = !conf.search.is_empty();
    let skip_as_is = dots == 0 && searched && conf.options.no_tld_query;
    if !as_is_first && !skip_as_is {
        out.push(as_is);
    }
    out
}
