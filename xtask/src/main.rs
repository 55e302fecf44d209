//! `cargo run -p xtask -- docs [--out DIR]`: writes the man pages and the
//! bash, zsh and fish completions of every fw tool into DIR (default
//! `target/dist/`), from the tools' own clap definitions, plus the fw(7)
//! overview. They are generated when the Debian package is built
//! (scripts/deb), as rage does, rather than committed: nothing generated
//! can go stale in the repository, and tests/docs.rs checks what this
//! writes.

use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command, CommandFactory};
use clap_complete::Shell;

/// scripts/fw-install is a shell script: its command line, for its docs.
/// tests/docs.rs checks that it names every flag of the script's --help.
fn fw_install() -> Command {
    let value = |name: &'static str, id: &'static str, help: &'static str| {
        Arg::new(id).long(id).value_name(name).help(help)
    };
    Command::new("fw-install")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Install an fw package on the target, switch to it, run its hooks, roll back on failure")
        .long_about(
            "Install an fw package (a file, an http(s) URL streamed through curl, or - for stdin; \
             with --delta, a URL fetched by HTTP Range, only what the target lacks) \
             on the firmware target: fw-unseal | fw-unpack, fw-verify, fw-fixate, the pre-install \
             hook, fw-switch to, the post-install and health-check hooks. Every step is recorded \
             in TARGET/.fw/journal; on failure after the switch the previous version comes back \
             (exit 7), else the failsafe (exit 8), passing over versions marked failed or below \
             the security floor (when none is left, the new version stays current, marked \
             failed: exit 4). The new version is pending until `fw-switch commit`. A package \
             identical to an installed version is refused (exit 5) unless --reinstall.",
        )
        .arg(value("T", "target", "the firmware target [$FW_TARGET, else /opt/firmware]"))
        .arg(value("K", "keyring", "trusted certificates and device key [$FW_KEYRING, else /etc/fw/keys]"))
        .arg(value("FILE", "status", "append one JSON status object per step to FILE (without it: to fd 3 if open)"))
        .arg(value("SECS", "wait", "wait up to SECS for the target lock (default: fail at once, exit 6)"))
        .arg(value("S", "hook-timeout", "kill a hook after S seconds (default 300)"))
        .arg(value("N", "hook-retries", "retries of a hook that exits 3 (default 3)"))
        .arg(value("S", "hook-retry-interval", "first retry interval, doubling (default 5)"))
        .arg(Arg::new("delta").long("delta").action(ArgAction::SetTrue).help("URL only: download only what the target lacks (fw-fetch | fw-unpack --delta); an interrupted fetch resumes at the next run"))
        .arg(value("N", "stall-speed", "give up a URL whose transfer stays under N bytes/s for --stall-time seconds (default 1024): exit 1, nothing changed"))
        .arg(value("S", "stall-time", "the seconds a transfer may stay under --stall-speed (default 60)"))
        .arg(value("S", "max-time", "give up a URL (not --delta) still streaming after S seconds (default 86400, a day; 0: no limit): exit 1, nothing changed"))
        .arg(value("NAME", "expect-name", "refuse (exit 4) a package whose signed manifest has another name (fw-update passes the signed index's entry)"))
        .arg(value("V", "expect-version", "refuse (exit 4) a package whose signed manifest has another version"))
        .arg(value("N", "expect-security-version", "refuse (exit 4) a package whose signed manifest has another security_version"))
        .arg(
            Arg::new("reinstall")
                .long("reinstall")
                .action(ArgAction::SetTrue)
                .help("install the package even if an identical version (same manifest) is installed already"),
        )
        .arg(Arg::new("quiet").short('q').long("quiet").action(ArgAction::SetTrue).help("only errors on stderr"))
        .arg(Arg::new("verbose").short('v').long("verbose").action(ArgAction::SetTrue).help("more detail on stderr, from every tool"))
        .arg(value("F", "log-format", "human (default, or $FW_LOG_FORMAT) or json: one JSON record per line on stderr (see fw(7)), from this script and every tool"))
        .after_long_help(
            "A failure is reported once, in one line naming the stage that failed first and its \
             cause: curl's message inside fw-install's line, or the line of the fw tool that \
             refused the package (a stage left without input stays quiet, exit 9).\n\n\
             STATUS LINES (--status FILE, or fd 3), one JSON object per step, with the schema of \
             fw-update's status events (fw(7)): status (verifying, installing, switching, \
             updated, update_failed, rolled_back, failsafe), name, current_version, \
             latest_version, error (\"\" unless failed), last_checked (always \"\"), time \
             (seconds since 1970), from and to (the version directories).",
        )
        .arg(Arg::new("source").value_name("FILE|URL|-").required(true).help("the package"))
}

/// Every tool's command line.
pub fn commands() -> Vec<Command> {
    vec![
        fw_sign::cli::Cli::command(),
        fw_unseal::cli::Cli::command(),
        fw_unpack::cli::Cli::command(),
        fw_verify::cli::Cli::command(),
        fw_fixate::cli::Cli::command(),
        fw_switch::cli::Cli::command(),
        fw_hook::cli::Cli::command(),
        fw_update::cli::Cli::command(),
        fw_fetch::cli::Cli::command(),
        fw_install(),
    ]
}

fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(path.parent().expect("a file in a directory"))?;
    std::fs::write(path, bytes)
}

