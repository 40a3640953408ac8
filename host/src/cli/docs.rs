//! `coffer completions SHELL` and `coffer man`: shell completions and the manual page, made
//! from the same clap definitions as the command line itself, so they never drift from it.

use std::process::ExitCode;

use clap::CommandFactory as _;

use super::{Cli, exit};

/// Which shell.
#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

/// Print the completion script for a shell.
pub fn completions(args: &CompletionsArgs) -> ExitCode {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "coffer", &mut std::io::stdout());
    ExitCode::from(exit::OK)
}

/// Print the manual page (roff), the subcommands' pages after the main one.
pub fn man() -> ExitCode {
    let cmd = Cli::command();
    let mut out = Vec::new();
    let rendered = clap_mangen::Man::new(cmd.clone())
        .render(&mut out)
        .and_then(|()| {
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                let name = format!("coffer-{}", sub.get_name());
                let page = sub.clone().display_name(name);
                clap_mangen::Man::new(page).render(&mut out)?;
            }
            Ok(())
        });
    match rendered {
        Ok(()) => {
            use std::io::Write as _;
            let _ = std::io::stdout().write_all(&out);
            ExitCode::from(exit::OK)
        }
        Err(e) => {
            eprintln!("error: rendering the manual page: {e}");
            ExitCode::from(exit::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_and_the_manual_name_every_subcommand() {
        let mut script = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "coffer",
            &mut script,
        );
        let script = String::from_utf8(script).unwrap();
        for sub in [
            "backup",
            "restore",
            "forget",
            "import-inventory",
            "--retry-lock",
        ] {
            assert!(script.contains(sub), "no {sub} in the bash completions");
        }
        let mut page = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut page)
            .unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(
            page.starts_with(".ie") || page.contains(".TH coffer"),
            "{page}"
        );
        assert!(
            page.contains("Exit codes"),
            "the exit codes are in the page"
        );
    }
}
