//! Matching commands and paths against declared capabilities. The host enforces these at every
//! call; the test harness applies the same rules so a plugin's tests catch a missing declaration.

use globset::{Glob, GlobBuilder, GlobMatcher};

use crate::types::{Capabilities, CommandPattern, Effect};

/// A compiled set of capabilities.
#[derive(Clone, Debug)]
pub struct CapabilityMatcher {
    commands: Vec<(String, Vec<ArgPattern>, Effect)>,
    paths: Vec<GlobMatcher>,
    /// The patterns as written, to tell a declaration granted word for word.
    source: Capabilities,
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

/// Check an artifact-name glob (`*` any text, `?` one character), as in
/// [`crate::PluginInfo::cluster_artifacts`].
pub fn check_name_pattern(pattern: &str) -> Result<(), BadPattern> {
    glob(pattern, true).map(drop)
}

/// Whether artifact `name` matches the glob `pattern` (an invalid pattern matches nothing).
pub fn name_matches(pattern: &str, name: &str) -> bool {
    glob(pattern, true).is_ok_and(|g| g.is_match(name))
}

/// A value as a TOML string that pastes into a deployment file as is: a literal string
/// (`'…'`, backslashes kept) unless it holds a `'` or a line break, then an escaped one.
pub fn toml_string(s: &str) -> String {
    if !s.contains(|c: char| c == '\'' || c.is_control()) {
        return format!("'{s}'");
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The grant entry (`commands = [...]`) for a declared command pattern: the program and its
/// argument globs, separated by spaces, as a TOML string.
pub fn grant_entry(c: &CommandPattern) -> String {
    let words: Vec<&str> = std::iter::once(c.program.as_str())
        .chain(c.args.iter().map(String::as_str))
        .collect();
    toml_string(&words.join(" "))
}

/// What of `declared` the grant `granted` does not cover, as `(commands, paths)` grant
/// entries ready to paste: a declared pattern is covered when the grant allows it taken
/// literally (a grant of the same glob, or a wider one).
pub fn ungranted(
    declared: &Capabilities,
    granted: &CapabilityMatcher,
) -> (Vec<String>, Vec<String>) {
    let commands = declared
        .commands
        .iter()
        .filter(|c| {
            let argv: Vec<String> = std::iter::once(c.program.clone())
                .chain(c.args.iter().cloned())
                .collect();
            let same = |g: &&CommandPattern| g.program == c.program && g.args == c.args;
            !granted.source.commands.iter().any(|g| same(&g)) && !granted.allows_command(&argv)
        })
        .map(grant_entry)
        .collect();
    let paths = declared
        .paths
        .iter()
        .filter(|p| !granted.source.paths.contains(p) && !granted.allows_path(p))
        .map(|p| toml_string(p))
        .collect();
    (commands, paths)
}

impl CapabilityMatcher {
    /// Compile declared capabilities.
    pub fn new(caps: &Capabilities) -> Result<Self, BadPattern> {
        let commands = caps
            .commands
            .iter()
            .map(
                |CommandPattern {
                     program,
                     args,
                     effect,
                 }| {
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
                    Ok((program.clone(), args, *effect))
                },
            )
            .collect::<Result<Vec<_>, BadPattern>>()?;
        let paths = caps
            .paths
            .iter()
            .map(|p| glob(p, true))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            commands,
            paths,
            source: caps.clone(),
        })
    }

    /// Whether `argv` matches one of the declared commands.
    pub fn allows_command(&self, argv: &[String]) -> bool {
        self.matching(argv).next().is_some()
    }

    /// Whether `argv` may change state: it matches a command declared [`Effect::Changes`], or
    /// none declared [`Effect::Reads`].
    pub fn changes_state(&self, argv: &[String]) -> bool {
        let mut reads = false;
        for effect in self.matching(argv) {
            match effect {
                Effect::Changes => return true,
                Effect::Reads => reads = true,
            }
        }
        !reads
    }

    /// The effects of the declared commands `argv` matches.
    fn matching<'a>(&'a self, argv: &'a [String]) -> impl Iterator<Item = Effect> + 'a {
        let split = argv.split_first();
        self.commands
            .iter()
            .filter_map(move |(p, patterns, effect)| {
                let (program, args) = split?;
                matches(p, patterns, program, args).then_some(*effect)
            })
    }

    /// Whether the absolute `path` (or a directory above it, for a restore target) may be
    /// archived or restored.
    pub fn allows_path(&self, path: &str) -> bool {
        path.starts_with('/') && self.paths.iter().any(|g| g.is_match(path))
    }
}

/// Whether `program args` matches the pattern `p patterns`.
fn matches(p: &str, patterns: &[ArgPattern], program: &str, args: &[String]) -> bool {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::literal;

    fn caps() -> CapabilityMatcher {
        CapabilityMatcher::new(&Capabilities {
            commands: vec![
                CommandPattern {
                    program: "redis-cli".into(),
                    args: vec!["-h".into(), "*".into(), "BGSAVE".into()],
                    effect: Effect::Changes,
                },
                CommandPattern {
                    program: "mysqldump".into(),
                    args: vec!["--defaults-file=/run/coffer/*".into(), "**".into()],
                    effect: Effect::Reads,
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
    fn a_command_changes_state_unless_only_reads_patterns_match_it() {
        let mut c = caps();
        assert!(c.changes_state(&argv("redis-cli -h 127.0.0.1 BGSAVE")));
        assert!(!c.changes_state(&argv("mysqldump --defaults-file=/run/coffer/x -A")));
        assert!(c.changes_state(&argv("rm -rf /")), "undeclared: changes");
        c = CapabilityMatcher::new(&Capabilities {
            commands: vec![
                CommandPattern {
                    program: "redis-cli".into(),
                    args: vec!["**".into()],
                    effect: Effect::Reads,
                },
                CommandPattern {
                    program: "redis-cli".into(),
                    args: vec!["FLUSHALL".into()],
                    effect: Effect::Changes,
                },
            ],
            paths: vec![],
        })
        .unwrap();
        assert!(!c.changes_state(&argv("redis-cli PING")));
        assert!(c.changes_state(&argv("redis-cli FLUSHALL")), "changes wins");
    }

    #[test]
    fn a_literal_argument_matches_itself_only() {
        let script = r#"for f in "$1"/*.rdb; do [ -e "$f" ] && echo ${f%.rdb}\n; done"#;
        let c = CapabilityMatcher::new(&Capabilities {
            commands: vec![CommandPattern {
                program: "sh".into(),
                args: vec!["-c".into(), literal(script), "*".into()],
                effect: Effect::Changes,
            }],
            paths: vec![],
        })
        .unwrap();
        let run = |s: &str| vec!["sh".into(), "-c".into(), s.to_string(), "/x".into()];
        assert!(c.allows_command(&run(script)));
        assert!(!c.allows_command(&run("rm -rf /")));
        assert!(!c.allows_command(&run(&script.replace("*.rdb", "x.rdb"))));
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

    #[test]
    fn what_a_grant_lacks_is_listed_as_lines_that_paste() {
        let declared = Capabilities {
            commands: vec![
                CommandPattern {
                    program: "find".into(),
                    args: vec!["*".into(), "-printf".into(), r"%f\t%m\n".into()],
                    effect: Effect::Reads,
                },
                CommandPattern {
                    program: "redis-cli".into(),
                    args: vec!["-h".into(), "*".into(), "BGSAVE".into()],
                    effect: Effect::Changes,
                },
            ],
            paths: vec!["/var/lib/glance".into(), "/srv/node".into()],
        };
        // The grant holds redis-cli (a wider glob), /srv/node, and find word for word.
        let mut granted = caps();
        let (commands, paths) = ungranted(&declared, &granted);
        assert_eq!(commands, [r"'find * -printf %f\t%m\n'"]);
        assert_eq!(paths, ["'/var/lib/glance'"]);
        granted.source.commands.push(declared.commands[0].clone());
        assert!(ungranted(&declared, &granted).0.is_empty());
        // A quote or a control character needs an escaped string.
        assert_eq!(toml_string("it's"), r#""it's""#);
        assert_eq!(toml_string("a\tb\\"), r#""a\tb\\""#);
    }
}
