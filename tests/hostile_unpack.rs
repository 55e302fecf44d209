//! fw-unpack against hostile archives, end to end.
//!
//! Every way a tar.gz can try to write outside its staging directory, smuggle
//! in what the manifest does not describe, exhaust the disk, or end early must
//! be refused with exit 5, one line on stderr naming the entry, nothing on
//! stdout, no staging directory left and nothing changed outside the target.
//! The valid package (also split into several gzip members) unpacks exactly.
//!
//! The archives are built from a real package (fw-sign pack | fw-unseal):
//! it is parsed, then re-written entry by entry by a small raw tar writer
//! below, which can say what the tar crate's builder refuses to (`..`,
//! absolute names, PAX and GNU long-name records, device nodes). A
//! manifest changed by a case is signed again by the test vendor key, and
//! every archive is signed and passed through fw-unseal, so that it carries
//! fw-unseal's proof: each hostile archive is refused for its own reason,
//! not for lacking a signature. The refusals for a missing or wrong proof
//! or manifest signature have cases of their own.
//!
//! Every case runs in a fresh temporary directory ROOT holding the target
//! (ROOT/target), a canary directory beside it (ROOT/canary, with a file
//! `secret`) and an empty directory ROOT/outside that hostile entries aim at.
//! Every hostile name contains "escaped", and no such name may appear
//! anywhere under ROOT afterwards.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};

use fw_e2e::*;

/// The sample tree's (and so the package's) name.
const NAME: &str = "fw";

// ---------------------------------------------------------------------------
// A raw tar writer.

const REGULAR: u8 = b'0';
const HARDLINK: u8 = b'1';
const SYMLINK: u8 = b'2';
const CHAR_DEVICE: u8 = b'3';
const BLOCK_DEVICE: u8 = b'4';
const DIRECTORY: u8 = b'5';
const FIFO: u8 = b'6';

const MTIME: u64 = 1_700_000_000;

/// One tar entry, exactly as it will be written: no name is checked or
/// normalised.
#[derive(Clone, Debug)]
struct Ent {
    /// The header's name field (the first 100 bytes are written; a longer
    /// name gets a GNU long-name record unless `long_name` says otherwise).
    name: Vec<u8>,
    kind: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    /// Link target of symlinks and hard links.
    link: Vec<u8>,
    data: Vec<u8>,
    dev: (u32, u32),
    /// PAX extended header records written before the entry.
    pax: Vec<(&'static str, Vec<u8>)>,
    /// A GNU 'L' record to write before the entry, whatever `name` is.
    long_name: Option<Vec<u8>>,
    /// A GNU 'K' record to write before the entry, whatever `link` is.
    long_link: Option<Vec<u8>>,
}

impl Ent {
    fn new(kind: u8, name: impl AsRef<[u8]>) -> Ent {
        let mode = match kind {
            DIRECTORY => 0o755,
            SYMLINK => 0o777,
            _ => 0o644,
        };
        Ent {
            name: name.as_ref().to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: MTIME,
            link: Vec::new(),
            data: Vec::new(),
            dev: (0, 0),
            pax: Vec::new(),
            long_name: None,
            long_link: None,
        }
    }

    fn file(name: impl AsRef<[u8]>, data: &[u8]) -> Ent {
        let mut e = Ent::new(REGULAR, name);
        e.data = data.to_vec();
        e
    }

    fn dir(name: impl AsRef<[u8]>) -> Ent {
        Ent::new(DIRECTORY, name)
    }

    fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Ent {
        let mut e = Ent::new(SYMLINK, name);
        e.link = target.as_ref().to_vec();
        e
    }

    fn hardlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Ent {
        let mut e = Ent::new(HARDLINK, name);
        e.link = target.as_ref().to_vec();
        e
    }

    fn node(kind: u8, name: impl AsRef<[u8]>, dev: (u32, u32)) -> Ent {
        let mut e = Ent::new(kind, name);
        e.dev = dev;
        e
    }

    fn pax(mut self, key: &'static str, value: impl AsRef<[u8]>) -> Ent {
        self.pax.push((key, value.as_ref().to_vec()));
        self
    }

    fn gnu_long_name(mut self, name: impl AsRef<[u8]>) -> Ent {
        self.long_name = Some(name.as_ref().to_vec());
        self
    }

    fn gnu_long_link(mut self, link: impl AsRef<[u8]>) -> Ent {
        self.long_link = Some(link.as_ref().to_vec());
        self
    }
}

fn octal(field: &mut [u8], value: u64) {
    let text = format!("{:0width$o}\0", value, width = field.len() - 1);
    assert_eq!(text.len(), field.len(), "{value} does not fit a tar field");
    field.copy_from_slice(text.as_bytes());
}

/// One 512-byte header block; `posix` picks the ustar magic over GNU's.
fn header_block(e: &Ent, name: &[u8], kind: u8, size: u64, link: &[u8], posix: bool) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], u64::from(e.mode));
    octal(&mut h[108..116], e.uid);
    octal(&mut h[116..124], e.gid);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], e.mtime);
    h[156] = kind;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    if posix {
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
    } else {
        h[257..265].copy_from_slice(b"ustar  \0");
    }
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    octal(&mut h[329..337], u64::from(e.dev.0));
    octal(&mut h[337..345], u64::from(e.dev.1));
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

fn pad(out: &mut Vec<u8>) {
    let rest = (512 - out.len() % 512) % 512;
    out.resize(out.len() + rest, 0);
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "LEN key=value\n", LEN counting itself.
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    assert_eq!(record.len(), len);
    record
}

/// Writes the entry's extension records and header, but not its data.
fn encode_header(e: &Ent, size: u64, out: &mut Vec<u8>) {
    let posix = !e.pax.is_empty();
    if posix {
        let records: Vec<u8> = e.pax.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        let x = Ent::new(b'x', "");
        out.extend(header_block(
            &x,
            b"PaxHeaders.0/entry",
            b'x',
            records.len() as u64,
            b"",
            true,
        ));
        out.extend(&records);
        pad(out);
    }
    let long_name = e
        .long_name
        .clone()
        .or_else(|| (e.name.len() > 100).then(|| e.name.clone()));
    let long_link = e
        .long_link
        .clone()
        .or_else(|| (e.link.len() > 100).then(|| e.link.clone()));
    for (kind, long) in [(b'L', long_name), (b'K', long_link)] {
        if let Some(mut long) = long {
            long.push(0);
            let l = Ent::new(kind, "");
            out.extend(header_block(
                &l,
                b"././@LongLink",
                kind,
                long.len() as u64,
                b"",
                false,
            ));
            out.extend(&long);
            pad(out);
        }
    }
    out.extend(header_block(e, &e.name, e.kind, size, &e.link, posix));
}

fn encode(e: &Ent, out: &mut Vec<u8>) {
    encode_header(e, e.data.len() as u64, out);
    out.extend(&e.data);
    pad(out);
}

/// A complete tar stream: the entries, then the two zero blocks.
fn tar_bytes(entries: &[Ent]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        encode(e, &mut out);
    }
    out.extend([0u8; 1024]);
    out
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Each part its own gzip member, concatenated.
fn gz_members(parts: &[&[u8]]) -> Vec<u8> {
    parts.iter().flat_map(|p| gz(p)).collect()
}

fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut copy = bytes.to_vec();
    copy[at] ^= 0x55;
    copy
}

/// fw_core::manifest::path_order, which this package cannot depend on.
fn path_order(a: &str, b: &str) -> std::cmp::Ordering {
    if a == "." || b == "." {
        return (a != ".").cmp(&(b != "."));
    }
    a.split('/').cmp(b.split('/'))
}

// ---------------------------------------------------------------------------
// The real package, parsed once.

struct Base {
    /// The vendor's secret key and certificate.
    vendor_key: Vec<u8>,
    vendor_cert: Vec<u8>,
    /// Exactly what fw-unseal wrote: the tar.gz within its proof.
    unsealed: Vec<u8>,
    /// The tar.gz the vendor signed.
    tar_gz: Vec<u8>,
    /// Its decompressed tar stream.
    raw_tar: Vec<u8>,
    manifest: Value,
    manifest_json: Vec<u8>,
    sig: Vec<u8>,
    /// The manifest and signature entries as parsed.
    manifest_ent: Ent,
    sig_ent: Ent,
    /// The tree's entries (after the signature), as parsed.
    tree: Vec<Ent>,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let tmp = TempDir::new().unwrap();
        let keys = Keys::new(&tmp.path().join("keys"));
        let tree = sample_tree(tmp.path(), NAME);
        let package = ok(run(
            fw("fw-sign")
                .args(["pack", "--key"])
                .arg(&keys.vendor_key)
                .arg(&tree),
            b"",
        ));
        let unsealed = ok(run(
            fw("fw-unseal").arg("--keyring").arg(&keys.keyring),
            &package,
        ));
        assert!(is_complete_gzip(&unsealed));
        let tar_gz = without_proof(&unsealed).to_vec();
        let mut raw_tar = Vec::new();
        flate2::read::MultiGzDecoder::new(&tar_gz[..])
            .read_to_end(&mut raw_tar)
            .unwrap();
        let mut ents = Vec::new();
        let mut archive = tar::Archive::new(&raw_tar[..]);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let h = entry.header();
            let mut e = Ent::new(h.entry_type().as_byte(), entry.path_bytes());
            e.mode = h.mode().unwrap();
            e.uid = h.uid().unwrap();
            e.gid = h.gid().unwrap();
            e.mtime = h.mtime().unwrap();
            if let Some(link) = entry.link_name_bytes() {
                e.link = link.into_owned();
            }
            entry.read_to_end(&mut e.data).unwrap();
            ents.push(e);
        }
        let manifest_path = format!("{NAME}/.fw/manifest.json");
        let sig_path = format!("{NAME}/.fw/manifest.sig");
        assert_eq!(ents[0].name, manifest_path.as_bytes());
        assert_eq!(ents[1].name, sig_path.as_bytes());
        let tree: Vec<Ent> = ents.split_off(2);
        let sig_ent = ents.pop().unwrap();
        let manifest_ent = ents.pop().unwrap();
        let manifest: Value = serde_json::from_slice(&manifest_ent.data).unwrap();
        Base {
            vendor_key: std::fs::read(&keys.vendor_key).unwrap(),
            vendor_cert: std::fs::read(&keys.vendor_cert).unwrap(),
            unsealed,
            tar_gz,
            raw_tar,
            manifest_json: manifest_ent.data.clone(),
            sig: sig_ent.data.clone(),
            manifest,
            manifest_ent,
            sig_ent,
            tree,
        }
    })
}

