//! What the guest boots: the kernel scripts/deps fetched (Debian's cloud
//! kernel, unpacked under target/powercut/kernel, nothing installed on the
//! host); a small initramfs (busybox, the virtio block driver, /init); and
//! a read-only tools disk with bash, flock, strace, the shared libraries
//! they and the fw binaries need (at the host's paths, so host-built
//! binaries run unchanged), the release fw binaries, fw-install, the keys
//! and the packages v0 … v5.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};

/// The virtio block driver and what it needs, in load order (virtio_blk
/// is a module in Debian's kernel; ext4 is built in).
pub const MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_blk",
];

/// dm-log-writes and what it needs, in load order.
pub const LOG_MODULES: &[&str] = &["dm-mod", "dm-log-writes"];

const GUEST_INIT: &str = include_str!("../guest/init");
const GUEST_SCRIPT: &str = include_str!("../guest/guest.sh");

/// The fw tools the guest runs.
const FW_BINARIES: &[&str] = &[
    "fw-unseal",
    "fw-unpack",
    "fw-verify",
    "fw-fixate",
    "fw-switch",
    "fw-hook",
];

/// The packages: (label, security_version). v3 fails its post-install
/// where the test says so; v5, the install after every check, is small
/// (it runs once per cut).
const PACKAGES: &[(&str, u64)] = &[
    ("v0", 1),
    ("v1", 1),
    ("v2", 2),
    ("v3", 1),
    ("v4", 2),
    ("v5", 2),
];

/// The kernel and its modules, as scripts/deps unpacked them.
pub struct Kernel {
    pub vmlinuz: PathBuf,
    pub modules: PathBuf,
}

impl Kernel {
    pub fn find(dir: &Path) -> Result<Kernel> {
        let hint = || {
            format!(
                "no kernel in {}: run scripts/deps (as root: it fetches Debian's \
                 linux-image-6.1.*-cloud-amd64 there)",
                dir.display()
            )
        };
        let boot = std::fs::read_dir(dir.join("boot")).with_context(hint)?;
        let vmlinuz = boot
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
            })
            .with_context(hint)?;
        let release =
            vmlinuz.file_name().unwrap().to_string_lossy()["vmlinuz-".len()..].to_string();
        let modules = dir.join("lib/modules").join(release);
        ensure!(modules.is_dir(), "{}", hint());
        Ok(Kernel { vmlinuz, modules })
    }

    fn module(&self, name: &str) -> Result<PathBuf> {
        walkdir::WalkDir::new(&self.modules)
            .into_iter()
            .flatten()
            .map(|e| e.into_path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n == format!("{name}.ko").as_str())
            })
            .with_context(|| {
                format!(
                    "module {name}.ko is not in {} (compressed modules are not supported)",
                    self.modules.display()
                )
            })
    }
}

/// Where a host program is.
fn which(program: &str) -> Result<PathBuf> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    ensure!(
        out.status.success() && path.starts_with('/'),
        "{program} is not installed: run scripts/deps"
    );
    // The file itself, not a link in PATH (busybox's applets are links).
    Ok(std::fs::canonicalize(&path)?)
}

