//! Host-side bindings of the frozen `coffer:plugin@1.x` contract (`wit/v1/`), for the adapter
//! that serves plugins built against it. Only its exports are used: its imports are served by
//! the 2.x implementation (see [`super::adapter`]).

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit/v1",
    world: "plugin",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::coffer::plugin::types;