impl Base {
    fn manifest_entries(&self) -> &Vec<Value> {
        self.manifest["entries"].as_array().unwrap()
    }

    fn manifest_entry(&self, path: &str) -> &Value {
        self.manifest_entries()
            .iter()
            .find(|e| e["path"] == path)
            .unwrap_or_else(|| panic!("{path} is not in the sample manifest"))
    }

    /// The content of bin/app: hostile files listed in a manifest carry it,
    /// so that their size and BLAKE3 are right.
    fn app(&self) -> &[u8] {
        &self
            .tree
            .iter()
            .find(|e| e.name == format!("{NAME}/bin/app").as_bytes())
            .unwrap()
            .data
    }

    /// A manifest entry for a file with bin/app's content.
    fn m_file(&self, path: &str) -> Value {
        let mut e = self.manifest_entry("bin/app").clone();
        e["path"] = json!(path);
        e["mode"] = json!(0o644);
        e.as_object_mut().unwrap().remove("hardlink");
        e
    }

    fn m_hardlink(&self, path: &str, first: &str) -> Value {
        let mut e = self.m_file(path);
        e["hardlink"] = json!(first);
        e
    }

    fn m_dir(&self, path: &str) -> Value {
        let u = &self.manifest_entry(".");
        json!({"path": path, "type": "dir", "mode": 0o755, "uid": u["uid"], "gid": u["gid"]})
    }

    fn m_symlink(&self, path: &str, target: &str) -> Value {
        let u = &self.manifest_entry(".");
        json!({
            "path": path, "type": "symlink", "mode": 0o777,
            "uid": u["uid"], "gid": u["gid"], "target": target,
        })
    }

    /// The sample manifest with `listed` added, as JSON bytes. The added
    /// entries must sort after the sample's, in the order given, so that the
    /// tar order (extras appended) stays the manifest order.
    fn manifest_plus(&self, listed: &[Value]) -> Vec<u8> {
        let mut manifest = self.manifest.clone();
        let entries = manifest["entries"].as_array_mut().unwrap();
        let n = entries.len();
        entries.extend(listed.iter().cloned());
        entries
            .sort_by(|a, b| path_order(a["path"].as_str().unwrap(), b["path"].as_str().unwrap()));
        assert_eq!(
            &entries[n..],
            listed,
            "test bug: added manifest entries must sort after the sample's, in order"
        );
        let mut json = serde_json::to_vec_pretty(&manifest).unwrap();
        json.push(b'\n');
        json
    }

    fn manifest_with_json(&self, json: &[u8]) -> Ent {
        let mut e = self.manifest_ent.clone();
        e.data = json.to_vec();
        e
    }

    /// The signature entry for a manifest of `json`, by the vendor.
    fn sig_of(&self, json: &[u8]) -> Ent {
        let mut e = self.sig_ent.clone();
        e.data = sign_detached(&self.vendor_key, json);
        e
    }

    /// The sample's tree entries with `extra` appended.
    fn tree_plus(&self, extra: Vec<Ent>) -> Vec<Ent> {
        let mut tree = self.tree.clone();
        tree.extend(extra);
        tree
    }

    /// A tar.gz: manifest (the sample's plus `listed`), signature, `tree`.
    fn package(&self, listed: &[Value], tree: Vec<Ent>) -> Vec<u8> {
        let json = self.manifest_plus(listed);
        let mut all = vec![self.manifest_with_json(&json), self.sig_of(&json)];
        all.extend(tree);
        gz(&tar_bytes(&all))
    }

    /// A tar.gz of the sample with `extra` appended to the tree and `listed`
    /// added to the manifest.
    fn variant(&self, listed: &[Value], extra: Vec<Ent>) -> Vec<u8> {
        self.package(listed, self.tree_plus(extra))
    }

    /// The sample tree with `extra` inserted right after the entry `after`.
    fn tree_inserting(&self, after: &str, extra: Ent) -> Vec<Ent> {
        let mut tree = self.tree.clone();
        let at = tree
            .iter()
            .position(|e| e.name == format!("{NAME}/{after}").as_bytes())
            .unwrap_or_else(|| panic!("no {after} in the sample tree"));
        tree.insert(at + 1, extra);
        tree
    }
}

// ---------------------------------------------------------------------------
// One case's world: ROOT/{target, canary, outside}.

struct Ctx {
    _tmp: TempDir,
    root: PathBuf,
    target: PathBuf,
    canary: PathBuf,
    outside: PathBuf,
    /// The device's keyring: the vendor's certificate.
    keyring: PathBuf,
}

impl Ctx {
    fn new() -> Ctx {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let target = root.join("target");
        let canary = root.join("canary");
        let outside = root.join("outside");
        std::fs::create_dir(&target).unwrap();
        std::fs::create_dir_all(canary.join("sub")).unwrap();
        std::fs::write(canary.join("secret"), b"canary secret\n").unwrap();
        std::fs::write(canary.join("sub/file"), b"canary file\n").unwrap();
        std::fs::create_dir(&outside).unwrap();
        let keyring = root.join("keyring");
        std::fs::create_dir(&keyring).unwrap();
        std::fs::write(keyring.join("vendor.asc"), &base().vendor_cert).unwrap();
        Ctx {
            _tmp: tmp,
            root,
            target,
            canary,
            outside,
            keyring,
        }
    }

    /// ROOT/rel as a string, for absolute names inside archives.
    fn abs(&self, rel: &str) -> String {
        format!("{}/{rel}", self.root.display())
    }

    fn staging(&self) -> PathBuf {
        self.target.join(".fw/staging")
    }

    /// fw-unpack on `input` signed by the vendor and passed through
    /// fw-unseal: with its proof.
    fn unpack(&self, args: &[&str], input: &[u8]) -> Output {
        keep_as_fuzz_seed(input);
        self.unpack_raw(args, &seal(&base().vendor_key, &self.keyring, input))
    }

    /// fw-unpack on `input` as it is.
    fn unpack_raw(&self, args: &[&str], input: &[u8]) -> Output {
        run(&mut self.unpack_cmd(args), input)
    }

    fn unpack_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = fw("fw-unpack");
        cmd.arg("--keyring")
            .arg(&self.keyring)
            .arg("--target")
            .arg(&self.target)
            .args(args);
        cmd
    }

    /// What the staging directory holds (nothing if it is absent).
    fn staging_entries(&self) -> Vec<String> {
        match std::fs::read_dir(self.staging()) {
            Ok(dir) => dir
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("{}: {e}", self.staging().display()),
        }
    }

    /// Asserts that a refused run left nothing behind: staging empty, the
    /// target holding nothing but `.fw`, the canary and `outside` as they
    /// were, and no "escaped" name anywhere under ROOT.
    #[track_caller]
    fn assert_clean(&self, case: &str, canary_before: &BTreeMap<String, String>) {
        assert_eq!(
            self.staging_entries(),
            Vec::<String>::new(),
            "{case}: a staging directory was left behind"
        );
        let top: Vec<String> = std::fs::read_dir(&self.target)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != ".fw")
            .collect();
        assert!(top.is_empty(), "{case}: the target gained {top:?}");
        assert_eq!(
            &snapshot(&self.canary),
            canary_before,
            "{case}: the canary directory beside the target changed"
        );
        assert_eq!(
            snapshot(&self.outside),
            BTreeMap::new(),
            "{case}: something was written to {}",
            self.outside.display()
        );
        let escaped: Vec<String> = snapshot(&self.root)
            .into_keys()
            .filter(|p| p.contains("escaped"))
            .collect();
        assert!(
            escaped.is_empty(),
            "{case}: hostile entries landed at {escaped:?} under {}",
            self.root.display()
        );
    }
}

/// With `FW_FUZZ_SEEDS=DIR` (set by `scripts/fuzz seeds`), keeps each
/// archive given to fw-unpack as a seed of the fuzz targets.
fn keep_as_fuzz_seed(tar_gz: &[u8]) {
    if let Some(dir) = std::env::var_os("FW_FUZZ_SEEDS") {
        let name = format!("hostile-{}.tar.gz", &blake3::hash(tar_gz).to_hex()[..16]);
        std::fs::write(Path::new(&dir).join(name), tar_gz).expect("FW_FUZZ_SEEDS is writable");
    }
}

