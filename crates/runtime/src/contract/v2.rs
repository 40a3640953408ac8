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

/// How the repository records an artifact's kind, as the contract says it: the one place the
/// two meet.
impl From<coffer_repository::ArtifactKind> for types::ArtifactKind {
    fn from(kind: coffer_repository::ArtifactKind) -> Self {
        match kind {
            coffer_repository::ArtifactKind::Stream => Self::Stream,
            coffer_repository::ArtifactKind::Paths => Self::Paths,
        }
    }
}
