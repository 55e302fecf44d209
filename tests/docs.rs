//! What a person meets besides the pipeline: man pages and completions that
//! cannot go stale, progress bars only on a terminal, logs for machines and
//! for the journal.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use fw_e2e::*;

const TOOLS: &[&str] = &[
    "fw-sign",
    "fw-unseal",
    "fw-unpack",
    "fw-verify",
    "fw-fixate",
    "fw-switch",
    "fw-hook",
    "fw-update",
    "fw-fetch",
];

/// Man pages and completions are generated when the Debian package is
/// built (scripts/deb), not committed: the tests generate them afresh from
/// the same xtask, so what they check is what ships.
fn generated_docs() -> TempDir {
    let tmp = TempDir::new().unwrap();
    let status = Command::new(bin("xtask"))
        .args(["docs", "--out"])
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(status.success(), "xtask docs failed");
    tmp
}

/// Long flags a `--help` text lists in its options (lines that start
/// with a flag, like `  -q, --quiet` or `      --keyring <K>`).
fn flags(help: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in help
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
    {
        for word in line.split_whitespace() {
            let word = word.trim_end_matches(',');
            if let Some(name) = word.strip_prefix("--") {
                let name: String = name
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                    .collect();
                out.insert(format!("--{name}"));
            } else if !(word.starts_with('-') || word.starts_with('<') || word.starts_with('[')) {
                break;
            }
        }
    }
    out
}