/// Every entry under `dir` (not following symlinks), with its type, mode,
/// link count and content or target. Empty if `dir` does not exist.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    fn go(dir: &Path, prefix: &str, map: &mut BTreeMap<String, String>) {
        let Ok(read) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in read {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = format!("{prefix}{}", entry.file_name().to_string_lossy());
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let desc = if meta.file_type().is_symlink() {
                format!("symlink -> {:?}", std::fs::read_link(&path).unwrap())
            } else if meta.is_dir() {
                go(&path, &format!("{rel}/"), map);
                format!("dir {:o}", meta.mode())
            } else if meta.is_file() {
                let content = std::fs::read(&path).unwrap_or_default();
                format!(
                    "file {:o} nlink {} {:?}",
                    meta.mode(),
                    meta.nlink(),
                    String::from_utf8_lossy(&content)
                )
            } else {
                format!("other {:?} {:o}", meta.file_type(), meta.mode())
            };
            map.insert(rel, desc);
        }
    }
    let mut map = BTreeMap::new();
    go(dir, "", &mut map);
    map
}

/// Runs fw-unpack on `input` in a fresh world and asserts the refusal:
/// exit `code`, one line on stderr with "error:" and one of `names` (none
/// required if `names` is empty), empty stdout, nothing left behind.
/// `build` makes the input, knowing the world's paths.
#[track_caller]
fn expect_refused(
    case: &str,
    args: &[&str],
    code: i32,
    names: &[&str],
    build: impl FnOnce(&Ctx) -> Vec<u8>,
) -> String {
    check_refused(case, code, names, |ctx| {
        let input = build(ctx);
        ctx.unpack(args, &input)
    })
}

