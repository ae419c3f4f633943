//! The simulator loaded as a plugin: the cdylib, opened with libloading and entered through
//! `knpu_driver_get_api`, the way the runtime loads vendor drivers. Its state is separate
//! from the statically linked copy in this test binary. (The conformance kit,
//! `knpu-conformance`, runs every driver check on the plugin.)

mod common;

use common::call;
use knpu_driver_abi::*;

#[test]
fn the_plugin_is_a_separate_instance() {
    let plugin = common::plugin();
    let linked = common::linked();
    assert_ne!(
        plugin.table() as *const KnpuDriverApi,
        linked.table() as *const KnpuDriverApi
    );
    // Each instance has its own allocation table: the linked one does not know the plugin's
    // allocation.
    let (dp, dl) = (plugin.device(0), linked.device(0));
    let a = plugin.alloc(dp, 64);
    assert_eq!(call!(linked, mem_free(dl, a)), KNPU_STATUS_INVALID_VALUE);
    plugin.free(dp, a);
}
