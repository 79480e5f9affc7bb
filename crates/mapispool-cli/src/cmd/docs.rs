//! `mapispool completions` and `mapispool man`: generated from the clap definitions in
//! `cli.rs`, so help, completions and the man page never disagree.

use std::io::Write;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit::Exit;

/// Prints the completion script for `shell` to stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<Exit> {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "mapispool", &mut out);
    write_stdout(&out)
}

/// Prints one man page for the whole tool: the top-level page (options, the list of commands),
/// then each command's synopsis and options as a subsection, as ripgrep's single page does —
/// one `man mapispool` answers every flag.
pub fn man() -> Result<Exit> {
    let command = Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut out)?;
    out.extend_from_slice(b".SH \"COMMANDS IN DETAIL\"\n");
    // Unbuilt subcommands: only their own options, not the global ones repeated each time.
    for sub in command.get_subcommands() {
        let name = format!("mapispool {}", sub.get_name());
        let man = clap_mangen::Man::new(sub.clone().bin_name(name.clone()));
        let mut part = Vec::new();
        man.render_synopsis_section(&mut part)?;
        man.render_description_section(&mut part)?;
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(&mut part)?;
        }
        let part = String::from_utf8_lossy(&part);
        // Each command is a subsection of this one: its own section headings become paragraph
        // breaks under the command's name.
        let body: String = part
            .lines()
            .map(|l| {
                if l.starts_with(".SH") {
                    ".PP\n".to_string()
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        out.extend_from_slice(format!(".SS \"{name}\"\n{body}").as_bytes());
    }
    write_stdout(&out)
}

fn write_stdout(bytes: &[u8]) -> Result<Exit> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(Exit::Done),
        // `mapispool man | head`: a closed pipe is the reader being done, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Exit::Done),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}
