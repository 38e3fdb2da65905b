//! The static inventory file (`--inventory FILE`, the lab's `inventory.yaml`) as the collector
//! and agents read it: YAML (or JSON) through serde-saphyr, then the reference checks.
//! Properties: no panic, no hang, no unbounded memory (YAML aliases included); whatever is
//! accepted is written back by `to_yaml` and reads back the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netdiag_model::inventory::Inventory;

fuzz_target!(|data: &[u8]| {
    let text = netdiag_fuzz::text(data);
    match Inventory::from_yaml(&text) {
        Ok(inventory) => {
            let again = Inventory::from_yaml(&inventory.to_yaml());
            assert_eq!(again.as_ref().ok(), Some(&inventory), "to_yaml → from_yaml: {again:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
