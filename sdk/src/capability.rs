//! Matching commands and paths against declared capabilities. The host enforces these at every
//! call; the test harness applies the same rules so a plugin's tests catch a missing declaration.

use globset::{Glob, GlobBuilder, GlobMatcher};

use crate::types::{Capabilities, CommandPattern};

/// A compiled set of capabilities.
#[derive(Clone, Debug)]
pub struct CapabilityMatcher {
    commands: Vec<(String, Vec<ArgPattern>)>,
    paths: Vec<GlobMatcher>,
}

#[derive(Clone, Debug)]
enum ArgPattern {
    /// `**`: any remaining arguments.
    Rest,
    /// One argument.
    One(GlobMatcher),
}

/// A pattern that is not a valid glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadPattern {
    /// The pattern.
    pub pattern: String,
    /// Why it is invalid.
    pub reason: String,
}

impl std::fmt::Display for BadPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid pattern `{}`: {}", self.pattern, self.reason)
    }
}

fn glob(pattern: &str, literal_separator: bool) -> Result<GlobMatcher, BadPattern> {
    GlobBuilder::new(pattern)
        .literal_separator(literal_separator)
        .backslash_escape(true)
        .build()
        .map(|g: Glob| g.compile_matcher())
        .map_err(|e| BadPattern {
            pattern: pattern.to_string(),
            reason: e.kind().to_string(),
        })
}

impl CapabilityMatcher {
    /// Compile declared capabilities.
    pub fn new(caps: &Capabilities) -> Result<Self, BadPattern> {
        let commands = caps
            .commands
            .iter()
            .map(|CommandPattern { program, args }| {
                let args = args
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        if a == "**" && i + 1 == args.len() {
                            Ok(ArgPattern::Rest)
                        } else {
                            glob(a, false).map(ArgPattern::One)
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((program.clone(), args))
            })
            .collect::<Result<Vec<_>, BadPattern>>()?;
        let paths = caps
            .paths
            .iter()
            .map(|p| glob(p, true))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { commands, paths })
    }

    /// Whether `argv` matches one of the declared commands.
    pub fn allows_command(&self, argv: &[String]) -> bool {
        let Some((program, args)) = argv.split_first() else {
            return false;
        };
        self.commands.iter().any(|(p, patterns)| {
            if p != program {
                return false;
            }
            let mut i = 0;
            for pat in patterns {
                match pat {
                    ArgPattern::Rest => return true,
                    ArgPattern::One(g) => match args.get(i) {
                        Some(a) if g.is_match(a) => i += 1,
                        _ => return false,
                    },
                }
            }
            i == args.len()
        })
    }

    /// Whether the absolute `path` (or a directory above it, for a restore target) may be
    /// archived or restored.
    pub fn allows_path(&self, path: &str) -> bool {
        path.starts_with('/') && self.paths.iter().any(|g| g.is_match(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> CapabilityMatcher {
        CapabilityMatcher::new(&Capabilities {
            commands: vec![
                CommandPattern {
                    program: "redis-cli".into(),
                    args: vec!["-h".into(), "*".into(), "BGSAVE".into()],
                },
                CommandPattern {
                    program: "mysqldump".into(),
                    args: vec!["--defaults-file=/run/coffer/*".into(), "**".into()],
                },
            ],
            paths: vec!["/etc/**".into(), "/srv/node".into()],
        })
        .unwrap()
    }

    fn argv(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn exact_arity_unless_rest() {
        let c = caps();
        assert!(c.allows_command(&argv("redis-cli -h 127.0.0.1 BGSAVE")));
        assert!(!c.allows_command(&argv("redis-cli -h 127.0.0.1 BGSAVE extra")));
        assert!(!c.allows_command(&argv("redis-cli -h 127.0.0.1 FLUSHALL")));
        assert!(!c.allows_command(&argv("redis-cli")));
        assert!(c.allows_command(&argv(
            "mysqldump --defaults-file=/run/coffer/x --all-databases"
        )));
        assert!(c.allows_command(&argv("mysqldump --defaults-file=/run/coffer/x")));
        assert!(!c.allows_command(&argv("mysql --defaults-file=/run/coffer/x")));
        assert!(!c.allows_command(&[]));
    }

    #[test]
    fn paths_need_a_declared_glob() {
        let c = caps();
        assert!(c.allows_path("/etc/swift/swift.conf"));
        assert!(c.allows_path("/srv/node"));
        assert!(!c.allows_path("/srv/node/d1"));
        assert!(!c.allows_path("/root/.ssh/id_rsa"));
        assert!(!c.allows_path("etc/passwd"));
    }

    #[test]
    fn invalid_globs_are_reported() {
        let err = CapabilityMatcher::new(&Capabilities {
            commands: vec![],
            paths: vec!["/etc/[".into()],
        })
        .unwrap_err();
        assert_eq!(err.pattern, "/etc/[");
    }
}
