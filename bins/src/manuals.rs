//! What every binary prints about itself: shell completions (clap_complete) and man pages
//! (clap_mangen), made from its own clap definition so they never drift from its flags.
//!
//! A binary adds `#[command(flatten)] Manuals(Manuals)` to its subcommands and calls
//! [`Manuals::print`] when one is given: `s2uc completions bash`, `s2uc man`,
//! `s2uc man --out-dir DIR` (one page per subcommand).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Subcommand};
use clap_complete::Shell;

/// The subcommands that print a binary's completions and manual.
#[derive(Subcommand, Debug, Clone)]
pub enum Manuals {
    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell): load it with
    /// `source <(NAME completions bash)`, or save it where the shell loads completions.
    Completions {
        /// The shell.
        shell: Shell,
    },
    /// Print the man page (roff; `… man | man -l -`), or write one page per subcommand into
    /// a folder.
    Man {
        /// Write NAME.1 and NAME-SUBCOMMAND.1 into this folder instead.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

impl Manuals {
    /// Prints what was asked for the binary whose command line is `C`; exit status 0, or 1
    /// when it cannot be written.
    pub fn print<C: CommandFactory>(&self) -> ExitCode {
        let mut cmd = C::command();
        let name = cmd.get_name().to_owned();
        let done = match self {
            Self::Completions { shell } => {
                let mut out = Vec::new();
                clap_complete::generate(*shell, &mut cmd, name.clone(), &mut out);
                std::io::stdout().lock().write_all(&out)
            }
            Self::Man { out_dir: None } => {
                let mut out = Vec::new();
                clap_mangen::Man::new(cmd).render(&mut out).and_then(|()| std::io::stdout().lock().write_all(&out))
            }
            Self::Man { out_dir: Some(dir) } => {
                std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(cmd, dir))
            }
        };
        match done {
            Ok(()) => ExitCode::SUCCESS,
            // A closed pipe (`s2uc man | head`) is not a failure.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{name}: {e}");
                ExitCode::from(crate::EXIT_FAILED)
            }
        }
    }
}