/// As `expect_refused`, for fw-unpack run by `unpack` in a fresh world.
#[track_caller]
fn check_refused(
    case: &str,
    code: i32,
    names: &[&str],
    unpack: impl FnOnce(&Ctx) -> Output,
) -> String {
    let ctx = Ctx::new();
    let canary_before = snapshot(&ctx.canary);
    let out = unpack(&ctx);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // Shown with --nocapture, to review what each refusal says.
    eprintln!("{case}: {:?}: {}", out.status, stderr.trim_end());
    assert_eq!(
        out.status.code(),
        Some(code),
        "{case}: expected exit {code}, got {:?}; stderr: {stderr}",
        out.status
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "{case}: stderr must be one line: {stderr:?}"
    );
    assert!(
        stderr.contains("error:"),
        "{case}: no \"error:\" on stderr: {stderr:?}"
    );
    assert!(
        names.is_empty() || names.iter().any(|n| stderr.contains(n)),
        "{case}: stderr does not name the entry (one of {names:?}): {stderr:?}"
    );
    assert!(
        out.stdout.is_empty(),
        "{case}: stdout must be empty: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    ctx.assert_clean(case, &canary_before);
    stderr
}

/// A refusal (exit 5) of an entry that is unsafe in itself and not listed
/// in the manifest: path safety is checked first, so the error names the
/// real problem, not the manifest.
#[track_caller]
fn expect_unsafe(case: &str, names: &[&str], build: impl FnOnce(&Ctx) -> Vec<u8>) {
    let stderr = expect_refused(case, &[], 5, names, build);
    assert!(
        !stderr.contains("manifest"),
        "{case}: path safety comes first; the error names the real problem, not the \
         manifest: {stderr:?}"
    );
}

/// Asserts that `out` is a success that printed one staging path holding
/// exactly the sample tree; returns that path.
#[track_caller]
fn expect_unpacked(case: &str, ctx: &Ctx, base: &Base, out: Output) -> PathBuf {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{case}: expected success, got {:?}; stderr: {stderr}",
        out.status
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{case}: one path on stdout: {stdout:?}");
    let printed = PathBuf::from(lines[0]);
    let staging = ctx.staging();
    assert!(
        printed.is_absolute() && printed.starts_with(&staging),
        "{case}: {} is not under {}",
        printed.display(),
        staging.display()
    );
    assert_eq!(
        printed.file_name().unwrap(),
        NAME,
        "{case}: the printed path is …/staging/<dir>/{NAME}: {}",
        printed.display()
    );
    assert_eq!(
        printed.parent().and_then(Path::parent),
        Some(staging.as_path()),
        "{case}: the printed path is …/staging/<dir>/{NAME}: {}",
        printed.display()
    );
    assert!(
        std::fs::symlink_metadata(&printed).unwrap().is_dir(),
        "{case}: {} is a directory",
        printed.display()
    );
    check_tree(case, base, &printed);
    let top: Vec<String> = std::fs::read_dir(&ctx.target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".fw")
        .collect();
    assert!(
        top.is_empty(),
        "{case}: fw-unpack writes only under .fw/: {top:?}"
    );
    printed
}

/// The tree at `dir` is the sample: every manifest entry with its type,
/// mode, content, target and hard links, and nothing else.
#[track_caller]
fn check_tree(case: &str, base: &Base, dir: &Path) {
    let content: HashMap<String, &[u8]> = base
        .tree
        .iter()
        .filter(|e| e.kind == REGULAR)
        .map(|e| {
            let name = String::from_utf8(e.name.clone()).unwrap();
            let rel = name.strip_prefix(&format!("{NAME}/")).unwrap().to_string();
            (rel, &e.data[..])
        })
        .collect();
    let mut expected = BTreeSet::new();
    for e in base.manifest_entries() {
        let path = e["path"].as_str().unwrap();
        let full = if path == "." {
            dir.to_path_buf()
        } else {
            expected.insert(path.to_string());
            dir.join(path)
        };
        let meta = std::fs::symlink_metadata(&full)
            .unwrap_or_else(|err| panic!("{case}: {path} was not unpacked: {err}"));
        let mode = e["mode"].as_u64().unwrap() as u32;
        match e["type"].as_str().unwrap() {
            "dir" => {
                assert!(meta.is_dir(), "{case}: {path} is a directory");
                assert_eq!(meta.mode() & 0o7777, mode, "{case}: mode of {path}");
            }
            "file" => {
                assert!(meta.is_file(), "{case}: {path} is a regular file");
                assert_eq!(meta.mode() & 0o7777, mode, "{case}: mode of {path}");
                let first = e["hardlink"].as_str().unwrap_or(path);
                assert_eq!(
                    std::fs::read(&full).unwrap(),
                    content[first],
                    "{case}: content of {path}"
                );
                if first != path {
                    let first_meta = std::fs::symlink_metadata(dir.join(first)).unwrap();
                    assert_eq!(
                        (meta.dev(), meta.ino()),
                        (first_meta.dev(), first_meta.ino()),
                        "{case}: {path} is a hard link of {first}"
                    );
                }
            }
            "symlink" => {
                assert!(meta.file_type().is_symlink(), "{case}: {path} is a symlink");
                assert_eq!(
                    std::fs::read_link(&full).unwrap(),
                    Path::new(e["target"].as_str().unwrap()),
                    "{case}: target of {path}"
                );
            }
            other => panic!("unexpected type {other}"),
        }
    }
    let found: BTreeSet<String> = snapshot(dir)
        .into_keys()
        .filter(|p| p != ".fw" && !p.starts_with(".fw/"))
        .collect();
    assert_eq!(
        found, expected,
        "{case}: the unpacked tree has exactly the manifest's entries"
    );
    assert_eq!(
        std::fs::read(dir.join(".fw/manifest.json")).unwrap(),
        base.manifest_json,
        "{case}: .fw/manifest.json"
    );
    assert_eq!(
        std::fs::read(dir.join(".fw/manifest.sig")).unwrap(),
        base.sig,
        "{case}: .fw/manifest.sig"
    );
}

// ---------------------------------------------------------------------------
// The positive controls.

#[test]
fn valid_package_unpacks_exactly() {
    let base = base();
    let raw = &base.raw_tar;
    let all: Vec<Ent> = [base.manifest_ent.clone(), base.sig_ent.clone()]
        .into_iter()
        .chain(base.tree.iter().cloned())
        .collect();
    let rebuilt = tar_bytes(&all);
    let boundary = (512 + base.manifest_json.len()).div_ceil(512) * 512;
    let blocks: Vec<&[u8]> = raw.chunks(512).collect();
    let whole = raw.len().to_string();
    let ctx = Ctx::new();
    let out = ctx.unpack_raw(&[], &base.unsealed);
    expect_unpacked("as fw-unseal wrote it", &ctx, base, out);
    let cases: Vec<(&str, Vec<&str>, Vec<u8>)> = vec![
        ("the tar.gz fw-unseal verified", vec![], base.tar_gz.clone()),
        ("rebuilt by this test's tar writer", vec![], gz(&rebuilt)),
        (
            "with --max-bytes as large as the whole tar",
            vec!["--max-bytes", &whole],
            base.tar_gz.clone(),
        ),
        (
            "two gzip members split after the manifest",
            vec![],
            gz_members(&[&raw[..boundary], &raw[boundary..]]),
        ),
        (
            "two gzip members split inside a header",
            vec![],
            gz_members(&[&raw[..boundary + 77], &raw[boundary + 77..]]),
        ),
        (
            "three gzip members, the middle one empty",
            vec![],
            gz_members(&[&raw[..raw.len() / 2], b"", &raw[raw.len() / 2..]]),
        ),
        (
            "one gzip member per 512-byte block",
            vec![],
            gz_members(&blocks),
        ),
    ];
    for (case, args, input) in cases {
        let ctx = Ctx::new();
        let canary_before = snapshot(&ctx.canary);
        let out = ctx.unpack(&args, &input);
        expect_unpacked(case, &ctx, base, out);
        assert_eq!(snapshot(&ctx.canary), canary_before, "{case}: canary");
        assert!(snapshot(&ctx.outside).is_empty(), "{case}: outside");
    }

    // Each run gets a fresh staging directory.
    let ctx = Ctx::new();
    let first = expect_unpacked("first of two", &ctx, base, ctx.unpack(&[], &base.tar_gz));
    let second = expect_unpacked("second of two", &ctx, base, ctx.unpack(&[], &base.tar_gz));
    assert_ne!(first, second, "two runs, two staging directories");
    check_tree("first, after the second run", base, &first);
}

/// GNU tar pads its output to 10240-byte records: zeros after the
/// end-of-archive blocks, inside the gzip stream, are not an error.
#[test]
fn accepts_zero_padding_after_end_of_archive() {
    let base = base();
    let mut padded = base.raw_tar.clone();
    padded.resize(padded.len().div_ceil(10240) * 10240 + 10240, 0);
    let ctx = Ctx::new();
    let out = ctx.unpack(&[], &gz(&padded));
    expect_unpacked("tar padded to 10240-byte records", &ctx, base, out);
}

// ---------------------------------------------------------------------------
// Refusals.

/// `..` components, in the header name, a PAX path and a GNU long name.
#[test]
fn refuses_dotdot_components() {
    let base = base();
    let up5 = "../".repeat(5);
    let cases: Vec<(&str, String)> = vec![
        ("top-level ..", "../escaped-top".to_string()),
        (
            "NAME/.. to the canary",
            format!("{NAME}/{up5}canary/escaped-dotdot"),
        ),
        (
            "NAME/bin/../.. in the middle",
            format!("{NAME}/bin/../{up5}outside/escaped-middle"),
        ),
        ("a bare NAME/..", format!("{NAME}/..")),
        ("trailing ..", format!("{NAME}/bin/escaped-trailing/..")),
    ];
    for (case, name) in cases {
        let fragment = if name.ends_with("/..") && !name.contains("escaped") {
            format!("{NAME}/..")
        } else {
            name.rsplit('/')
                .find(|c| c.contains("escaped"))
                .unwrap()
                .to_string()
        };
        expect_unsafe(case, &[&fragment], |_| {
            base.variant(&[], vec![Ent::file(&name, base.app())])
        });
        let case = format!("{case}, as a directory");
        expect_unsafe(&case, &[&fragment], |_| {
            base.variant(&[], vec![Ent::dir(format!("{name}/"))])
        });
    }
    expect_unsafe(
        "deep .. that climbs past / and back into ROOT",
        &["escaped-deep"],
        |ctx| {
            let name = format!(
                "{NAME}/{}{}/outside/escaped-deep",
                "../".repeat(30),
                ctx.root.display().to_string().trim_start_matches('/')
            );
            base.variant(&[], vec![Ent::file(name, base.app())])
        },
    );
    expect_unsafe(".. in a PAX path record", &["escaped-pax"], |_| {
        let e = Ent::file(format!("{NAME}/zinnocent"), base.app())
            .pax("path", format!("{NAME}/{up5}outside/escaped-pax"));
        base.variant(&[], vec![e])
    });
    expect_unsafe(".. in a GNU long name", &["escaped-gnu"], |_| {
        let e = Ent::file(format!("{NAME}/zinnocent"), base.app())
            .gnu_long_name(format!("{NAME}/{up5}outside/escaped-gnu"));
        base.variant(&[], vec![e])
    });
    expect_unsafe(
        ".. in a long (>100 bytes) GNU name",
        &["escaped-long"],
        |_| {
            let name = format!(
                "{NAME}/{}/{}{up5}outside/escaped-long",
                "d".repeat(90),
                "../"
            );
            base.variant(&[], vec![Ent::file(name, base.app())])
        },
    );
}

/// Absolute names, also from PAX `path` records and GNU 'L' headers.
#[test]
fn refuses_absolute_paths() {
    let base = base();
    expect_unsafe("absolute file name", &["escaped-abs"], |ctx| {
        base.variant(
            &[],
            vec![Ent::file(ctx.abs("outside/escaped-abs"), base.app())],
        )
    });
    expect_unsafe("absolute directory name", &["escaped-absdir"], |ctx| {
        base.variant(&[], vec![Ent::dir(ctx.abs("outside/escaped-absdir/"))])
    });
    expect_unsafe("absolute name with //", &["escaped-dblslash"], |ctx| {
        let name = format!("/{}", ctx.abs("outside/escaped-dblslash"));
        base.variant(&[], vec![Ent::file(name, base.app())])
    });
    expect_unsafe("absolute symlink name", &["escaped-abslink"], |ctx| {
        base.variant(
            &[],
            vec![Ent::symlink(ctx.abs("outside/escaped-abslink"), "/")],
        )
    });
    expect_unsafe("absolute PAX path", &["escaped-pax"], |ctx| {
        let e = Ent::file(format!("{NAME}/zinnocent"), base.app())
            .pax("path", ctx.abs("outside/escaped-pax"));
        base.variant(&[], vec![e])
    });
    expect_unsafe(
        "absolute PAX path on a directory",
        &["escaped-paxdir"],
        |ctx| {
            let e = Ent::dir(format!("{NAME}/zinnocent/"))
                .pax("path", ctx.abs("outside/escaped-paxdir"));
            base.variant(&[], vec![e])
        },
    );
    expect_unsafe("absolute GNU long name", &["escaped-gnu"], |ctx| {
        let e = Ent::file(format!("{NAME}/zinnocent"), base.app())
            .gnu_long_name(ctx.abs("outside/escaped-gnu"));
        base.variant(&[], vec![e])
    });
    expect_unsafe(
        "absolute long (>100 bytes) name",
        &["escaped-long"],
        |ctx| {
            let name = ctx.abs(&format!("outside/{}escaped-long", "x".repeat(100)));
            base.variant(&[], vec![Ent::file(name, base.app())])
        },
    );
}

/// Everything lies under NAME/.
#[test]
fn refuses_a_second_top_level_entry() {
    let base = base();
    expect_refused(
        "a second top-level directory",
        &[],
        5,
        &["zother-escaped"],
        |_| {
            base.variant(
                &[],
                vec![
                    Ent::dir("zother-escaped/"),
                    Ent::file("zother-escaped/file", base.app()),
                ],
            )
        },
    );
    expect_refused(
        "a file in a second top-level directory",
        &[],
        5,
        &["zother-escaped"],
        |_| base.variant(&[], vec![Ent::file("zother-escaped/file", base.app())]),
    );
    expect_refused("a top-level file", &[], 5, &["escaped-toplevel"], |_| {
        base.variant(&[], vec![Ent::file("escaped-toplevel", base.app())])
    });
    expect_refused("a top-level symlink", &[], 5, &["escaped-toplink"], |ctx| {
        base.variant(
            &[],
            vec![Ent::symlink("escaped-toplink", ctx.abs("outside"))],
        )
    });
    expect_refused(
        "a sibling whose name extends NAME",
        &[],
        5,
        &["fw-escaped"],
        |_| base.variant(&[], vec![Ent::file("fw-escaped/file", base.app())]),
    );
}

/// A symlink created earlier in the archive is never written through.
#[test]
fn refuses_writing_through_symlinks() {
    let base = base();
    let up5 = "../".repeat(5);
    // (case, the fragment naming the entry, (manifest entries, tar entries))
    type Make = Box<dyn Fn(&Ctx) -> (Vec<Value>, Vec<Ent>)>;
    let cases: Vec<(&str, &str, Make)> = vec![
        (
            "file through a symlink to an absolute dir",
            "escaped-sym-abs",
            Box::new(move |ctx: &Ctx| {
                (
                    vec![
                        base.m_symlink("zlnk", &ctx.abs("outside")),
                        base.m_file("zlnk/escaped-sym-abs"),
                    ],
                    vec![
                        Ent::symlink(format!("{NAME}/zlnk"), ctx.abs("outside")),
                        Ent::file(format!("{NAME}/zlnk/escaped-sym-abs"), base.app()),
                    ],
                )
            }),
        ),
        (
            "dir through a symlink to an absolute dir",
            "escaped-sym-absdir",
            Box::new(move |ctx: &Ctx| {
                (
                    vec![
                        base.m_symlink("zlnk", &ctx.abs("outside")),
                        base.m_dir("zlnk/escaped-sym-absdir"),
                    ],
                    vec![
                        Ent::symlink(format!("{NAME}/zlnk"), ctx.abs("outside")),
                        Ent::dir(format!("{NAME}/zlnk/escaped-sym-absdir")),
                    ],
                )
            }),
        ),
        (
            "file through a relative ../.. symlink",
            "escaped-sym-rel",
            Box::new(move |_: &Ctx| {
                let target = format!("{up5}outside");
                (
                    vec![
                        base.m_symlink("zlnk", &target),
                        base.m_file("zlnk/escaped-sym-rel"),
                    ],
                    vec![
                        Ent::symlink(format!("{NAME}/zlnk"), &target),
                        Ent::file(format!("{NAME}/zlnk/escaped-sym-rel"), base.app()),
                    ],
                )
            }),
        ),
        (
            "dir through a relative ../.. symlink",
            "escaped-sym-reldir",
            Box::new(move |_: &Ctx| {
                let target = format!("{}outside", "../".repeat(5));
                (
                    vec![
                        base.m_symlink("zlnk", &target),
                        base.m_dir("zlnk/escaped-sym-reldir"),
                    ],
                    vec![
                        Ent::symlink(format!("{NAME}/zlnk"), &target),
                        Ent::dir(format!("{NAME}/zlnk/escaped-sym-reldir/")),
                    ],
                )
            }),
        ),
        (
            "symlink through a symlink",
            "escaped-sym-sym",
            Box::new(move |ctx: &Ctx| {
                (
                    vec![
                        base.m_symlink("zlnk", &ctx.abs("outside")),
                        base.m_symlink("zlnk/escaped-sym-sym", "x"),
                    ],
                    vec![
                        Ent::symlink(format!("{NAME}/zlnk"), ctx.abs("outside")),
                        Ent::symlink(format!("{NAME}/zlnk/escaped-sym-sym"), "x"),
                    ],
                )
            }),
        ),
        (
            "hard link created through a symlink",
            "escaped-sym-hl",
            Box::new(move |ctx: &Ctx| {
                (
                    vec![
                        base.m_symlink("zlnk", &ctx.abs("outside")),
                        base.m_hardlink("zlnk/escaped-sym-hl", "bin/app"),
                    ],
                    vec![
                        Ent::symlink(format!("{NAME}/zlnk"), ctx.abs("outside")),
                        Ent::hardlink(
                            format!("{NAME}/zlnk/escaped-sym-hl"),
                            format!("{NAME}/bin/app"),
                        ),
                    ],
                )
            }),
        ),
        (
            "file two levels below a symlink",
            "escaped-sym-deep",
            Box::new(move |ctx: &Ctx| {
                (
                    vec![
                        base.m_symlink("zlnk", &ctx.abs("outside")),
                        base.m_file("zlnk/sub/escaped-sym-deep"),
                    ],
                    vec![
                        Ent::symlink(format!("{NAME}/zlnk"), ctx.abs("outside")),
                        Ent::file(format!("{NAME}/zlnk/sub/escaped-sym-deep"), base.app()),
                    ],
                )
            }),
        ),
        (
            "directory two levels below a symlink, then a file in it",
            "escaped-sym-sub",
            Box::new(move |ctx: &Ctx| {
                (
                    vec![
                        base.m_symlink("zlnk", &ctx.abs("outside")),
                        base.m_dir("zlnk/escaped-sym-sub"),
                        base.m_file("zlnk/escaped-sym-sub/file"),
                    ],
                    vec![
                        Ent::symlink(format!("{NAME}/zlnk"), ctx.abs("outside")),
                        Ent::dir(format!("{NAME}/zlnk/escaped-sym-sub/")),
                        Ent::file(format!("{NAME}/zlnk/escaped-sym-sub/file"), base.app()),
                    ],
                )
            }),
        ),
        (
            "file through a chain of two symlinks",
            "escaped-chain",
            Box::new(move |ctx: &Ctx| {
                (
                    vec![
                        base.m_symlink("zlnk-a", &ctx.abs("outside")),
                        base.m_symlink("zlnk-b", "zlnk-a"),
                        base.m_file("zlnk-b/escaped-chain"),
                    ],
                    vec![
                        Ent::symlink(format!("{NAME}/zlnk-a"), ctx.abs("outside")),
                        Ent::symlink(format!("{NAME}/zlnk-b"), "zlnk-a"),
                        Ent::file(format!("{NAME}/zlnk-b/escaped-chain"), base.app()),
                    ],
                )
            }),
        ),
        (
            "file through a symlink in a subdirectory",
            "escaped-nested",
            Box::new(move |ctx: &Ctx| {
                (
                    vec![
                        base.m_symlink("var/zlnk", &ctx.abs("outside")),
                        base.m_file("var/zlnk/escaped-nested"),
                    ],
                    vec![
                        Ent::symlink(format!("{NAME}/var/zlnk"), ctx.abs("outside")),
                        Ent::file(format!("{NAME}/var/zlnk/escaped-nested"), base.app()),
                    ],
                )
            }),
        ),
        (
            "file through a symlink to a directory inside the tree",
            "escaped-sym-inner",
            Box::new(move |_: &Ctx| {
                (
                    vec![
                        base.m_symlink("zlnk", "bin"),
                        base.m_file("zlnk/escaped-sym-inner"),
                    ],
                    vec![
                        Ent::symlink(format!("{NAME}/zlnk"), "bin"),
                        Ent::file(format!("{NAME}/zlnk/escaped-sym-inner"), base.app()),
                    ],
                )
            }),
        ),
    ];
    for (case, fragment, make) in cases {
        expect_refused(case, &[], 5, &[fragment], |ctx| {
            let (listed, extra) = make(ctx);
            base.variant(&listed, extra)
        });
    }
    expect_unsafe(
        "file through a listed symlink, the file itself unlisted",
        &["escaped-unlisted"],
        |ctx| {
            base.variant(
                &[base.m_symlink("zlnk", &ctx.abs("outside"))],
                vec![
                    Ent::symlink(format!("{NAME}/zlnk"), ctx.abs("outside")),
                    Ent::file(format!("{NAME}/zlnk/escaped-unlisted"), base.app()),
                ],
            )
        },
    );
    // The tree's root itself a symlink out of the staging directory.
    expect_refused(
        "NAME itself is a symlink to an outside dir",
        &[],
        5,
        &["fw/", "\"fw\"", "'fw'", "`fw`", " fw:", " fw "],
        |ctx| {
            let mut tree = base.tree.clone();
            tree[0] = Ent::symlink(NAME, ctx.abs("outside"));
            let mut all = vec![base.manifest_ent.clone(), base.sig_ent.clone()];
            all.extend(tree);
            gz(&tar_bytes(&all))
        },
    );
}

/// Hard links only to an earlier regular file of the same tree.
#[test]
fn refuses_unsafe_hard_links() {
    let base = base();
    let up5 = "../".repeat(5);
    // (case, the fragment naming the entry, (manifest entries, tar entries))
    type Make = Box<dyn Fn(&Ctx) -> (Vec<Value>, Vec<Ent>)>;
    let hl = move |path: &'static str, target: String| -> (Vec<Value>, Vec<Ent>) {
        let first = target
            .strip_prefix(&format!("{NAME}/"))
            .unwrap_or(&target)
            .to_string();
        (
            vec![base.m_hardlink(path, &first)],
            vec![Ent::hardlink(format!("{NAME}/{path}"), &target)],
        )
    };
    let cases: Vec<(&str, &str, Make)> = vec![
        (
            "target outside through ..",
            "zhl-escaped-dotdot",
            Box::new(move |_: &Ctx| hl("zhl-escaped-dotdot", format!("{NAME}/{up5}canary/secret"))),
        ),
        (
            "target absolute",
            "zhl-escaped-abs",
            Box::new(move |ctx: &Ctx| hl("zhl-escaped-abs", ctx.abs("canary/secret"))),
        ),
        (
            "target a symlink (to an outside file) made earlier",
            "zhl-via-symlink",
            Box::new(move |ctx: &Ctx| {
                let (mut listed, mut extra) = hl("zhl-via-symlink", format!("{NAME}/zhl-lnk"));
                listed.insert(0, base.m_symlink("zhl-lnk", &ctx.abs("canary/secret")));
                extra.insert(
                    0,
                    Ent::symlink(format!("{NAME}/zhl-lnk"), ctx.abs("canary/secret")),
                );
                (listed, extra)
            }),
        ),
        (
            "target the sample's symlink bin/env",
            "zhl-to-env",
            Box::new(move |_: &Ctx| hl("zhl-to-env", format!("{NAME}/bin/env"))),
        ),
        (
            "target a path through a symlinked dir",
            "zhl-through",
            Box::new(move |ctx: &Ctx| {
                let (mut listed, mut extra) =
                    hl("zhl-through", format!("{NAME}/zhl-dirlnk/secret"));
                listed.insert(0, base.m_symlink("zhl-dirlnk", &ctx.abs("canary")));
                extra.insert(
                    0,
                    Ent::symlink(format!("{NAME}/zhl-dirlnk"), ctx.abs("canary")),
                );
                (listed, extra)
            }),
        ),
        (
            "target a later entry",
            "zhl-later",
            Box::new(move |_: &Ctx| {
                let (mut listed, mut extra) = hl("zhl-later", format!("{NAME}/zz-later-file"));
                listed.push(base.m_file("zz-later-file"));
                extra.push(Ent::file(format!("{NAME}/zz-later-file"), base.app()));
                (listed, extra)
            }),
        ),
        (
            "target a directory",
            "zhl-dir",
            Box::new(move |_: &Ctx| hl("zhl-dir", format!("{NAME}/bin"))),
        ),
        (
            "target not in the archive",
            "zhl-missing",
            Box::new(move |_: &Ctx| hl("zhl-missing", format!("{NAME}/no-such-file"))),
        ),
        (
            "target itself",
            "zhl-self",
            Box::new(move |_: &Ctx| hl("zhl-self", format!("{NAME}/zhl-self"))),
        ),
        (
            "target in another top-level directory",
            "zhl-other",
            Box::new(move |_: &Ctx| hl("zhl-other", "other/bin/app".to_string())),
        ),
        (
            "target absolute in a PAX linkpath",
            "zhl-pax",
            Box::new(move |ctx: &Ctx| {
                let (listed, mut extra) = hl("zhl-pax", ctx.abs("canary/secret"));
                extra[0].link = format!("{NAME}/bin/app").into_bytes();
                extra[0] = extra[0].clone().pax("linkpath", ctx.abs("canary/secret"));
                (listed, extra)
            }),
        ),
        (
            "target absolute in a GNU long link name",
            "zhl-gnu",
            Box::new(move |ctx: &Ctx| {
                let (listed, mut extra) = hl("zhl-gnu", ctx.abs("canary/secret"));
                extra[0].link = format!("{NAME}/bin/app").into_bytes();
                extra[0] = extra[0].clone().gnu_long_link(ctx.abs("canary/secret"));
                (listed, extra)
            }),
        ),
    ];
    for (case, fragment, make) in cases {
        expect_refused(case, &[], 5, &[fragment], |ctx| {
            let (listed, extra) = make(ctx);
            base.variant(&listed, extra)
        });
    }
    expect_unsafe(
        "target absolute, the link unlisted",
        &["zhl-unlisted"],
        |ctx| {
            base.variant(
                &[],
                vec![Ent::hardlink(
                    format!("{NAME}/zhl-unlisted"),
                    ctx.abs("canary/secret"),
                )],
            )
        },
    );
}

