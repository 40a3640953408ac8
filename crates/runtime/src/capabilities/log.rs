//! The `log` capability: a plugin's messages and progress, as run events.

use super::HostState;
use crate::contract::v2::coffer::plugin::log;
use crate::report::{Event, Level};

impl log::Host for HostState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        self.env.reporter.report(Event::Log {
            plugin: self.env.plugin.name.clone(),
            level,
            message,
        });
        Ok(())
    }

    async fn progress(
        &mut self,
        step: String,
        done: u64,
        total: Option<u64>,
    ) -> wasmtime::Result<()> {
        self.env.reporter.report(Event::Progress {
            plugin: self.env.plugin.name.clone(),
            step,
            done,
            total,
        });
        Ok(())
    }
}