/// The shared libraries `ldd` lists for `binary`, with the loader.
fn libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(binary).output().context("ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let said = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
    if said.contains("not a dynamic executable") || said.contains("statically linked") {
        return Ok(Vec::new());
    }
    ensure!(out.status.success(), "ldd {} failed", binary.display());
    let mut libs = Vec::new();
    for line in text.lines() {
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// Copies `from` to `root` + `at`, making directories.
fn put(root: &Path, at: &Path, from: &Path) -> Result<()> {
    let dest = root.join(at.strip_prefix("/").unwrap_or(at));
    std::fs::create_dir_all(dest.parent().unwrap())?;
    // Follow links: the guest gets the file under the name asked for.
    std::fs::copy(from, &dest).with_context(|| format!("copying {}", from.display()))?;
    Ok(())
}

fn write_exec(path: &Path, text: &str) -> Result<()> {
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn run_ok(cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// The hook every package carries: fails where a control file of the
/// test (beside the target, not in it) says so.
const HOOK: &str = "#!/bin/sh\n\
# $1 is this version's directory; the test's control files are in ../../ctl.\n\
v=$(cat \"$1/VERSION\")\n\
ctl=\"$1/../../ctl\"\n\
[ -e \"$ctl/fail-$FW_HOOK-$v\" ] && exit 1\n\
[ \"$FW_DIRECTION\" = rollback ] && [ -e \"$ctl/fail-rollback-$v\" ] && exit 1\n\
exit 0\n";

/// A firmware tree: shared files (one large enough for gzip members of
/// its own, so upgrades link it without inflating it), files of its own,
/// an etc/ tree for link-tree, a symlink and the hooks.
fn version_tree(dir: &Path, label: &str, index: u64, small: bool) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let mut shared = fastrand::Rng::with_seed(1);
    let mut own = fastrand::Rng::with_seed(100 + index);
    let bytes = |rng: &mut fastrand::Rng, n: usize| -> Vec<u8> {
        // Half random, half text: gzip shrinks it somewhat, as real files.
        (0..n)
            .map(|i| {
                if i % 2 == 0 {
                    rng.u8(..)
                } else {
                    b'a' + (i % 26) as u8
                }
            })
            .collect()
    };
    std::fs::create_dir_all(dir.join("lib/data"))?;
    std::fs::create_dir_all(dir.join("etc/app/conf.d"))?;
    std::fs::create_dir_all(dir.join("bin"))?;
    std::fs::write(dir.join("VERSION"), format!("{label}\n"))?;
    write_exec(&dir.join("bin/app"), &format!("#!/bin/sh\necho {label}\n"))?;
    std::fs::write(dir.join("lib/shared.bin"), bytes(&mut shared, 300 << 10))?;
    if !small {
        std::fs::write(
            dir.join(format!("lib/own-{label}.bin")),
            bytes(&mut own, 200 << 10),
        )?;
    }
    for i in 0..if small { 6 } else { 40 } {
        // Most small files are the same in every version; a few differ.
        let rng = if i < 4 { &mut own } else { &mut shared };
        let size = 512 + rng.usize(..6000);
        std::fs::write(dir.join(format!("lib/data/f{i:02}")), bytes(rng, size))?;
    }
    for i in 0..12 {
        let text = if i < 2 {
            format!("setting{i} = {label}\n")
        } else {
            format!("setting{i} = same\n")
        };
        let name = if i % 3 == 0 {
            format!("etc/app/conf.d/{i:02}.conf")
        } else {
            format!("etc/app/{i:02}.conf")
        };
        std::fs::write(dir.join(name), text)?;
    }
    std::os::unix::fs::symlink("../bin/app", dir.join("etc/app-link"))?;
    for hook in [".pre-install", ".post-install", ".health-check"] {
        write_exec(&dir.join(hook), HOOK)?;
    }
    Ok(())
}

/// What a run boots: the initramfs (busybox, the block driver, /init)
/// and the read-only tools disk mounted at /pc.
pub struct Guest {
    pub initrd: PathBuf,
    pub tools: PathBuf,
}

/// Keys, packages, the tools disk and the initramfs, made in `dir` from
/// the binaries in `bins`.
pub fn build(dir: &Path, bins: &Path, kernel: &Kernel, repo: &Path) -> Result<Guest> {
    for tool in FW_BINARIES.iter().chain(&["fw-sign"]) {
        ensure!(
            bins.join(tool).is_file(),
            "{} is missing: run `cargo build --release` first",
            bins.join(tool).display()
        );
    }
    // The tools disk (its root is /pc in the guest). Under emulation a
    // large initramfs costs seconds of every boot; a disk is read as used.
    let pc = dir.join("tools");
    let _ = std::fs::remove_dir_all(&pc);
    std::fs::create_dir_all(&pc)?;

    // Keys: the vendor's, and the device's keyring (its certificate only:
    // the packages are signed, not encrypted).
    let sign = bins.join("fw-sign");
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys)?;
    let vendor_key = keys.join("vendor.key");
    if !vendor_key.exists() {
        let key = run_ok(Command::new(&sign).args(["keygen", "--userid", "Vendor <v@example>"]))?;
        std::fs::write(&vendor_key, key)?;
    }
    let cert = run_ok(
        Command::new(&sign)
            .arg("cert")
            .stdin(std::fs::File::open(&vendor_key)?),
    )?;
    std::fs::create_dir_all(pc.join("keys"))?;
    std::fs::write(pc.join("keys/vendor.asc"), cert)?;

    // Packages, created a day apart (clean keeps the newest).
    std::fs::create_dir_all(pc.join("pkg"))?;
    for (index, (label, security)) in PACKAGES.iter().enumerate() {
        let tree = dir.join("src").join(label).join("fw");
        version_tree(&tree, label, index as u64, *label == "v5")?;
        let package = run_ok(
            Command::new(&sign)
                .args(["-q", "pack", "--key"])
                .arg(&vendor_key)
                .args(["--version", label, "--security-version"])
                .arg(security.to_string())
                .arg(&tree)
                .env(
                    "SOURCE_DATE_EPOCH",
                    (1_700_000_000 + 86_400 * index).to_string(),
                ),
        )?;
        std::fs::write(pc.join(format!("pkg/{label}.fw")), package)?;
    }

    // Programs and their libraries, at the host's paths under /pc/sys
    // (the initramfs links /usr, /lib and /lib64 there).
    let sys = pc.join("sys");
    let mut programs = Vec::new();
    for (program, at) in [
        ("bash", "/usr/bin/bash"),
        ("flock", "/usr/bin/flock"),
        ("strace", "/usr/bin/strace"),
        ("dmsetup", "/usr/sbin/dmsetup"),
    ] {
        let path = which(program)?;
        put(&sys, Path::new(at), &path)?;
        programs.push(path);
    }
    // fw-install's `#!/usr/bin/env bash`.
    std::os::unix::fs::symlink("/bin/busybox", sys.join("usr/bin/env"))?;
    for tool in FW_BINARIES {
        let path = bins.join(tool);
        put(&pc, &Path::new("/bin").join(tool), &path)?;
        programs.push(path);
    }
    put(
        &pc,
        Path::new("/bin/fw-install"),
        &repo.join("scripts/fw-install"),
    )?;
    for program in &programs {
        for lib in libraries(program)? {
            put(&sys, &lib, &lib)?;
        }
    }
    // dm-log-writes, for the disk that loses its cache (logwrites.rs).
    for module in LOG_MODULES {
        put(
            &pc,
            &Path::new("/modules").join(format!("{module}.ko")),
            &kernel.module(module)?,
        )?;
    }
    write_exec(&pc.join("guest.sh"), GUEST_SCRIPT)?;
    std::fs::write(pc.join("traced"), crate::marker::TRACED)?;
    let tools = dir.join("tools.img");
    let mib = dir_size(&pc)? / (1 << 20) * 5 / 4 + 16;
    let _ = std::fs::remove_file(&tools);
    std::fs::File::create(&tools)?.set_len(mib << 20)?;
    run_ok(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-E", "root_owner=0:0", "-d"])
            .arg(&pc)
            .arg(&tools),
    )
    .context("making the tools disk (run scripts/deps: package e2fsprogs)")?;

    // The initramfs: busybox, the block driver, /init.
    let root = dir.join("root");
    let _ = std::fs::remove_dir_all(&root);
    for d in ["dev", "proc", "sys", "tmp", "mnt", "bin", "pc", "modules"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    put(&root, Path::new("/bin/busybox"), &which("busybox")?)?;
    for (link, to) in [
        ("usr", "pc/sys/usr"),
        ("lib", "pc/sys/lib"),
        ("lib64", "pc/sys/lib64"),
    ] {
        std::os::unix::fs::symlink(to, root.join(link))?;
    }
    write_exec(&root.join("init"), GUEST_INIT)?;
    for module in MODULES {
        put(
            &root,
            &Path::new("/modules").join(format!("{module}.ko")),
            &kernel.module(module)?,
        )?;
    }
    std::fs::write(root.join("modules/list"), MODULES.join("\n") + "\n")?;
    let initrd = dir.join("initramfs.cpio");
    cpio(&root, &initrd)?;
    Ok(Guest { initrd, tools })
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in walkdir::WalkDir::new(dir) {
        total += entry?.metadata()?.len();
    }
    Ok(total)
}

/// An uncompressed cpio (newc) of `root`: quicker to unpack under
/// emulation than a compressed one.
fn cpio(root: &Path, out: &Path) -> Result<()> {
    let mut names = Vec::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry?;
        let rel = entry.path().strip_prefix(root)?;
        names.push(if rel.as_os_str().is_empty() {
            ".".to_string()
        } else {
            format!("./{}", rel.display())
        });
    }
    let mut cpio = Command::new(which("busybox")?)
        .args(["cpio", "-o", "-H", "newc"])
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(out)?)
        .stderr(Stdio::null())
        .spawn()?;
    {
        use std::io::Write;
        let mut stdin = cpio.stdin.take().unwrap();
        stdin.write_all((names.join("\n") + "\n").as_bytes())?;
    }
    ensure!(cpio.wait()?.success(), "busybox cpio failed");
    Ok(())
}
