//! Host-side bindings of the `coffer:plugin` contract, generated from `wit/`.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::coffer::plugin::types;