/// The exit codes every binary and fw-install share (fw_core::Exit;
/// docs/design.md has the long form).
const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "done"),
    ("1", "failed: I/O, a hook, a path that does not exist, anything else"),
    ("2", "usage error"),
    ("3", "retry later"),
    ("4", "security violation: bad or missing signature, untrusted signer, tampering, below the security floor"),
    ("5", "invalid input: malformed package, unsafe archive, tree differs from its manifest, an identical version installed already"),
    ("6", "busy: another install holds the target's lock"),
    ("7", "the new version failed after the switch; the previous version is back"),
    ("8", "the previous version failed too; the failsafe version is running"),
    ("9", "no input: the stage before failed (quiet; that stage said why)"),
    ("141", "the reader of stdout went away"),
];

/// The pages a tool's page points to: fw(7), then every other tool.
const TOOL_PAGES: &[&str] = &[
    "fw-sign",
    "fw-unseal",
    "fw-fetch",
    "fw-unpack",
    "fw-verify",
    "fw-fixate",
    "fw-switch",
    "fw-hook",
    "fw-install",
    "fw-update",
];

/// EXIT STATUS and SEE ALSO, in roff, for page `name` (its `parent` tool
/// for a subcommand's page).
fn exit_and_see_also(name: &str, parent: Option<&str>) -> String {
    let mut roff = String::from(".SH \"EXIT STATUS\"\n");
    for (code, meaning) in EXIT_STATUS {
        roff += &format!(".TP\n{code}\n{meaning}\n");
    }
    roff += ".SH \"SEE ALSO\"\n";
    let mut pages = vec![r"\fBfw\fR(7)".to_string()];
    let related: Vec<&str> = match parent {
        Some(parent) => vec![parent],
        None => TOOL_PAGES.iter().copied().filter(|t| *t != name).collect(),
    };
    pages.extend(
        related
            .iter()
            .map(|t| format!(r"\fB{}\fR(1)", t.replace('-', r"\-"))),
    );
    roff += &pages.join(", ");
    roff +=
        "\n.PP\nThe design document: /usr/share/doc/fw/design.md (docs/design.md of the source).\n";
    roff
}

/// Man pages: one for the tool, one per subcommand (`fw-switch-status.1`),
/// each with the shared EXIT STATUS and a SEE ALSO (before VERSION).
fn man_pages(cmd: &Command, parent: Option<&str>, out: &Path) -> std::io::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    let page = String::from_utf8(page).expect("clap_mangen writes UTF-8");
    let extra = exit_and_see_also(cmd.get_name(), parent);
    let page = match page.find(".SH VERSION") {
        Some(at) => format!("{}{extra}{}", &page[..at], &page[at..]),
        None => page + &extra,
    };
    write(
        &out.join(format!("man/man1/{}.1", cmd.get_name())),
        page.as_bytes(),
    )?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("{}-{}", cmd.get_name(), sub.get_name());
        let sub = sub
            .clone()
            .name(name.clone())
            .version(cmd.get_version().map(str::to_string).unwrap_or_default());
        man_pages(&sub, Some(cmd.get_name()), out)?;
    }
    Ok(())
}

fn completions(cmd: &Command, out: &Path) -> std::io::Result<()> {
    let name = cmd.get_name().to_string();
    for (shell, file) in [
        (Shell::Bash, format!("completions/bash/{name}")),
        (Shell::Zsh, format!("completions/zsh/_{name}")),
        (Shell::Fish, format!("completions/fish/{name}.fish")),
    ] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), &name, &mut script);
        if shell == Shell::Bash {
            script = fix_bash_case_labels(&name, script);
        }
        write(&out.join(file), &script)?;
    }
    Ok(())
}

/// clap_complete's bash script names the states of a command whose name
/// has a dash in two ways: the loop over the words computes
/// `fw__switch__subcmd__status`, but the case labels read
/// `fw__subcmd__switch__subcmd__status`, so nothing after a subcommand
/// completes (clap-rs/clap#6421; PR #6428 fixes it upstream, not in the
/// clap_complete 4.6.11 we use). The labels get the name the loop computes.
fn fix_bash_case_labels(name: &str, script: Vec<u8>) -> Vec<u8> {
    let computed = name.replace('-', "__");
    let labelled = name.replace('-', "__subcmd__");
    if computed == labelled {
        return script;
    }
    String::from_utf8(script)
        .expect("clap_complete writes UTF-8")
        .replace(&format!("{labelled}__"), &format!("{computed}__"))
        .into_bytes()
}

pub fn generate(out: &Path) -> std::io::Result<()> {
    for cmd in commands() {
        let mut cmd = cmd;
        cmd.build();
        man_pages(&cmd, None, out)?;
        completions(&cmd, out)?;
    }
    write(&out.join("man/man7/fw.7"), include_bytes!("fw.7"))
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = match args.as_slice() {
        [cmd] if cmd == "docs" => PathBuf::from("target/dist"),
        [cmd, flag, dir] if cmd == "docs" && flag == "--out" => PathBuf::from(dir),
        _ => {
            eprintln!("usage: cargo run -p xtask -- docs [--out DIR]   (man pages and completions, default target/dist/)");
            return std::process::ExitCode::from(2);
        }
    };
    match generate(&out) {
        Ok(()) => {
            eprintln!(
                "xtask: man pages and completions written to {}",
                out.display()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask: error: {}: {e}", out.display());
            std::process::ExitCode::FAILURE
        }
    }
}