/// No device nodes or fifos, listed in the manifest as files or not.
#[test]
fn refuses_device_nodes_and_fifos() {
    let base = base();
    for (case, kind, name, dev) in [
        ("character device", CHAR_DEVICE, "zdev-chr", (1, 3)),
        ("block device", BLOCK_DEVICE, "zdev-blk", (7, 0)),
        ("fifo", FIFO, "zdev-fifo", (0, 0)),
    ] {
        expect_refused(
            &format!("{case}, listed as a file"),
            &[],
            5,
            &[name],
            |_| {
                base.variant(
                    &[base.m_file(name)],
                    vec![Ent::node(kind, format!("{NAME}/{name}"), dev)],
                )
            },
        );
        expect_unsafe(&format!("{case}, not listed"), &[name], |_| {
            base.variant(&[], vec![Ent::node(kind, format!("{NAME}/{name}"), dev)])
        });
    }
    expect_refused(
        "an unknown entry type 'Z', listed as a file",
        &[],
        5,
        &["zdev-unknown"],
        |_| {
            let mut e = Ent::file(format!("{NAME}/zdev-unknown"), base.app());
            e.kind = b'Z';
            base.variant(&[base.m_file("zdev-unknown")], vec![e])
        },
    );
    expect_refused(
        "character device replacing bin/app",
        &[],
        5,
        &["bin/app"],
        |_| {
            let mut tree = base.tree.clone();
            let at = tree
                .iter()
                .position(|e| e.name == format!("{NAME}/bin/app").as_bytes())
                .unwrap();
            tree[at] = Ent::node(CHAR_DEVICE, format!("{NAME}/bin/app"), (1, 3));
            base.package(&[], tree)
        },
    );
}

