//! Markers: the guest traces the operation it runs with
//! `strace -f -Y -y -o /dev/ttyS0`, one line per state-changing syscall,
//! and the host cuts the power after a chosen one.
//!
//! A line becomes a *step*: who made which call on what, with the parts
//! that change from run to run (pids, temporary names, version names, the
//! file inside a tree) folded away, e.g. `fw-switch:rename:T/.current.tmp-N>T/current`
//! or `fw-unpack:write:S/V/*`. The host counts steps to find "the 3rd
//! `fw-switch:fsync:T/.fw`" again in a later run, and reports which steps
//! the cuts hit. Only calls on the disk under test (`/mnt`) that did not
//! fail are steps; read-only opens are not.

/// The syscalls that change a file system (as tests/crash.rs counts them,
/// and the few more the tools make): what `strace -e trace=` follows.
pub const TRACED: &str = "write,pwrite64,writev,openat,mkdir,mkdirat,symlink,symlinkat,link,\
linkat,rename,renameat,renameat2,unlink,unlinkat,rmdir,fsync,fdatasync,syncfs,sync_file_range,\
ftruncate,fchmod,fchmodat,fchown,fchownat,utimensat";

/// The path syscalls of a marker line carry, by where they are.
enum Paths {
    /// The file descriptor in the first argument.
    Fd,
    /// dirfd + path (openat, mkdirat, unlinkat, utimensat …).
    At,
    /// olddirfd + oldpath, newdirfd + newpath (renameat2, linkat).
    At2,
    /// target, newdirfd + linkpath.
    SymlinkAt,
    /// One path (mkdir, unlink, rmdir).
    Path,
    /// Two paths (rename, link).
    Path2,
    /// target, linkpath.
    Symlink,
}

fn paths_of(syscall: &str) -> Option<Paths> {
    Some(match syscall {
        "write" | "pwrite64" | "writev" | "fsync" | "fdatasync" | "syncfs" | "sync_file_range"
        | "ftruncate" | "fchmod" | "fchown" => Paths::Fd,
        "openat" | "mkdirat" | "unlinkat" | "fchmodat" | "fchownat" | "utimensat" => Paths::At,
        "renameat" | "renameat2" | "linkat" => Paths::At2,
        "symlinkat" => Paths::SymlinkAt,
        "mkdir" | "unlink" | "rmdir" => Paths::Path,
        "rename" | "link" => Paths::Path2,
        "symlink" => Paths::Symlink,
        _ => return None,
    })
}

/// A traced syscall line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub comm: String,
    pub syscall: String,
    /// The files it changes, as absolute paths in the guest.
    pub paths: Vec<String>,
    /// An open that creates a name: O_CREAT with O_EXCL or O_TRUNC. (One
    /// with O_CREAT alone is taken to open a file that exists, as lock
    /// files are opened: strace cannot tell.)
    pub creates: bool,
}

/// The quoted strings and the `<...>` fd annotations of an argument list,
/// in order.
fn scan_args(args: &str) -> (Vec<String>, Vec<String>) {
    let mut strings = Vec::new();
    let mut annotations = Vec::new();
    let mut chars = args.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(next) = chars.next() {
                                s.push(next);
                            }
                        }
                        '"' => break,
                        _ => s.push(c),
                    }
                }
                strings.push(s);
            }
            '<' => {
                let mut s = String::new();
                let mut depth = 1;
                for c in chars.by_ref() {
                    match c {
                        '<' => depth += 1,
                        '>' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    s.push(c);
                }
                annotations.push(s);
            }
            _ => {}
        }
    }
    (strings, annotations)
}

fn join(dir: Option<&String>, path: Option<&String>) -> Option<String> {
    match (dir, path) {
        (_, Some(p)) if p.starts_with('/') => Some(p.clone()),
        (Some(d), Some(p)) => Some(format!("{}/{p}", d.trim_end_matches('/'))),
        (Some(d), None) => Some(d.clone()),
        (None, p) => p.cloned(),
    }
}

