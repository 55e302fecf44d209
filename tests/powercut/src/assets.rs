//! What the guest boots: the kernel scripts/deps fetched (Debian's cloud
//! kernel, unpacked under target/powercut/kernel, nothing installed on the
//! host), and an initramfs made here of busybox, bash, flock, strace, the
//! shared libraries they and the fw binaries need (at the host's paths, so
//! host-built binaries run unchanged), the release fw binaries,
//! fw-install, the keys and the packages v0 … v5.

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
/// where the test says so; v5 is the install after every check.
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
fn version_tree(dir: &Path, label: &str, index: u64) -> Result<()> {
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
    std::fs::write(
        dir.join(format!("lib/own-{label}.bin")),
        bytes(&mut own, 200 << 10),
    )?;
    for i in 0..40 {
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

/// Keys, packages and the initramfs, made in `dir` from the binaries in
/// `bins`; returns the initramfs.
pub fn build(dir: &Path, bins: &Path, kernel: &Kernel, repo: &Path) -> Result<PathBuf> {
    for tool in FW_BINARIES.iter().chain(&["fw-sign"]) {
        ensure!(
            bins.join(tool).is_file(),
            "{} is missing: run `cargo build --release` first",
            bins.join(tool).display()
        );
    }
    let root = dir.join("root");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    for d in [
        "dev", "proc", "sys", "tmp", "mnt", "bin", "sbin", "usr/bin", "usr/sbin",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }

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
    std::fs::create_dir_all(root.join("pc/keys"))?;
    std::fs::write(root.join("pc/keys/vendor.asc"), cert)?;

    // Packages, created a day apart (clean keeps the newest).
    std::fs::create_dir_all(root.join("pc/pkg"))?;
    for (index, (label, security)) in PACKAGES.iter().enumerate() {
        let tree = dir.join("src").join(label).join("fw");
        version_tree(&tree, label, index as u64)?;
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
        std::fs::write(root.join(format!("pc/pkg/{label}.fw")), package)?;
    }

    // Programs and their libraries, at the host's paths.
    let mut programs = Vec::new();
    for (program, at) in [
        ("busybox", "/bin/busybox"),
        ("bash", "/usr/bin/bash"),
        ("flock", "/usr/bin/flock"),
        ("strace", "/usr/bin/strace"),
    ] {
        let path = which(program)?;
        put(&root, Path::new(at), &path)?;
        programs.push(path);
    }
    for tool in FW_BINARIES {
        let path = bins.join(tool);
        put(&root, &Path::new("/pc/bin").join(tool), &path)?;
        programs.push(path);
    }
    put(
        &root,
        Path::new("/pc/bin/fw-install"),
        &repo.join("scripts/fw-install"),
    )?;
    for program in &programs {
        for lib in libraries(program)? {
            put(&root, &lib, &lib)?;
        }
    }

    // The guest's init, its script and the block driver.
    write_exec(&root.join("init"), GUEST_INIT)?;
    write_exec(&root.join("pc/guest.sh"), GUEST_SCRIPT)?;
    std::fs::create_dir_all(root.join("pc/modules"))?;
    for module in MODULES {
        put(
            &root,
            &Path::new("/pc/modules").join(format!("{module}.ko")),
            &kernel.module(module)?,
        )?;
    }
    std::fs::write(root.join("pc/modules/list"), MODULES.join("\n") + "\n")?;

    // cpio newc, uncompressed (quicker to unpack under emulation).
    let initrd = dir.join("initramfs.cpio");
    let mut names = Vec::new();
    for entry in walkdir::WalkDir::new(&root).sort_by_file_name() {
        let entry = entry?;
        let rel = entry.path().strip_prefix(&root)?;
        names.push(if rel.as_os_str().is_empty() {
            ".".to_string()
        } else {
            format!("./{}", rel.display())
        });
    }
    let mut cpio = Command::new(which("busybox")?)
        .args(["cpio", "-o", "-H", "newc"])
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&initrd)?)
        .stderr(Stdio::null())
        .spawn()?;
    {
        use std::io::Write;
        let mut stdin = cpio.stdin.take().unwrap();
        stdin.write_all((names.join("\n") + "\n").as_bytes())?;
    }
    ensure!(cpio.wait()?.success(), "busybox cpio failed");
    Ok(initrd)
}
