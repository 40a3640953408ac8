//! Contract 2.x, the current one: host-side bindings generated from `wit/plugin.wit`. Its
//! imports are implemented by [`crate::capabilities`]; its exports are called directly.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "plugin",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::coffer::plugin::types;