/// Parses one line of `strace -f -Y -y` output (`PID<comm> name(args) = ret`
/// or `… <unfinished ...>`); `None` for anything else, failed calls,
/// resumptions and read-only opens.
pub fn parse(line: &str) -> Option<Call> {
    let line = line.trim_end();
    let (pid, rest) = line.split_once('<')?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (comm, rest) = rest.split_once("> ")?;
    let (syscall, rest) = rest.split_once('(')?;
    if syscall.is_empty()
        || !syscall
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return None;
    }
    let args = if let Some(args) = rest.strip_suffix(" <unfinished ...>") {
        args
    } else {
        let (args, ret) = rest.rsplit_once(") = ")?;
        if ret.starts_with('-') || ret.starts_with('?') {
            return None;
        }
        args
    };
    if syscall == "openat"
        && !["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"]
            .iter()
            .any(|f| args.contains(f))
    {
        return None;
    }
    let (strings, notes) = scan_args(args);
    let paths = match paths_of(syscall)? {
        Paths::Fd => vec![notes.first()?.clone()],
        Paths::At => vec![join(notes.first(), strings.first())?],
        Paths::At2 => vec![
            join(notes.first(), strings.first())?,
            join(notes.get(1), strings.get(1))?,
        ],
        Paths::SymlinkAt => vec![join(notes.first(), strings.get(1))?],
        Paths::Path => vec![strings.first()?.clone()],
        Paths::Path2 => vec![strings.first()?.clone(), strings.get(1)?.clone()],
        Paths::Symlink => vec![strings.get(1)?.clone()],
    };
    let creates = syscall == "openat"
        && args.contains("O_CREAT")
        && (args.contains("O_EXCL") || args.contains("O_TRUNC"));
    Some(Call {
        comm: comm.to_string(),
        syscall: syscall.to_string(),
        paths,
        creates,
    })
}

/// A name with its changing part (`-1234`, `.AbC123`) folded.
fn fold(name: &str) -> String {
    if let Some((base, _)) = name.split_once(".tmp-") {
        return format!("{base}.tmp-N");
    }
    if name.starts_with("install.") {
        return "install.X".into();
    }
    if name.ends_with(".fw-link-tree") {
        return ".*.fw-link-tree".into();
    }
    name.to_string()
}

/// What lies inside a version tree: fw's own `.fw/…` by name, a
/// temporary link by its kind, any other file as `*`.
fn tree_rest(rest: &[&str]) -> String {
    match rest {
        [] => String::new(),
        [".fw", more @ ..] => format!("/.fw/{}", more.join("/")),
        [.., last] if last.starts_with(".fw-link-") => "/*/.fw-link-*".into(),
        _ => "/*".into(),
    }
}

/// The step class of a path on the disk: `T` the target, `S` a staging
/// tree, `V` a version directory, `R` a version being removed, `C` the
/// test's control files, `E` the link-tree destination.
pub fn path_class(path: &str) -> String {
    let Some(rest) = path.strip_prefix("/mnt/") else {
        return path.to_string();
    };
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        ["t", ".fw", "staging", unpack, top, more @ ..] if unpack.starts_with("unpack-") => {
            let _ = top;
            format!("S/V{}", tree_rest(more))
        }
        ["t", ".fw", "staging", unpack] if unpack.starts_with("unpack-") => "S".into(),
        // A version on its way out (fw-switch clean).
        ["t", ".fw", "staging", doomed, more @ ..] if doomed.starts_with("removing-") => {
            format!("R{}", tree_rest(more))
        }
        ["t", ".fw", more @ ..] => {
            let mut out = "T/.fw".to_string();
            for (i, p) in more.iter().enumerate() {
                out.push('/');
                out.push_str(&if i == 0 { fold(p) } else { p.to_string() });
            }
            out
        }
        ["t"] => "T".into(),
        ["t", name, more @ ..] if name.starts_with('.') => {
            format!("T/{}{}", fold(name), tree_rest(more))
        }
        ["t", name @ ("current" | "previous" | "failsafe"), more @ ..] => {
            format!("T/{name}{}", tree_rest(more))
        }
        ["t", _version, more @ ..] => format!("T/V{}", tree_rest(more)),
        ["etc", .., last] if last.ends_with(".fw-link-tree") => "E/.*.fw-link-tree".into(),
        ["etc"] => "E".into(),
        ["etc", ..] => "E/*".into(),
        ["ctl", ..] => "C/*".into(),
        _ => format!("/mnt/{}", parts.join("/")),
    }
}