/// A path appears once.
#[test]
fn refuses_duplicate_paths() {
    let base = base();
    let config = format!("{NAME}/etc/app/config");
    expect_refused("a file twice", &[], 5, &["etc/app/config"], |_| {
        base.package(
            &[],
            base.tree_inserting("etc/app/config", Ent::file(&config, b"level = 0\n")),
        )
    });
    expect_refused("a directory twice", &[], 5, &["var/empty"], |_| {
        base.package(
            &[],
            base.tree_inserting("var/empty", Ent::dir(format!("{NAME}/var/empty"))),
        )
    });
    expect_refused(
        "a symlink twice, the second pointing at the canary",
        &[],
        5,
        &["bin/env"],
        |ctx| {
            base.package(
                &[],
                base.tree_inserting(
                    "bin/env",
                    Ent::symlink(format!("{NAME}/bin/env"), ctx.abs("canary/secret")),
                ),
            )
        },
    );
    expect_refused(
        "a file over a symlink to the canary",
        &[],
        5,
        &["zlnk-dup"],
        |ctx| {
            base.variant(
                &[base.m_symlink("zlnk-dup", &ctx.abs("canary/secret"))],
                vec![
                    Ent::symlink(format!("{NAME}/zlnk-dup"), ctx.abs("canary/secret")),
                    Ent::file(format!("{NAME}/zlnk-dup"), b"escaped: overwritten\n"),
                ],
            )
        },
    );
    expect_refused(
        "a hard link over a symlink to the canary",
        &[],
        5,
        &["zlnk-dup"],
        |ctx| {
            base.variant(
                &[base.m_symlink("zlnk-dup", &ctx.abs("canary/secret"))],
                vec![
                    Ent::symlink(format!("{NAME}/zlnk-dup"), ctx.abs("canary/secret")),
                    Ent::hardlink(format!("{NAME}/zlnk-dup"), format!("{NAME}/bin/app")),
                ],
            )
        },
    );
    expect_refused("a directory over a file", &[], 5, &["zdup"], |_| {
        base.variant(
            &[base.m_file("zdup")],
            vec![
                Ent::file(format!("{NAME}/zdup"), base.app()),
                Ent::dir(format!("{NAME}/zdup/")),
            ],
        )
    });
    expect_refused("a file over a directory", &[], 5, &["zdup"], |_| {
        base.variant(
            &[base.m_dir("zdup")],
            vec![
                Ent::dir(format!("{NAME}/zdup/")),
                Ent::file(format!("{NAME}/zdup"), base.app()),
            ],
        )
    });
    for (case, spelled) in [
        (
            "a file twice, spelled with /./",
            format!("{NAME}/etc/./app/config"),
        ),
        (
            "a file twice, spelled with //",
            format!("{NAME}/etc//app/config"),
        ),
    ] {
        expect_refused(case, &[], 5, &["config"], |_| {
            base.package(
                &[],
                base.tree_inserting("etc/app/config", Ent::file(&spelled, b"level = 0\n")),
            )
        });
    }
    expect_refused("the tree's root twice", &[], 5, &[], |_| {
        base.variant(&[], vec![Ent::dir(format!("{NAME}/"))])
    });
}

/// The manifest comes first, the signature second.
#[test]
fn refuses_a_missing_or_misplaced_manifest() {
    let base = base();
    let m = || base.manifest_ent.clone();
    let s = || base.sig_ent.clone();
    let t = || base.tree.clone();
    let cat = |parts: Vec<Vec<Ent>>| gz(&tar_bytes(&parts.concat()));
    let config_first = {
        let mut tree = t();
        let at = tree
            .iter()
            .position(|e| e.name.ends_with(b"etc/app/config"))
            .unwrap();
        let config = tree.remove(at);
        (config, tree)
    };
    let cases: Vec<(&str, Vec<&str>, Vec<u8>)> = vec![
        (
            "signature first",
            vec!["manifest"],
            cat(vec![vec![s(), m()], t()]),
        ),
        (
            "the tree's root first",
            vec!["manifest"],
            cat(vec![vec![t()[0].clone(), m(), s()], t()[1..].to_vec()]),
        ),
        (
            "a tree file first",
            vec!["manifest"],
            cat(vec![
                vec![config_first.0.clone(), m(), s()],
                config_first.1.clone(),
            ]),
        ),
        ("no manifest", vec!["manifest"], cat(vec![vec![s()], t()])),
        (
            "no manifest, no signature",
            vec!["manifest"],
            cat(vec![t()]),
        ),
        (
            "no signature",
            vec!["manifest.sig", "signature"],
            cat(vec![vec![m()], t()]),
        ),
        (
            "the manifest twice",
            vec!["manifest"],
            cat(vec![vec![m(), m(), s()], t()]),
        ),
        (
            "the manifest entry is a symlink to the canary",
            vec!["manifest"],
            cat(vec![
                vec![
                    Ent::symlink(
                        format!("{NAME}/.fw/manifest.json"),
                        "../../../../../canary/secret",
                    ),
                    s(),
                ],
                t(),
            ]),
        ),
        (
            "the signature entry is a symlink to the canary",
            vec!["manifest.sig"],
            cat(vec![
                vec![
                    m(),
                    Ent::symlink(
                        format!("{NAME}/.fw/manifest.sig"),
                        "../../../../../canary/secret",
                    ),
                ],
                t(),
            ]),
        ),
        (
            "the signature entry is a hard link to the manifest",
            vec!["manifest.sig"],
            cat(vec![
                vec![
                    m(),
                    Ent::hardlink(
                        format!("{NAME}/.fw/manifest.sig"),
                        format!("{NAME}/.fw/manifest.json"),
                    ),
                ],
                t(),
            ]),
        ),
        ("an empty archive", vec!["manifest"], gz(&[0u8; 1024])),
        (
            "a manifest that is not JSON",
            vec!["manifest"],
            cat(vec![
                vec![
                    base.manifest_with_json(b"this is not json\n"),
                    base.sig_of(b"this is not json\n"),
                ],
                t(),
            ]),
        ),
        ("a manifest listing an unsafe path", vec!["manifest"], {
            let mut manifest = base.manifest.clone();
            let entries = manifest["entries"].as_array_mut().unwrap();
            entries.insert(1, base.m_file("../escaped-manifest"));
            let json = serde_json::to_vec_pretty(&manifest).unwrap();
            cat(vec![
                vec![base.manifest_with_json(&json), base.sig_of(&json)],
                t(),
            ])
        }),
        (
            "a manifest under another top-level name",
            vec!["manifest"],
            {
                let mut other = m();
                other.name = b"zother/.fw/manifest.json".to_vec();
                cat(vec![vec![other, s()], t()])
            },
        ),
    ];
    for (case, names, input) in cases {
        expect_refused(case, &[], 5, &names, |_| input);
    }
}