/// The subcommands a `--help` text lists under "Commands:".
fn subcommands(help: &str) -> Vec<String> {
    help.split("Commands:")
        .nth(1)
        .map(|rest| {
            rest.lines()
                .skip(1)
                .take_while(|l| l.starts_with("  "))
                .filter_map(|l| l.split_whitespace().next())
                .filter(|c| *c != "help")
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// What bash offers for `WORDS` followed by TAB, through the function
/// that the generated script registers with `complete -F`, as bash calls it.
fn bash_completes(script: &Path, words: &[&str]) -> BTreeSet<String> {
    let cword = words.len() - 1;
    let prog = format!(
        r#"source "$1"; shift
        func=$(complete -p "$1" | sed -n 's/.*-F \([^ ]*\).*/\1/p')
        [ -n "$func" ] || exit 3
        COMP_WORDS=("$@"); COMP_CWORD={cword}
        "$func" "$1" "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
        printf '%s\n' "${{COMPREPLY[@]}}""#
    );
    let out = Command::new("bash")
        .args(["-c", &prog, "bash"])
        .arg(script)
        .args(words)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bash completion of {words:?} failed: {out:?}"
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn bash_completes_the_options_of_every_subcommand() {
    let docs = generated_docs();
    for tool in TOOLS {
        let script = docs.path().join(format!("completions/bash/{tool}"));
        let help = String::from_utf8(ok(run(fw(tool).arg("--help"), b""))).unwrap();
        let top = bash_completes(&script, &[tool, "--"]);
        assert!(top.contains("--help"), "{tool} --<TAB> offers {top:?}");
        for sub in subcommands(&help) {
            let sub_help =
                String::from_utf8(ok(run(fw(tool).args([sub.as_str(), "--help"]), b""))).unwrap();
            let offered = bash_completes(&script, &[tool, sub.as_str(), "--"]);
            for flag in flags(&sub_help) {
                assert!(
                    offered.contains(&flag),
                    "{tool} {sub} --<TAB> offers {offered:?}, not {flag}"
                );
            }
        }
    }
}

fn man_text(dist: &Path, name: &str) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dist.join("man/man1")).unwrap().flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file == format!("{name}.1") || file.starts_with(&format!("{name}-")) {
            text += &std::fs::read_to_string(entry.path()).unwrap();
        }
    }
    // roff writes a dash as `\-`.
    text.replace("\\-", "-")
}

#[test]
fn every_flag_of_every_tool_is_in_its_man_page_and_completions() {
    let docs = generated_docs();
    let dist = docs.path();
    for tool in TOOLS {
        let help = String::from_utf8(ok(run(fw(tool).arg("--help"), b""))).unwrap();
        let mut all = flags(&help);
        for sub in subcommands(&help) {
            let sub_help =
                String::from_utf8(ok(run(fw(tool).args([sub.as_str(), "--help"]), b""))).unwrap();
            all.extend(flags(&sub_help));
        }
        assert!(
            all.contains("--version") && all.contains("--help"),
            "{tool}: {all:?}"
        );
        let man = man_text(dist, tool);
        let bash = std::fs::read_to_string(dist.join(format!("completions/bash/{tool}"))).unwrap();
        let zsh = std::fs::read_to_string(dist.join(format!("completions/zsh/_{tool}"))).unwrap();
        let fish =
            std::fs::read_to_string(dist.join(format!("completions/fish/{tool}.fish"))).unwrap();
        for flag in &all {
            if flag == "--help" || flag == "--version" {
                continue;
            }
            assert!(
                man.contains(flag.as_str()),
                "{tool}: {flag} is not in its man pages"
            );
            assert!(
                bash.contains(flag.as_str()),
                "{tool}: {flag} is not in its bash completion"
            );
            assert!(
                zsh.contains(flag.as_str()),
                "{tool}: {flag} is not in its zsh completion"
            );
            assert!(
                fish.contains(&format!("-l {}", &flag[2..])),
                "{tool}: {flag} is not in its fish completion"
            );
        }
    }
    // fw-install is a script: its man page must follow its --help.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fw-install");
    let out = Command::new(script).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let man = man_text(dist, "fw-install");
    for flag in flags(&help) {
        if flag != "--help" {
            assert!(
                man.contains(flag.as_str()),
                "fw-install: {flag} is not in its man page"
            );
        }
    }
    assert!(dist.join("man/man7/fw.7").exists());
}

fn package(tmp: &Path) -> (Keys, PathBuf) {
    let keys = Keys::new(&tmp.join("keys"));
    let tree = sample_tree(tmp, "fw");
    // Large enough for the bar to draw at least once.
    std::fs::write(tree.join("bin/blob"), vec![7u8; 8 << 20]).unwrap();
    let out = tmp.join("fw.fw");
    let mut cmd = fw("fw-sign");
    cmd.args(["-q", "pack", "--key"])
        .arg(&keys.vendor_key)
        .arg(&tree)
        .stdout(std::fs::File::create(&out).unwrap());
    assert!(cmd.status().unwrap().success());
    (keys, out)
}

/// The progress bar's own characters (indicatif's bar and its prefix).
fn has_bar(stderr: &str) -> bool {
    stderr.contains('█') || stderr.contains('░') || stderr.contains("ETA")
}

#[test]
fn progress_shows_on_a_terminal_and_never_when_piped() {
    let tmp = TempDir::new().unwrap();
    let (keys, package) = package(tmp.path());
    let unseal = format!(
        "{} --keyring {} < {} > /dev/null",
        bin("fw-unseal").display(),
        keys.keyring.display(),
        package.display()
    );
    // `script` gives the command a pseudo-terminal; what it prints is the
    // terminal's output.
    let tty = Command::new("script")
        .args(["-qec", &unseal, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        tty.status.success(),
        "{}",
        String::from_utf8_lossy(&tty.stderr)
    );
    assert!(
        has_bar(&String::from_utf8_lossy(&tty.stdout)),
        "no bar on a terminal"
    );

    let piped = run_file(
        fw("fw-unseal").arg("--keyring").arg(&keys.keyring),
        &package,
    );
    let stderr = String::from_utf8_lossy(&piped.stderr).to_string();
    assert!(piped.status.success());
    assert!(!has_bar(&stderr), "a bar when stderr is a pipe: {stderr:?}");
    assert!(is_complete_gzip(&piped.stdout), "stdout carries only data");

    let no = Command::new("script")
        .args(["-qec", &format!("{unseal} --no-progress"), "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !has_bar(&String::from_utf8_lossy(&no.stdout)),
        "--no-progress"
    );

    let forced = run_file(
        fw("fw-unseal")
            .args(["--progress", "--keyring"])
            .arg(&keys.keyring),
        &package,
    );
    assert!(
        has_bar(&String::from_utf8_lossy(&forced.stderr)),
        "--progress forces the bar"
    );
    assert!(is_complete_gzip(&forced.stdout), "never on stdout");
}

#[test]
fn logs_as_json_and_with_journal_priorities() {
    let tmp = TempDir::new().unwrap();
    let (keys, package) = package(tmp.path());
    let out = run_file(
        fw("fw-unseal")
            .args(["--log-format", "json", "--keyring"])
            .arg(&keys.keyring),
        &package,
    );
    assert!(out.status.success());
    for line in String::from_utf8(out.stderr).unwrap().lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert_eq!(value["tool"], "fw-unseal");
        assert_eq!(value["level"], "info");
    }
    let bad = run(
        fw("fw-unseal")
            .env("FW_LOG_FORMAT", "json")
            .arg("--keyring")
            .arg(&keys.keyring),
        b"not a package",
    );
    let line: serde_json::Value = serde_json::from_slice(&bad.stderr).unwrap();
    assert_eq!(
        (line["level"].as_str(), bad.status.code()),
        (Some("error"), Some(5))
    );

    // Under systemd, stderr is the journal stream named by JOURNAL_STREAM.
    use std::os::unix::fs::MetadataExt;
    let log = tmp.path().join("journal-stream");
    let file = std::fs::File::create(&log).unwrap();
    let meta = file.metadata().unwrap();
    let status = fw("fw-unseal")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .arg("--keyring")
        .arg(&keys.keyring)
        .stdin(std::fs::File::open(&package).unwrap())
        .stdout(Stdio::null())
        .stderr(file)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("<6>fw-unseal: good signature"), "{text:?}");
    let file = std::fs::File::create(&log).unwrap();
    let meta = file.metadata().unwrap();
    let status = fw("fw-unseal")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .arg("--keyring")
        .arg(&keys.keyring)
        .stdin(Stdio::null())
        .stderr(file)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(5));
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .starts_with("<3>fw-unseal: error:"));

    // -q and FW_LOG filter.
    let quiet = run_file(
        fw("fw-unseal")
            .env("FW_LOG", "warn")
            .arg("--keyring")
            .arg(&keys.keyring),
        &package,
    );
    assert!(
        quiet.stderr.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&quiet.stderr)
    );
    let quiet = run_file(
        fw("fw-unseal")
            .arg("-q")
            .arg("--keyring")
            .arg(&keys.keyring),
        &package,
    );
    assert!(quiet.stderr.is_empty());
}