impl Call {
    /// The step this call is an instance of.
    pub fn step(&self) -> String {
        let comm: String = self
            .comm
            .chars()
            .map(|c| if c.is_ascii_digit() { 'N' } else { c })
            .collect();
        let paths: Vec<String> = self.paths.iter().map(|p| path_class(p)).collect();
        format!("{comm}:{}:{}", self.syscall, paths.join(">"))
    }
}

/// The step of a serial line, if it is a marker: a call on the disk
/// under test.
pub fn step(line: &str) -> Option<String> {
    parse(line)
        .filter(|c| c.paths.iter().any(|p| p.starts_with("/mnt/")))
        .map(|c| c.step())
}

fn parent(path: &str) -> String {
    match path.rsplit_once('/') {
        Some(("", _)) => "/".into(),
        Some((dir, _)) => dir.into(),
        None => ".".into(),
    }
}

/// The directories whose entries `calls` changed (created, renamed,
/// linked or removed a name in them) and did not fsync afterwards (nor
/// sync the whole file system), each with the last call that changed it:
/// after a power cut those changes may be gone, though the program said it
/// was done. The cheap, deterministic half of what the QEMU cuts find.
pub fn unsynced(calls: &[Call]) -> Vec<(String, Call)> {
    let mut pending = std::collections::BTreeMap::<String, Call>::new();
    for call in calls {
        match call.syscall.as_str() {
            "fsync" | "fdatasync" => {
                pending.remove(&call.paths[0]);
            }
            "syncfs" => pending.clear(),
            "openat" if !call.creates => {}
            "openat" | "mkdir" | "mkdirat" | "symlink" | "symlinkat" | "unlink" | "unlinkat"
            | "rmdir" => {
                // A directory removed needs no sync of its own entries.
                let gone = &call.paths[0];
                if matches!(call.syscall.as_str(), "unlinkat" | "rmdir") {
                    pending.retain(|d, _| d != gone && !d.starts_with(&format!("{gone}/")));
                }
                pending.insert(parent(gone), call.clone());
            }
            "link" | "linkat" | "rename" | "renameat" | "renameat2" => {
                for path in &call.paths {
                    pending.insert(parent(path), call.clone());
                }
            }
            _ => {}
        }
    }
    pending.into_iter().collect()
}