/// Entries the manifest does not list, or lists as another type.
#[test]
fn refuses_entries_the_manifest_does_not_describe() {
    let base = base();
    expect_refused("an unlisted file", &[], 5, &["zunlisted"], |_| {
        base.variant(
            &[],
            vec![Ent::file(format!("{NAME}/zunlisted"), base.app())],
        )
    });
    expect_refused("an unlisted directory", &[], 5, &["zunlisted"], |_| {
        base.variant(&[], vec![Ent::dir(format!("{NAME}/zunlisted/"))])
    });
    expect_refused("an unlisted symlink", &[], 5, &["zunlisted"], |_| {
        base.variant(&[], vec![Ent::symlink(format!("{NAME}/zunlisted"), "bin")])
    });
    expect_refused(
        "a third file in NAME/.fw/ (a forged .fw/verified)",
        &[],
        5,
        &[".fw/verified"],
        |_| {
            base.variant(
                &[],
                vec![Ent::file(format!("{NAME}/.fw/verified"), b"forged\n")],
            )
        },
    );
    expect_refused(
        "a third file in NAME/.fw/, right after the signature",
        &[],
        5,
        &[".fw/verified"],
        |_| {
            let mut tree = vec![Ent::file(format!("{NAME}/.fw/verified"), b"forged\n")];
            tree.extend(base.tree.iter().cloned());
            base.package(&[], tree)
        },
    );
    expect_refused("listed as a dir, is a file", &[], 5, &["zkind"], |_| {
        base.variant(
            &[base.m_dir("zkind")],
            vec![Ent::file(format!("{NAME}/zkind"), base.app())],
        )
    });
    expect_refused("listed as a file, is a symlink", &[], 5, &["zkind"], |_| {
        base.variant(
            &[base.m_file("zkind")],
            vec![Ent::symlink(format!("{NAME}/zkind"), "bin/app")],
        )
    });
    expect_refused("listed as a symlink, is a dir", &[], 5, &["zkind"], |_| {
        base.variant(
            &[base.m_symlink("zkind", "bin")],
            vec![Ent::dir(format!("{NAME}/zkind/"))],
        )
    });
}

/// --max-bytes bounds the content, also against a decompression bomb.
#[test]
fn refuses_more_than_max_bytes() {
    let base = base();
    expect_refused(
        "a 2 GiB entry of zeros with --max-bytes 100000000",
        &["--max-bytes", "100000000"],
        5,
        &["zbomb"],
        |_| {
            const SIZE: u64 = 2 << 30;
            let mut listed = base.m_file("zbomb");
            listed["size"] = json!(SIZE);
            listed["blake3"] = json!("0".repeat(64));
            let manifest = base.manifest_plus(&[listed]);
            let mut head = Vec::new();
            encode(&base.manifest_with_json(&manifest), &mut head);
            encode(&base.sig_of(&manifest), &mut head);
            for e in &base.tree {
                encode(e, &mut head);
            }
            let bomb = Ent::new(REGULAR, format!("{NAME}/zbomb"));
            encode_header(&bomb, SIZE, &mut head);
            let mut enc = GzEncoder::new(Vec::new(), Compression::new(2));
            enc.write_all(&head).unwrap();
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..SIZE >> 20 {
                enc.write_all(&zeros).unwrap();
            }
            enc.write_all(&[0u8; 1024]).unwrap();
            let out = enc.finish().unwrap();
            assert!(out.len() < 4 << 20, "the bomb is small: {}", out.len());
            out
        },
    );
    expect_refused(
        "the valid package with --max-bytes 10",
        &["--max-bytes", "10"],
        5,
        &["manifest", "bin/app"],
        |_| base.tar_gz.clone(),
    );
    let content: u64 = base
        .tree
        .iter()
        .filter(|e| e.kind == REGULAR)
        .map(|e| e.data.len() as u64)
        .sum();
    let limit = (content - 1).to_string();
    expect_refused(
        "the valid package with --max-bytes one less than its files",
        &["--max-bytes", &limit],
        5,
        &[],
        |_| base.tar_gz.clone(),
    );
}

/// The gzip stream must be whole: every member's trailer, then EOF.
#[test]
fn refuses_corrupt_truncated_or_trailing_gzip() {
    let base = base();
    let g = &base.tar_gz;
    let n = g.len();
    // fw-sign's members: a header whose extra field holds the member's
    // length at bytes 16..20 (and in the first member, where the tree's
    // members begin, after it), then deflate data.
    let header = 12 + u16::from_le_bytes([g[10], g[11]]) as usize;
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        (
            "flipped byte early in the deflate data".into(),
            flip(g, header + 4),
        ),
        ("a member length field that lies".into(), flip(g, 16)),
        (
            "a member length field pointing past the end".into(),
            flip(g, 18),
        ),
        (
            "flipped byte in the middle of the deflate data".into(),
            flip(g, n / 2),
        ),
        (
            "flipped byte late in the deflate data".into(),
            flip(g, n - 12),
        ),
        ("flipped byte in the CRC trailer".into(), flip(g, n - 7)),
        ("flipped byte in the ISIZE trailer".into(), flip(g, n - 2)),
        ("flipped gzip magic".into(), flip(g, 0)),
        (
            "missing gzip trailer (last 8 bytes cut)".into(),
            g[..n - 8].to_vec(),
        ),
        ("empty input".into(), Vec::new()),
        (
            "trailing garbage".into(),
            [g.clone(), b"garbage\n".to_vec()].concat(),
        ),
        (
            "trailing NUL bytes".into(),
            [g.clone(), vec![0u8; 512]].concat(),
        ),
        (
            "trailing gzip magic alone".into(),
            [g.clone(), vec![0x1f, 0x8b]].concat(),
        ),
        (
            "a truncated second member".into(),
            [g.clone(), g[..n / 2].to_vec()].concat(),
        ),
    ];
    // The tar without its end-of-archive blocks, in whole gzip members: a
    // stream cut between members must not pass for a complete archive.
    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(&g[..])
        .read_to_end(&mut tar)
        .unwrap();
    let mut entries_end = 0;
    for entry in tar::Archive::new(&tar[..]).entries().unwrap() {
        let entry = entry.unwrap();
        entries_end = entry.raw_file_position() + entry.size().div_ceil(512) * 512;
    }
    let entries = &tar[..entries_end as usize];
    cases.push((
        "a tar without its end-of-archive marker".into(),
        gz(entries),
    ));
    cases.push((
        "a tar with half its end-of-archive marker".into(),
        gz_members(&[entries, &[0u8; 512]]),
    ));
    let second = gz(&[0u8; 1024]);
    cases.push((
        "a second member without its trailer".into(),
        [g.clone(), second[..second.len() - 8].to_vec()].concat(),
    ));
    for cut in [1, 5, 10, 30, n / 3, n / 2, n - 20, n - 5, n - 1] {
        cases.push((
            format!("truncated to {cut} of {n} bytes"),
            g[..cut].to_vec(),
        ));
    }
    for (case, input) in cases {
        expect_refused(&case, &[], 5, &[], |_| input);
    }
}

// ---------------------------------------------------------------------------
// Signals.