/// The design document is the contract (docs/design.md, with docs/update.md
/// for the agent): every subcommand and every option of every tool, and of
/// fw-install, is named there, so a new one cannot ship undocumented. The
/// options every tool shares are described once, in prose.
#[test]
fn the_design_document_names_every_subcommand_and_option() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("docs/design.md")).unwrap()
        + &std::fs::read_to_string(root.join("docs/update.md")).unwrap();
    let shared = [
        "--help",
        "--version",
        "--quiet",
        "--verbose",
        "--log-format",
    ];
    let mut missing = Vec::new();
    let mut check = |tool: &str, sub: Option<&str>, help: &str| {
        if let Some(sub) = sub {
            if !docs.contains(&format!("{tool} {sub}")) && !docs.contains(&format!("| {sub}")) {
                missing.push(format!("{tool} {sub}"));
            }
        }
        for flag in flags(help) {
            if !shared.contains(&flag.as_str()) && !docs.contains(flag.as_str()) {
                missing.push(format!(
                    "{tool} {}{flag}",
                    sub.map(|s| format!("{s} ")).unwrap_or_default()
                ));
            }
        }
    };
    for tool in TOOLS {
        let help = String::from_utf8(ok(run(fw(tool).arg("--help"), b""))).unwrap();
        check(tool, None, &help);
        for sub in subcommands(&help) {
            let sub_help =
                String::from_utf8(ok(run(fw(tool).args([sub.as_str(), "--help"]), b""))).unwrap();
            check(tool, Some(&sub), &sub_help);
        }
    }
    let out = Command::new(root.join("scripts/fw-install"))
        .arg("--help")
        .output()
        .unwrap();
    check("fw-install", None, &String::from_utf8(out.stdout).unwrap());
    assert!(
        missing.is_empty(),
        "not in docs/design.md nor docs/update.md: {missing:?}"
    );
}

/// Every man page says what its exit codes mean and where to read on, and
/// fw(7) covers the update agent.
#[test]
fn every_man_page_has_exit_status_and_see_also() {
    let docs = generated_docs();
    let mut pages = 0;
    for section in ["man1", "man7"] {
        for entry in std::fs::read_dir(docs.path().join("man").join(section)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for heading in [".SH \"EXIT STATUS\"", ".SH \"SEE ALSO\""] {
                let plain = heading.replace('"', "");
                assert!(
                    text.contains(heading) || text.contains(&plain),
                    "{}: no {plain}",
                    path.display()
                );
            }
            pages += 1;
        }
    }
    assert!(pages > 20, "{pages} pages");
    let fw7 = std::fs::read_to_string(docs.path().join("man/man7/fw.7")).unwrap();
    assert!(fw7.contains(".SH THE UPDATE AGENT") && fw7.contains(".BR fw\\-update (1)"));
}
