//! `completions` and `man`: shell completion scripts and the man page, generated from the
//! same clap definitions as `--help`, so they cannot drift from the flags.

use std::io::Write as _;

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::exit;

/// `completions SHELL`: the script on stdout.
pub(crate) fn completions(args: CompletionsArgs) -> u8 {
    let mut script = Vec::new();
    // Generated into memory: clap_complete panics when its writer fails (a closed pipe).
    clap_complete::generate(
        args.shell,
        &mut Cli::command(),
        "supersim-bulk",
        &mut script,
    );
    print_all(&script, "the completion script")
}

/// `man`: the roff source of `supersim-bulk(1)` on stdout, the subcommands included.
pub(crate) fn man() -> u8 {
    let mut page = Vec::new();
    if let Err(error) = render_man(&mut page) {
        crate::logs::error(format_args!("cannot render the man page: {error}"));
        return exit::USAGE_OR_CONFIG;
    }
    print_all(&page, "the man page")
}

/// Writes `bytes` to stdout; a reader that went away early (`| head`) is not an error.
fn print_all(bytes: &[u8], what: &str) -> u8 {
    match std::io::stdout().lock().write_all(bytes) {
        Ok(()) => exit::SUCCESS,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => exit::SUCCESS,
        Err(error) => {
            crate::logs::error(format_args!("cannot write {what}: {error}"));
            exit::USAGE_OR_CONFIG
        }
    }
}

/// The man page: the top-level page, then a section per subcommand with its options and the
/// text after its options (exit codes and examples).
pub(crate) fn render_man(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let command = Cli::command();
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let name = format!("supersim-bulk {}", sub.get_name());
        writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
        // A process that prints one page and exits: leaking the few names is harmless.
        let name: &'static str = Box::leak(name.into_boxed_str());
        let sub_man = clap_mangen::Man::new(sub.clone().name(name));
        sub_man.render_synopsis_section(out)?;
        sub_man.render_description_section(out)?;
        sub_man.render_options_section(out)?;
        render_after_help(out, sub.get_after_help())?;
    }
    render_after_help(out, command.get_after_help())?;
    man.render_version_section(out)?;
    Ok(())
}

/// The text `--help` shows after the flags, as man page sections titled by its own headings
/// ("Exit codes:", "Examples:") instead of clap_mangen's one `EXTRA`: each block that opens
/// with a line ending in `:` becomes a section of that name, its lines kept as they are.
fn render_after_help(
    out: &mut dyn std::io::Write,
    text: Option<&clap::builder::StyledStr>,
) -> std::io::Result<()> {
    let Some(text) = text else { return Ok(()) };
    let text = text.to_string();
    for block in text.split("\n\n") {
        let mut lines = block.lines();
        let Some(first) = lines.next() else { continue };
        let (title, body): (&str, Vec<&str>) = match first.trim_end().strip_suffix(':') {
            Some(title) if !first.starts_with(' ') => (title, lines.collect()),
            _ => ("Notes", block.lines().collect()),
        };
        let mut roff = roff::Roff::new();
        roff.control("SH", [title.to_uppercase().as_str()]);
        roff.control("nf", []);
        for line in body {
            roff.text([roff::roman(line)]);
        }
        roff.control("fi", []);
        out.write_all(roff.to_roff().as_bytes())?;
    }
    Ok(())
}
