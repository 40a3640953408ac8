//! The deployment file as TOML spells it: one serde type per section, every field
//! spanned where a later check needs its line. Nothing here is validated; [`super::check`]
//! does that.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use coffer_runtime::Limits;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct File {
    pub(super) name: Option<Spanned<String>>,
    pub(super) repository: Option<RepositorySection>,
    pub(super) plugin_dir: Option<PathBuf>,
    pub(super) cache_dir: Option<PathBuf>,
    pub(super) limits: Option<LimitsSection>,
    pub(super) ssh: Option<SshSection>,
    pub(super) access: Option<Spanned<AccessSection>>,
    pub(super) plugin_signing: Option<SigningSection>,
    pub(super) undercloud: Option<UndercloudSection>,
    pub(super) run: Option<RunSection>,
    pub(super) retention: Option<Spanned<coffer_repository::Retention>>,
    pub(super) notify: Option<NotifySection>,
    pub(super) metrics: Option<MetricsSection>,
    pub(super) drill: Option<DrillSection>,
    #[serde(default)]
    pub(super) node: Vec<NodeSection>,
    /// What every node of a role shares (`[role.controller] become = "sudo"`).
    #[serde(default)]
    pub(super) role: BTreeMap<Spanned<String>, RoleSection>,
    #[serde(default)]
    pub(super) plugin: BTreeMap<Spanned<String>, PluginSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RoleSection {
    #[serde(rename = "become")]
    pub(super) escalation: Option<Spanned<String>>,
    pub(super) become_user: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RepositorySection {
    pub(super) path: Option<PathBuf>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) node: Option<Spanned<String>>,
    pub(super) key: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct LimitsSection {
    pub(super) memory_mib: Option<u64>,
    pub(super) cpu_seconds: Option<u64>,
    pub(super) call_timeout_seconds: Option<u64>,
    pub(super) command_timeout_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct DrillSection {
    pub(super) node: Option<Spanned<String>>,
    pub(super) scratch: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct MetricsSection {
    pub(super) textfile: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct NotifySection {
    pub(super) command: Spanned<Vec<String>>,
    #[serde(default)]
    pub(super) always: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct UndercloudSection {
    pub(super) reinstall_command: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct SigningSection {
    #[serde(default)]
    pub(super) trusted_keys: Vec<PathBuf>,
}

impl LimitsSection {
    /// Override `limits` with what this section sets.
    pub(super) fn apply(&self, limits: &mut Limits) {
        if let Some(m) = self.memory_mib {
            limits.memory_bytes = (m as usize) << 20;
        }
        if let Some(s) = self.cpu_seconds {
            limits.cpu = Duration::from_secs(s);
        }
        if let Some(s) = self.call_timeout_seconds {
            limits.call_timeout = Duration::from_secs(s);
        }
        if let Some(s) = self.command_timeout_seconds {
            limits.commands.default_timeout = Duration::from_secs(s);
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RunSection {
    pub(super) parallel_plugins: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct SshSection {
    pub(super) known_hosts: Option<PathBuf>,
    pub(super) parallel: Option<usize>,
    pub(super) connect_timeout_seconds: Option<u64>,
    #[serde(rename = "become")]
    pub(super) escalation: Option<Spanned<String>>,
    pub(super) become_user: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct AccessSection {
    #[serde(default)]
    pub(super) temporary: bool,
    pub(super) from: Option<String>,
    pub(super) ttl_minutes: Option<u64>,
    pub(super) authorized_keys: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct NodeSection {
    pub(super) name: Spanned<String>,
    pub(super) address: Spanned<String>,
    #[serde(default)]
    pub(super) roles: Vec<String>,
    pub(super) user: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) key: Option<PathBuf>,
    #[serde(rename = "become")]
    pub(super) escalation: Option<Spanned<String>>,
    pub(super) become_user: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct PluginSection {
    #[serde(default = "yes")]
    pub(super) enabled: bool,
    pub(super) roles: Option<Vec<String>>,
    #[serde(default)]
    pub(super) settings: BTreeMap<String, Spanned<toml::Value>>,
    pub(super) grant: Option<Spanned<GrantSection>>,
    pub(super) container: Option<Spanned<ContainerSection>>,
    pub(super) limits: Option<LimitsSection>,
    pub(super) members_down: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct ContainerSection {
    pub(super) runtime: String,
    #[serde(default)]
    pub(super) name: String,
    pub(super) filter: Option<String>,
    pub(super) roles: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct GrantSection {
    #[serde(default)]
    pub(super) commands: Vec<String>,
    #[serde(default)]
    pub(super) paths: Vec<String>,
    #[serde(default)]
    pub(super) role: BTreeMap<String, RoleGrantSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RoleGrantSection {
    #[serde(default)]
    pub(super) commands: Vec<String>,
    #[serde(default)]
    pub(super) paths: Vec<String>,
}

pub(super) fn yes() -> bool {
    true
}