/// Feeds a valid prefix and keeps stdin open; once a staging directory
/// exists, sends `signal`; fw-unpack must exit non-zero and leave nothing.
fn interrupt_while_reading(signal: &str) {
    let base = base();
    let ctx = Ctx::new();
    let canary_before = snapshot(&ctx.canary);
    let cut = base.raw_tar.len() / 2 / 512 * 512;
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(&base.raw_tar[..cut]).unwrap();
    enc.flush().unwrap();
    let prefix = enc.get_ref().clone();

    let mut child = ctx
        .unpack_cmd(&[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&prefix).unwrap();
    stdin.flush().unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if !ctx.staging_entries().is_empty() {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            panic!("{signal}: fw-unpack exited ({status:?}) on an open stdin: {stderr}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{signal}: no staging directory appeared in {} after 30 s",
                ctx.staging().display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal}");

    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{signal}: fw-unpack still running 30 s after SIG{signal}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(stdin);
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    eprintln!(
        "SIG{signal} while reading: {status:?}: {}",
        stderr.trim_end()
    );
    assert!(
        !status.success(),
        "{signal}: exit non-zero after SIG{signal}: {status:?}"
    );
    assert!(
        stdout.is_empty(),
        "{signal}: stdout must be empty: {:?}",
        String::from_utf8_lossy(&stdout)
    );
    ctx.assert_clean(
        &format!("SIG{signal} while reading ({status:?}, stderr {stderr:?})"),
        &canary_before,
    );
}

#[test]
fn sigterm_while_reading_leaves_nothing_behind() {
    interrupt_while_reading("TERM");
}

/// Beyond SIGTERM: Ctrl-C and a hang-up (an ssh session dropped mid-update)
/// clean up just the same.
#[test]
fn sigint_and_sighup_while_reading_leave_nothing_behind() {
    interrupt_while_reading("INT");
    interrupt_while_reading("HUP");
}

// ---------------------------------------------------------------------------
// fw-unseal's proof and the manifest's signature.

/// Nothing is trusted without fw-unseal's proof over exactly the bytes
/// read: each of these archives is otherwise the valid package, and is
/// refused with exit 4.
#[test]
fn refuses_a_missing_wrong_or_displaced_proof() {
    let base = base();
    let (head, body, proof) = split_proof(&base.unsealed);
    // The same bytes through fw-unseal, signed by a key the device does
    // not trust (it trusts it in its own keyring).
    let tmp = TempDir::new().unwrap();
    let stranger = Keys::new(&tmp.path().join("stranger"));
    let by_stranger = stranger.seal(body);
    // The proof of other bytes: the same archive, compressed otherwise.
    let recompressed = gz(&base.raw_tar);
    assert_ne!(recompressed, body);
    let ctx = Ctx::new();
    expect_unpacked(
        "the recompressed archive with its own proof",
        &ctx,
        base,
        ctx.unpack(&[], &recompressed),
    );
    let unsealed_other = seal(&base.vendor_key, &ctx.keyring, &recompressed);
    let (other_head, _, other_proof) = split_proof(&unsealed_other);
    let member = |subfield: &[u8; 2], payload: &[u8]| {
        let mut m = vec![0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 255];
        m.extend(((payload.len() + 4) as u16).to_le_bytes());
        m.extend(subfield);
        m.extend((payload.len() as u16).to_le_bytes());
        m.extend(payload);
        m.extend([3, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        m
    };
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("the tar.gz alone", body.to_vec(), &["proof"]),
        (
            "the announcement without the proof",
            [head, body].concat(),
            &["proof"],
        ),
        (
            "the proof without the announcement",
            [body, proof].concat(),
            &["proof"],
        ),
        (
            "a proof by a key the keyring does not trust",
            by_stranger,
            &["not a trusted certificate"],
        ),
        (
            "the proof of other bytes",
            [other_head, body, other_proof].concat(),
            &["does not match", "did not verify"],
        ),
        (
            "the announcement and proof of the same bytes around others",
            [head, &recompressed[..], proof].concat(),
            &["does not match", "did not verify"],
        ),
        (
            "a byte after the proof",
            [&base.unsealed[..], b"x"].concat(),
            &["follow fw-unseal's proof"],
        ),
        (
            "a zero byte after the proof",
            [&base.unsealed[..], &[0]].concat(),
            &["follow fw-unseal's proof"],
        ),
        (
            "an empty gzip member after the proof",
            [base.unsealed.clone(), gz(b"")].concat(),
            &["follow fw-unseal's proof"],
        ),
        (
            "the proof twice",
            [&base.unsealed[..], proof].concat(),
            &["follow fw-unseal's proof"],
        ),
        (
            "a second announcement",
            [head, head, body, proof].concat(),
            &["announcement"],
        ),
        (
            "an announcement that is not a one-pass signature",
            [
                &member(b"FO", &proof[16..proof.len() - 10])[..],
                body,
                proof,
            ]
            .concat(),
            &["announcement"],
        ),
        (
            "a proof that is not a signature",
            [head, body, &member(b"FS", &head[16..head.len() - 10])[..]].concat(),
            &["proof"],
        ),
        (
            "a proof that is not OpenPGP",
            [head, body, &member(b"FS", b"trust me")[..]].concat(),
            &["proof"],
        ),
    ];
    for (case, input, names) in cases {
        check_refused(case, 4, names, |ctx| ctx.unpack_raw(&[], &input));
    }
}

/// The manifest's JSON is parsed only once its signature verified: a
/// manifest that is not the vendor's is refused with exit 4, whatever it
/// holds.
#[test]
fn refuses_a_manifest_the_vendor_did_not_sign() {
    let base = base();
    let tmp = TempDir::new().unwrap();
    let stranger = Keys::new(&tmp.path().join("stranger"));
    let with = |manifest: Ent, sig: Ent| {
        let mut all = vec![manifest, sig];
        all.extend(base.tree.iter().cloned());
        gz(&tar_bytes(&all))
    };
    let changed = base.manifest_plus(&[base.m_file("zextra")]);
    let mut garbage_sig = base.sig_ent.clone();
    garbage_sig.data = b"not a signature".to_vec();
    let mut stranger_sig = base.sig_ent.clone();
    stranger_sig.data = stranger.sign_detached(&base.manifest_json);
    let cases = vec![
        (
            "a changed manifest with the original signature",
            with(base.manifest_with_json(&changed), base.sig_ent.clone()),
        ),
        (
            "a manifest that is not JSON, with the original signature",
            with(base.manifest_with_json(b"{{{{"), base.sig_ent.clone()),
        ),
        (
            "the manifest signed by another key",
            with(base.manifest_ent.clone(), stranger_sig),
        ),
        (
            "a signature that is not OpenPGP",
            with(base.manifest_ent.clone(), garbage_sig),
        ),
    ];
    for (case, input) in cases {
        expect_refused(case, &[], 4, &["manifest.sig"], |_| input);
    }
}

/// A file name longer than 255 bytes (NAME_MAX) is invalid input (it
/// was an I/O error, exit 1).
#[test]
fn refuses_a_name_longer_than_name_max() {
    let base = base();
    let long = format!("z{}", "n".repeat(255));
    expect_refused("an unlisted 256-byte name", &[], 5, &["255"], |_| {
        base.variant(&[], vec![Ent::file(format!("{NAME}/{long}"), base.app())])
    });
    expect_refused("a listed 256-byte name", &[], 5, &["255"], |_| {
        base.variant(
            &[base.m_file(&long)],
            vec![Ent::file(format!("{NAME}/{long}"), base.app())],
        )
    });
    expect_refused(
        "a 256-byte name through a PAX path",
        &[],
        5,
        &["255"],
        |_| {
            base.variant(
                &[],
                vec![Ent::file(format!("{NAME}/zshort"), base.app())
                    .pax("path", format!("{NAME}/{long}"))],
            )
        },
    );
}

/// Tar extension headers larger than any package needs are refused when
/// their header arrives, before their body is read (attacks.rs measures
/// the memory).
#[test]
fn refuses_oversized_extension_headers() {
    let base = base();
    let huge = "z".repeat(70 << 10);
    for (case, ent) in [
        (
            "a 70 KiB GNU long name",
            Ent::file(format!("{NAME}/zshort"), base.app()).gnu_long_name(format!("{NAME}/{huge}")),
        ),
        (
            "a 70 KiB GNU long link",
            Ent::symlink(format!("{NAME}/zlink"), "bin").gnu_long_link(&huge),
        ),
        (
            "a 70 KiB PAX record",
            Ent::file(format!("{NAME}/zshort"), base.app()).pax("comment", &huge),
        ),
    ] {
        expect_refused(case, &[], 5, &["more than the 65536 bytes"], |_| {
            base.variant(&[], vec![ent])
        });
    }
    let mut sparse = Ent::file(format!("{NAME}/zsparse"), base.app());
    sparse.kind = b'S';
    expect_refused("a GNU sparse file", &[], 5, &["sparse"], |_| {
        base.variant(&[], vec![sparse])
    });
}

/// Issue 13.4: an entry's extended attributes in the archive (PAX
/// `SCHILY.xattr.*` records) must be exactly the signed manifest's: a
/// capability the manifest does not list, a changed or a missing one is
/// refused, and a manifest cannot list them outside format 3 or list
/// `security.selinux`.
#[test]
fn refuses_extended_attributes_that_differ_from_the_manifest() {
    let base = base();
    let package = |format: u32, listed: Option<Value>, archived: &[(&'static str, &[u8])]| {
        let mut m = base.manifest.clone();
        m["format"] = json!(format);
        let mut e = base.m_file("zx");
        e.as_object_mut().unwrap().remove("gz");
        if let Some(listed) = listed {
            e["xattrs"] = listed;
        }
        let json = {
            let mut m = m;
            m["entries"].as_array_mut().unwrap().push(e.clone());
            serde_json::to_vec_pretty(&m).unwrap()
        };
        let mut ent = Ent::file(format!("{NAME}/zx"), base.app());
        ent.mtime = e["mtime"].as_u64().unwrap_or(MTIME);
        for (key, value) in archived {
            ent = ent.pax(key, value);
        }
        let mut all = vec![base.manifest_with_json(&json), base.sig_of(&json)];
        all.extend(base.tree_plus(vec![ent]));
        gz(&tar_bytes(&all))
    };
    let hi = || Some(json!({"user.fw": "6869"}));
    let cap: &[u8] = &[
        1, 0, 0, 2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a capability the manifest does not list",
            package(3, None, &[("SCHILY.xattr.security.capability", cap)]),
        ),
        (
            "an attribute with another value",
            package(3, hi(), &[("SCHILY.xattr.user.fw", b"ho")]),
        ),
        (
            "an attribute missing from the archive",
            package(3, hi(), &[]),
        ),
        (
            "an attribute more in the archive",
            package(
                3,
                hi(),
                &[
                    ("SCHILY.xattr.user.fw", b"hi"),
                    ("SCHILY.xattr.user.x", b""),
                ],
            ),
        ),
        (
            "attributes in a format 2 manifest",
            package(2, hi(), &[("SCHILY.xattr.user.fw", b"hi")]),
        ),
        (
            "security.selinux in the manifest",
            package(
                3,
                Some(json!({"security.selinux": "00"})),
                &[("SCHILY.xattr.security.selinux", b"\0")],
            ),
        ),
        (
            "a value that is not hex",
            package(3, Some(json!({"user.fw": "hi"})), &[]),
        ),
    ];
    for (case, input) in cases {
        let stderr = expect_refused(case, &[], 5, &["zx"], |_| input);
        assert!(stderr.contains("extended attribute"), "{case}: {stderr}");
    }
    // As listed: unpacked, with the attribute.
    let ctx = Ctx::new();
    let out = ctx.unpack(&[], &package(3, hi(), &[("SCHILY.xattr.user.fw", b"hi")]));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let zx = PathBuf::from(stdout.trim_end()).join("zx");
    assert_eq!(
        xattr::get(&zx, "user.fw").unwrap().as_deref(),
        Some(&b"hi"[..])
    );
}