/// [`unsynced`], the directories only.
pub fn unsynced_dirs(calls: &[Call]) -> Vec<String> {
    unsynced(calls).into_iter().map(|(dir, _)| dir).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_of_real_strace_lines() {
        let cases = [
            (
                r#"812<fw-unpack> openat(5</mnt/t/.fw/staging/unpack-812-AbCd/fw/lib>, "f3", O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC, 0600) = 6</mnt/t/.fw/staging/unpack-812-AbCd/fw/lib/f3>"#,
                Some("fw-unpack:openat:S/V/*"),
            ),
            (
                r#"812<fw-unpack> write(6</mnt/t/.fw/staging/unpack-812-AbCd/fw/lib/f3>, ""..., 4096) = 4096"#,
                Some("fw-unpack:write:S/V/*"),
            ),
            (
                r#"900<fw-fixate> renameat2(AT_FDCWD</>, "/mnt/t/.fw/staging/unpack-812-AbCd/fw", AT_FDCWD</>, "/mnt/t/fw-1", RENAME_NOREPLACE) = 0"#,
                Some("fw-fixate:renameat2:S/V>T/V"),
            ),
            (
                r#"901<fw-switch> symlinkat("fw-1", AT_FDCWD</>, "/mnt/t/.current.tmp-901") = 0"#,
                Some("fw-switch:symlinkat:T/.current.tmp-N"),
            ),
            (
                r#"901<fw-switch> rename("/mnt/t/.current.tmp-901", "/mnt/t/current") = 0"#,
                Some("fw-switch:rename:T/.current.tmp-N>T/current"),
            ),
            (
                r#"901<fw-switch> fsync(3</mnt/t/.fw> <unfinished ...>"#,
                Some("fw-switch:fsync:T/.fw"),
            ),
            (
                r#"77<mktemp> openat(AT_FDCWD</>, "/mnt/t/.fw/install.Xy12Ab", O_RDWR|O_CREAT|O_EXCL, 0600) = 3</mnt/t/.fw/install.Xy12Ab>"#,
                Some("mktemp:openat:T/.fw/install.X"),
            ),
            (
                r#"88<fw-verify> rename("/mnt/t/.fw/staging/unpack-1-x/fw/.fw/.verified.tmp", "/mnt/t/.fw/staging/unpack-1-x/fw/.fw/verified") = 0"#,
                Some("fw-verify:rename:S/V/.fw/.verified.tmp>S/V/.fw/verified"),
            ),
            (
                r#"5<fw-switch> symlinkat("/mnt/t/current/etc/a", AT_FDCWD</>, "/mnt/etc/.a.fw-link-tree") = 0"#,
                Some("fw-switch:symlinkat:E/.*.fw-link-tree"),
            ),
            // Not markers: a failed call, a read-only open, the console,
            // a resumption, the kernel's own lines.
            (
                r#"5<fw-switch> unlink("/mnt/t/.current.tmp-5") = -1 ENOENT (No such file or directory)"#,
                None,
            ),
            (
                r#"5<fw-verify> openat(AT_FDCWD</>, "/mnt/t/fw/.fw/manifest.json", O_RDONLY|O_CLOEXEC) = 3</mnt/t/fw/.fw/manifest.json>"#,
                None,
            ),
            (r#"5<bash> write(2</dev/ttyS0>, ""..., 20) = 20"#, None),
            (r#"5<fw-switch> rename("/tmp/x.tmp", "/tmp/x") = 0"#, None),
            (r#"5<fw-switch> <... fsync resumed>) = 0"#, None),
            ("@@go upgrade", None),
            ("[    4.1] EXT4-fs (vda): mounted", None),
        ];
        for (line, want) in cases {
            assert_eq!(step(line).as_deref(), want, "{line}");
        }
    }

    #[test]
    fn directories_changed_and_not_synced_are_named() {
        let trace = [
            r#"1<a> mkdirat(3</d>, "e", 0755) = 0"#,
            r#"1<a> symlinkat("/x", 4</d/e>, ".f.tmp") = 0"#,
            r#"1<a> renameat2(4</d/e>, ".f.tmp", 4</d/e>, "f", 0) = 0"#,
            r#"1<a> fsync(4</d/e>) = 0"#,
            r#"1<a> openat(5</g>, "h", O_WRONLY|O_CREAT|O_EXCL, 0644) = 6</g/h>"#,
            // Opening a lock file that exists changes nothing.
            r#"1<a> openat(AT_FDCWD</>, "/l/lock", O_WRONLY|O_CREAT|O_APPEND, 0644) = 7</l/lock>"#,
        ];
        let calls: Vec<Call> = trace.iter().filter_map(|l| parse(l)).collect();
        assert_eq!(calls.len(), 6);
        assert_eq!(unsynced_dirs(&calls), vec!["/d", "/g"]);
        // Removing a directory drops what was pending in it.
        let removed: Vec<Call> = trace
            .iter()
            .chain(&[
                r#"1<a> unlinkat(5</g>, "h", 0) = 0"#,
                r#"1<a> rmdir("/g") = 0"#,
            ])
            .filter_map(|l| parse(l))
            .collect();
        assert_eq!(unsynced_dirs(&removed), vec!["/", "/d"]);
        let synced: Vec<Call> = trace
            .iter()
            .chain(&[r#"1<a> syncfs(3</d>) = 0"#])
            .filter_map(|l| parse(l))
            .collect();
        assert!(unsynced_dirs(&synced).is_empty());
    }

    #[test]
    fn path_classes_fold_what_changes() {
        assert_eq!(path_class("/mnt/t/fw-3/lib/x"), "T/V/*");
        assert_eq!(path_class("/mnt/t/fw/.fw/verified"), "T/V/.fw/verified");
        assert_eq!(path_class("/mnt/t/.fw/.journal.tmp"), "T/.fw/.journal.tmp");
        assert_eq!(path_class("/mnt/t/.fw/staging/unpack-9-q"), "S");
        assert_eq!(
            path_class("/mnt/t/.fw/staging/unpack-9-q/fw/lib/.fw-link-x"),
            "S/V/*/.fw-link-*"
        );
        assert_eq!(path_class("/mnt/etc/app/conf"), "E/*");
        assert_eq!(path_class("/mnt/t/.fw/staging/removing-fw-12/lib/x"), "R/*");
        assert_eq!(path_class("/mnt/t/.fw/staging/removing-fw-12"), "R");
    }
}
