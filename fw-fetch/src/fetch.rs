//! The fetch: the head, the verified manifest, what the device lacks, the
//! ranges that hold it, and the stream for fw-unpack --delta.
//!
//! Three ways, chosen by what the server and the package allow, each
//! said in one line on stderr when it is not the first:
//! - **delta**: the server does Range requests and the package has the
//!   offsets (fw-sign of format 2): only the members of files no
//!   installed version holds are fetched, a few requests for all of them;
//! - **whole package**: the server answers the first request with the
//!   whole package (no Range support): it is read as it comes, and the
//!   stream is the same as a delta's (files the device holds omitted);
//! - **pass-through**: a package without offsets (an older fw-sign): the
//!   rest of its tar.gz is passed on as it is.
//!
//! In every way fw-unpack --delta verifies the manifest's signature, every
//! header against it and every file's BLAKE3: what gets installed is
//! proven against the signed manifest, never taken from the server's word.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Mutex;

use fw_core::keyring::Keyring;
use fw_core::manifest::Manifest;
use fw_core::target::SharedFiles;
use fw_core::{detail, note, Error, Result};

use crate::cache::{self, Cache, State};
use crate::check::FileCheck;
use crate::emit::{self, Ready};
use crate::head::{self, Head};
use crate::http::{self, Client, Reply};
use crate::layout::Layout;

/// Needed ranges closer than this are fetched as one: a range costs about
/// this much in its own request or multipart part header.
pub const GAP: u64 = 256;

/// What to fetch.
pub struct Options {
    pub url: String,
    pub target: PathBuf,
    pub keyring: Keyring,
    /// Stall detection for every transfer.
    pub stall: fw_core::http::Stall,
}

/// How the package came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Delta,
    WholePackage,
    PassThrough,
}

/// What a fetch did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub way: Way,
    pub name: String,
    pub version: String,
    pub package_bytes: u64,
    /// Body bytes received in this run.
    pub received: u64,
    pub requests: u64,
    pub files_fetched: usize,
    pub files_held: usize,
    /// Members of the fetched files (this run's and kept ones).
    pub fetched_bytes: u64,
}

/// A reader that is `Sync` (sequoia's readers want one) whatever it wraps.
struct SyncRead<R>(Mutex<R>);

impl<R: Read> Read for SyncRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .read(buf)
    }
}

fn sync<R: Read + Send>(r: R) -> SyncRead<R> {
    SyncRead(Mutex::new(r))
}

/// One needed file: its manifest index and its members in the tar.gz.
#[derive(Debug, Clone, Copy)]
struct Need {
    index: usize,
    from: u64,
    to: u64,
}

/// Needed files fetched with one range.
struct Span {
    file: (u64, u64),
    needs: Vec<Need>,
}

/// The package's head as fetched: its first bytes (the OpenPGP packets
/// and the first gzip member) and the manifest's members.
struct HeadBytes {
    prefix: Vec<u8>,
    region: Vec<u8>,
}

/// Fetches the package at `options.url` for `options.target` and writes
/// the stream for `fw-unpack --delta` to `out`.
pub fn fetch<W: Write + Send + 'static>(options: &Options, out: W) -> Result<Summary> {
    let cache = Cache::open(&options.target)?;
    let shared = SharedFiles::of_target(&options.target);
    let mut client = Client::new(&options.url, options.stall);
    let bytes = match cache.resume(&options.url) {
        Some((state, prefix, region)) => {
            detail!("resuming the fetch of {}", options.url);
            client.size = Some(state.size);
            client.etag = state.etag;
            HeadBytes { prefix, region }
        }
        None => {
            cache.clear()?;
            let known = head::Known::of_target(&options.target);
            match fetch_head(&mut client, &options.keyring, &known)? {
                Fetched::Head(bytes) => bytes,
                Fetched::Whole(whole) => {
                    note!(
                        "{} does not answer Range requests: reading the whole package",
                        options.url
                    );
                    return whole_package(options, &cache, &shared, &mut client, *whole, out);
                }
                Fetched::NoOffsets(prefix) => {
                    note!(
                        "{}: the package has no member offsets (made by an older fw-sign): \
                         reading the rest of it whole",
                        options.url
                    );
                    return pass_through(options, &mut client, prefix, out);
                }
            }
        }
    };
    let first = match head::first(&bytes.prefix, &options.keyring)? {
        head::Step::Done(first) => first,
        head::Step::More(_) => return Err(Error::failed("the kept head is cut short (a bug)")),
    };
    let head = head::verify(first.framing, bytes.region.clone(), &options.keyring)?;
    detail!(
        "{} {}: manifest signed by {}",
        head.manifest.name,
        head.manifest.version,
        head.signer
    );
    let size = client.size.expect("known after the head");
    let Some((base, layout)) = delta_layout(&head) else {
        note!(
            "{}: the package's framing is not fw-sign's or it lacks member offsets: reading \
             the rest of it whole",
            options.url
        );
        cache.clear()?;
        return pass_through(options, &mut client, bytes.prefix, out);
    };
    cache.start(
        &State {
            url: options.url.clone(),
            size,
            etag: client.etag.clone(),
            head: bytes.prefix.len() as u64,
            region: bytes.region.len() as u64,
        },
        &bytes.prefix,
        &bytes.region,
    )?;
    let result = delta(
        &cache,
        &shared,
        &mut client,
        &head,
        &bytes.prefix,
        base,
        &layout,
        out,
    );
    finish(&cache, result, &head, &client, size)
}

/// Keeps the cache after a network failure (the next run resumes), and
/// removes it otherwise.
fn finish(
    cache: &Cache,
    result: Result<(usize, usize, u64)>,
    head: &Head,
    client: &Client,
    size: u64,
) -> Result<Summary> {
    match result {
        Ok((files_fetched, files_held, fetched_bytes)) => {
            cache.clear()?;
            let mut summary = summary(
                head,
                client,
                Way::Delta,
                files_fetched,
                files_held,
                fetched_bytes,
            );
            summary.package_bytes = size;
            Ok(summary)
        }
        Err(e) => {
            let keep = e.code == fw_core::Exit::Failed;
            if !keep {
                let _ = cache.clear();
            }
            Err(e)
        }
    }
}

/// The tree's members' offset and the layout, if the package can be
/// fetched by ranges.
fn delta_layout(head: &Head) -> Option<(u64, Layout)> {
    if !offsets_complete(head) {
        return None;
    }
    let base = head.base?;
    let data_len = base.checked_add(head.manifest.gz_length?)?;
    Layout::new(&head.framing, data_len).map(|layout| (base, layout))
}

/// What fetching the head found.
enum Fetched {
    Head(HeadBytes),
    /// The server sent the whole package to the first request.
    Whole(Box<http::WholeBody>),
    /// A package without the head's marks (an older fw-sign): its first
    /// bytes fetched so far.
    NoOffsets(Vec<u8>),
}

/// Fetches the package's first bytes until they hold its first member,
/// then the rest of the manifest's members: only the chunks no installed
/// manifest has, when the first member lists them.
fn fetch_head(client: &mut Client, keyring: &Keyring, known: &head::Known) -> Result<Fetched> {
    let mut prefix: Vec<u8> = Vec::new();
    let mut want = head::FIRST;
    let first = loop {
        if let Some(size) = client.size {
            want = want.min(size);
        }
        if want > prefix.len() as u64 {
            let from = prefix.len() as u64;
            match client.get(&[(from, want)])? {
                Reply::Whole(transfer) => return Ok(Fetched::Whole(Box::new(transfer))),
                Reply::Ranges(mut reader) => {
                    (&mut reader)
                        .take(want - from)
                        .read_to_end(&mut prefix)
                        .map_err(|e| http::from_io(e, &client.url))?;
                    client.received += reader.received();
                    reader.finish()?;
                }
            }
        }
        match head::first(&prefix, keyring)? {
            head::Step::Done(first) => break first,
            head::Step::More(n) if Some(prefix.len() as u64) != client.size => want = n,
            head::Step::More(_) => {
                return Err(Error::invalid(
                    "the package ends before its manifest (truncated): refusing it",
                ))
            }
        }
    };
    let Some(base) = first.info.base else {
        return Ok(Fetched::NoOffsets(prefix));
    };
    let layout = Layout::head(&first.framing);
    // The chunks no installed manifest has, and the signature; or, without
    // a chunk table, all of the manifest's members.
    let (plan, wanted) = match head::Plan::of(&first, known) {
        Some(plan) => {
            let wanted = plan.wanted();
            (Some(plan), wanted)
        }
        None => (None, vec![(first.info.len as u64, base)]),
    };
    let wanted: Vec<(u64, u64)> = wanted.into_iter().filter(|(a, b)| a < b).collect();
    let fetched = match layout {
        Some(layout) if wanted.iter().all(|&(a, b)| layout.span(a, b).is_ok()) => {
            fetch_literal(client, &layout, &prefix, &wanted)?
        }
        // The manifest's members reach past the first chunk of the
        // package's packets (a small package): read them as a stream.
        _ => return fetch_head_as_stream(client, keyring, prefix),
    };
    let region = match plan {
        Some(plan) => {
            let reused = plan.chunks.iter().filter(|c| c.3.is_some()).count();
            detail!(
                "the manifest: {reused} of {} chunks taken from installed manifests",
                plan.chunks.len()
            );
            plan.members(&first, fetched)?
        }
        None => [first.member.clone()]
            .into_iter()
            .chain(fetched)
            .collect::<Vec<_>>()
            .concat(),
    };
    Ok(Fetched::Head(HeadBytes { prefix, region }))
}

/// The head of a package whose manifest's members cannot be found at
/// random: its first bytes fetched until the members are whole.
fn fetch_head_as_stream(
    client: &mut Client,
    keyring: &Keyring,
    mut prefix: Vec<u8>,
) -> Result<Fetched> {
    loop {
        let size = client.size.expect("known after the first answer");
        let read =
            head::read(io::Cursor::new(prefix.clone()), keyring).map(|(head, _)| head.region);
        match read {
            Ok(region) => {
                return Ok(Fetched::Head(HeadBytes {
                    prefix,
                    region: region.to_vec(),
                }))
            }
            Err(e) if e.message == crate::literal::TRUNCATED && (prefix.len() as u64) < size => {
                let from = prefix.len() as u64;
                let to = (from * 2).min(size);
                match client.get(&[(from, to)])? {
                    Reply::Ranges(mut reader) => {
                        (&mut reader)
                            .take(to - from)
                            .read_to_end(&mut prefix)
                            .map_err(|e| http::from_io(e, &client.url))?;
                        client.received += reader.received();
                        reader.finish()?;
                    }
                    Reply::Whole(_) => {
                        unreachable!("a whole package comes only for the first request")
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// The tar.gz bytes of `ranges` (ascending), fetched (what `prefix`, the
/// package's first bytes, does not hold) and taken out of the framing.
fn fetch_literal(
    client: &mut Client,
    layout: &Layout,
    prefix: &[u8],
    ranges: &[(u64, u64)],
) -> Result<Vec<Vec<u8>>> {
    // The file spans, grouped where they touch (an encrypted range starts
    // with the cipher block before it).
    let spans: Vec<(u64, u64)> = ranges
        .iter()
        .map(|&(a, b)| layout.span(a, b))
        .collect::<Result<_>>()?;
    let mut groups: Vec<(u64, u64)> = Vec::new();
    for &(a, b) in &spans {
        match groups.last_mut() {
            Some(last) if a <= last.1.saturating_add(GAP) => last.1 = last.1.max(b),
            _ => groups.push((a, b)),
        }
    }
    // Each group's bytes: from the prefix, then from the server.
    let have = prefix.len() as u64;
    let asked: Vec<(u64, u64)> = groups
        .iter()
        .filter(|g| g.1 > have)
        .map(|&(a, b)| (a.max(have), b))
        .collect();
    let mut bytes: Vec<Vec<u8>> = groups
        .iter()
        .map(|&(a, b)| prefix[a.min(have) as usize..b.min(have) as usize].to_vec())
        .collect();
    let mut next = groups
        .iter()
        .position(|g| g.1 > have)
        .unwrap_or(groups.len());
    let mut left = &asked[..];
    while !left.is_empty() {
        let mut reader = match client.get(left)? {
            Reply::Ranges(reader) => reader,
            Reply::Whole(_) => unreachable!("a whole package comes only for the first request"),
        };
        let served = reader.served();
        for &(a, b) in &left[..served] {
            (&mut reader)
                .take(b - a)
                .read_to_end(&mut bytes[next])
                .map_err(|e| http::from_io(e, &client.url))?;
            next += 1;
        }
        client.received += reader.received();
        reader.finish()?;
        left = &left[served..];
    }
    // Each range out of its group.
    let mut out = Vec::with_capacity(ranges.len());
    for (&(a, b), &(sa, sb)) in ranges.iter().zip(&spans) {
        let g = groups
            .iter()
            .position(|g| g.0 <= sa && sb <= g.1)
            .expect("every span is in its group");
        let group = &bytes[g];
        if (group.len() as u64) < sb - groups[g].0 {
            return Err(Error::invalid(crate::literal::TRUNCATED));
        }
        let span = &group[(sa - groups[g].0) as usize..(sb - groups[g].0) as usize];
        let mut literal = Vec::with_capacity((b - a) as usize);
        layout
            .reader(a, b, io::Cursor::new(span))?
            .read_to_end(&mut literal)
            .map_err(|e| http::from_io(e, "the package"))?;
        out.push(literal);
    }
    Ok(out)
}

/// What the device lacks: the files no installed version holds, each
/// content once (a later file of the same content is emitted from the
/// first one's bytes); and how many files it holds.
struct Lack {
    needs: Vec<Need>,
    /// Later files whose content is a need's: index -> that need's index.
    same: HashMap<usize, usize>,
    held: usize,
}

impl Lack {
    fn of(manifest: &Manifest, base: u64, shared: &SharedFiles) -> Lack {
        let mut lack = Lack {
            needs: Vec::new(),
            same: HashMap::new(),
            held: 0,
        };
        let mut first: HashMap<&str, usize> = HashMap::new();
        for (index, (entry, range)) in manifest
            .entries
            .iter()
            .zip(manifest.gz_ranges())
            .enumerate()
        {
            let Some((start, end)) = range else {
                continue;
            };
            if shared.find(entry).is_some() {
                lack.held += 1;
                continue;
            }
            let content = entry.blake3.as_deref().unwrap_or_default();
            if let Some(&earlier) = first.get(content) {
                lack.same.insert(index, earlier);
                continue;
            }
            first.insert(content, index);
            lack.needs.push(Need {
                index,
                from: base + start,
                to: base + end,
            });
        }
        lack
    }

    /// Every file the stream carries (not omitted): index -> the index
    /// whose fetched bytes it is.
    fn carried(&self) -> HashMap<usize, usize> {
        let mut carried: HashMap<usize, usize> =
            self.needs.iter().map(|n| (n.index, n.index)).collect();
        carried.extend(self.same.iter().map(|(&i, &first)| (i, first)));
        carried
    }

    fn bytes(&self) -> u64 {
        self.needs.iter().map(|n| n.to - n.from).sum()
    }
}

fn spans(needs: &[Need], layout: &Layout) -> Result<Vec<Span>> {
    let mut spans: Vec<Span> = Vec::new();
    for need in needs {
        let file = layout.span(need.from, need.to)?;
        match spans.last_mut() {
            Some(last) if file.0 <= last.file.1.saturating_add(GAP) => {
                last.file.1 = last.file.1.max(file.1);
                last.needs.push(*need);
            }
            _ => spans.push(Span {
                file,
                needs: vec![*need],
            }),
        }
    }
    Ok(spans)
}

/// Refuses a fetch that would fill the disk.
fn check_space(cache: &Cache, bytes: u64) -> Result<()> {
    let dir = cache.dir();
    let stat = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| Error::failed(format!("{}: cannot read free space: {e}", dir.display())))?;
    let free = (stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64);
    if bytes > free / 10 * 9 {
        return Err(Error::failed(format!(
            "the upgrade needs {bytes} bytes of fetched files in {}, and only {free} are free: \
             free some space",
            dir.display()
        )));
    }
    Ok(())
}

fn read_error(e: io::Error) -> Error {
    http::from_io(e, "the package")
}

/// Reads and drops `n` bytes.
fn skip(r: &mut impl Read, n: u64) -> Result<()> {
    let got = io::copy(&mut r.take(n), &mut io::sink()).map_err(read_error)?;
    if got < n {
        return Err(Error::invalid(literal_truncated()));
    }
    Ok(())
}

fn literal_truncated() -> &'static str {
    crate::literal::TRUNCATED
}

/// Copies a file's `len` member bytes from `r` to the data file, proving
/// them on the way.
fn copy_file(
    r: &mut impl Read,
    len: u64,
    data: &mut std::fs::File,
    check: &mut FileCheck,
) -> Result<()> {
    let mut buf = vec![0u8; (256 << 10).min(len.max(1)) as usize];
    let mut left = len;
    while left > 0 {
        let n = (left.min(buf.len() as u64)) as usize;
        let got = r.read(&mut buf[..n]).map_err(read_error)?;
        if got == 0 {
            return Err(Error::invalid(literal_truncated()));
        }
        check.push(&buf[..got])?;
        data.write_all(&buf[..got])
            .map_err(|e| Error::io("the fetch cache's data file", e))?;
        left -= got as u64;
    }
    Ok(())
}

/// Proves what the data file kept of `needs`, in order: the files kept
/// whole, and the whole members of the next one (with its check, how many
/// bytes, and where it starts). Drops anything else.
#[allow(clippy::type_complexity)]
fn resume(
    data: &mut std::fs::File,
    manifest: &Manifest,
    needs: &[Need],
) -> Result<(Vec<Ready>, Option<(FileCheck, u64, u64)>)> {
    use std::io::Seek;
    let io = |e| Error::io("the fetch cache's data file", e);
    let len = data.metadata().map_err(io)?.len();
    data.seek(io::SeekFrom::Start(0)).map_err(io)?;
    let mut kept = Vec::new();
    let mut at = 0u64;
    let mut buf = vec![0u8; 256 << 10];
    for need in needs {
        let file_len = need.to - need.from;
        let mut check = FileCheck::new(&manifest.entries[need.index]);
        let available = (len - at).min(file_len);
        let mut left = available;
        let mut good = true;
        while left > 0 && good {
            let n = left.min(buf.len() as u64) as usize;
            data.read_exact(&mut buf[..n]).map_err(io)?;
            good = check.push(&buf[..n]).is_ok();
            left -= n as u64;
        }
        if good && available == file_len {
            if check.finish().is_err() {
                break;
            }
            kept.push(Ready {
                index: need.index,
                at,
                len: file_len,
            });
            at += file_len;
            continue;
        }
        if good && check.whole() > 0 {
            let whole = check.whole();
            check.drop_partial();
            cache::truncate(data, at + whole)?;
            return Ok((kept, Some((check, whole, at))));
        }
        break;
    }
    cache::truncate(data, at)?;
    Ok((kept, None))
}

/// The delta: plan, resume what the cache holds, fetch the rest, emit.
#[allow(clippy::too_many_arguments)]
fn delta<W: Write + Send + 'static>(
    cache: &Cache,
    shared: &SharedFiles,
    client: &mut Client,
    head: &Head,
    head_bytes: &[u8],
    base: u64,
    layout: &Layout,
    out: W,
) -> Result<(usize, usize, u64)> {
    let manifest = &head.manifest;
    let lack = Lack::of(manifest, base, shared);
    shared.save();
    // Every range must be where the layout can find it.
    for need in &lack.needs {
        layout.span(need.from, need.to)?;
    }
    let (needs, held, total) = (&lack.needs, lack.held, lack.bytes());
    check_space(cache, total)?;
    detail!(
        "{} of {} files to fetch ({total} bytes, {} more of the same content); {held} held \
         by installed versions",
        needs.len(),
        needs.len() + lack.same.len() + held,
        lack.same.len()
    );
    let fetched = lack.carried();

    // What an earlier attempt kept.
    let mut data = cache.data()?;
    let (kept, partial) = resume(&mut data, manifest, needs)?;
    if !kept.is_empty() || partial.is_some() {
        detail!("{} files kept from an earlier attempt", kept.len());
    }
    let (tx, rx) = mpsc::sync_channel::<Ready>(needs.len().max(1));
    for ready in &kept {
        let _ = tx.send(*ready);
    }
    let mut rest: Vec<Need> = needs[kept.len()..].to_vec();
    // The next file may be partly kept: its whole members, from `start`.
    let mut carried = None;
    if let Some((check, whole, start)) = partial {
        rest[0].from += whole;
        carried = Some((check, start));
    }

    let emitter = {
        let region = std::sync::Arc::clone(&head.region);
        let manifest = std::sync::Arc::clone(&head.manifest);
        let reader = cache.data_reader()?;
        std::thread::spawn(move || emit::emit(out, &region, &manifest, &fetched, rx, reader))
    };
    let fetching = fetch_rest(
        client, layout, manifest, head_bytes, &rest, carried, &mut data, &tx,
    );
    drop(tx);
    let emitted = emitter
        .join()
        .unwrap_or_else(|_| Err(Error::failed("the thread writing the stream died")));
    // A stream whose reader went away is that reader's story; else the
    // fetch's own failure comes first.
    match (fetching, emitted) {
        (_, Err(e)) if e.code == fw_core::Exit::BrokenPipe => Err(e),
        (Err(e), _) => Err(e),
        (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(_)) => Ok((needs.len() + lack.same.len(), held, total)),
    }
}

/// Fetches the files of `rest`, in order, into the data file, and tells
/// `tx` of each once it is proven. Bytes the head already holds are not
/// fetched again.
#[allow(clippy::too_many_arguments)]
fn fetch_rest(
    client: &mut Client,
    layout: &Layout,
    manifest: &Manifest,
    head_bytes: &[u8],
    rest: &[Need],
    mut carried: Option<(FileCheck, u64)>,
    data: &mut std::fs::File,
    tx: &mpsc::SyncSender<Ready>,
) -> Result<()> {
    use std::io::Seek;
    let spans = spans(rest, layout)?;
    let head_len = head_bytes.len() as u64;
    // What each span needs from the network: the part past the head.
    let net: Vec<Option<(u64, u64)>> = spans
        .iter()
        .map(|s| (s.file.1 > head_len).then(|| (s.file.0.max(head_len), s.file.1)))
        .collect();
    let mut at = data
        .seek(io::SeekFrom::End(0))
        .map_err(|e| Error::io("the fetch cache's data file", e))?;
    let mut unsynced = 0u64;
    // The answer being read, and how many more spans it serves.
    let mut answer: Option<(http::RangeReader, usize)> = None;
    for (i, span) in spans.iter().enumerate() {
        let in_head =
            &head_bytes[(span.file.0.min(head_len)) as usize..(span.file.1.min(head_len)) as usize];
        if let Some((from, to)) = net[i] {
            if answer.is_none() {
                let ranges: Vec<(u64, u64)> = net[i..].iter().flatten().copied().collect();
                match client.get(&ranges)? {
                    Reply::Ranges(reader) => {
                        let served = reader.served();
                        answer = Some((reader, served));
                    }
                    Reply::Whole(_) => {
                        unreachable!("a whole package comes only for the first request")
                    }
                }
            }
            let (reader, _) = answer.as_mut().expect("started above");
            let bytes = sync(io::Cursor::new(in_head).chain(reader.take(to - from)));
            copy_span(
                span,
                layout,
                manifest,
                bytes,
                &mut carried,
                &mut at,
                data,
                tx,
            )?;
            let left = &mut answer.as_mut().expect("started above").1;
            *left -= 1;
            if *left == 0 {
                let (reader, _) = answer.take().expect("checked above");
                client.received += reader.received();
                reader.finish()?;
            }
        } else {
            copy_span(
                span,
                layout,
                manifest,
                io::Cursor::new(in_head),
                &mut carried,
                &mut at,
                data,
                tx,
            )?;
        }
        unsynced += span.needs.iter().map(|n| n.to - n.from).sum::<u64>();
        if unsynced >= 8 << 20 {
            data.sync_data()
                .map_err(|e| Error::io("the fetch cache's data file", e))?;
            unsynced = 0;
        }
    }
    data.sync_data()
        .map_err(|e| Error::io("the fetch cache's data file", e))
}

/// Proves and keeps the needed files of `span`, whose file bytes `bytes`
/// reads, and tells `tx` of each.
#[allow(clippy::too_many_arguments)]
fn copy_span<R: Read + Send + Sync>(
    span: &Span,
    layout: &Layout,
    manifest: &Manifest,
    bytes: R,
    carried: &mut Option<(FileCheck, u64)>,
    at: &mut u64,
    data: &mut std::fs::File,
    tx: &mpsc::SyncSender<Ready>,
) -> Result<()> {
    let (from, to) = (span.needs[0].from, span.needs[span.needs.len() - 1].to);
    let mut literal = layout.reader(from, to, bytes)?;
    let mut pos = from;
    for need in &span.needs {
        skip(&mut literal, need.from - pos)?;
        let (mut check, start) = match carried.take() {
            Some(carried) => carried,
            None => (FileCheck::new(&manifest.entries[need.index]), *at),
        };
        copy_file(&mut literal, need.to - need.from, data, &mut check)?;
        check.finish()?;
        *at += need.to - need.from;
        let len = manifest.entries[need.index].gz.map_or(0, |g| g[1]);
        if tx
            .send(Ready {
                index: need.index,
                at: start,
                len,
            })
            .is_err()
        {
            // The stream's reader went away; the emitter says so.
            return Err(Error::new(fw_core::Exit::BrokenPipe, "stdout closed"));
        }
        pos = need.to;
    }
    skip(&mut literal, to - pos)
}

/// The whole package, as the server sent it: the same stream as a delta
/// (the files the device holds are read past and omitted), or passed
/// through if the package has no offsets.
fn whole_package<W: Write + Send + 'static>(
    options: &Options,
    cache: &Cache,
    shared: &SharedFiles,
    client: &mut Client,
    transfer: http::WholeBody,
    mut out: W,
) -> Result<Summary> {
    let (head, mut rest) = head::read(sync(transfer), &options.keyring)?;
    let Some(base) = head.base.filter(|_| offsets_complete(&head)) else {
        out.write_all(&head.region)
            .and_then(|()| io::copy(&mut rest, &mut out).map(drop))
            .and_then(|()| out.flush())
            .map_err(|e| match e.get_ref().is_some_and(|i| i.is::<Error>()) {
                true => read_error(e),
                false => Error::io("stdout", e),
            })?;
        return Ok(summary(&head, client, Way::PassThrough, 0, 0, 0));
    };
    let lack = Lack::of(&head.manifest, base, shared);
    shared.save();
    let (needs, held, total) = (&lack.needs, lack.held, lack.bytes());
    check_space(cache, total)?;
    let mut data = cache.data()?;
    cache::truncate(&mut data, 0)?;
    let fetched = lack.carried();
    let (tx, rx) = mpsc::sync_channel::<Ready>(needs.len().max(1));
    let emitter = {
        let region = std::sync::Arc::clone(&head.region);
        let manifest = std::sync::Arc::clone(&head.manifest);
        let reader = cache.data_reader()?;
        std::thread::spawn(move || emit::emit(out, &region, &manifest, &fetched, rx, reader))
    };
    let reading = (|| -> Result<()> {
        let mut pos = base;
        let mut at = 0u64;
        for need in needs {
            skip(&mut rest, need.from - pos)?;
            let mut check = FileCheck::new(&head.manifest.entries[need.index]);
            copy_file(&mut rest, need.to - need.from, &mut data, &mut check)?;
            check.finish()?;
            let len = need.to - need.from;
            if tx
                .send(Ready {
                    index: need.index,
                    at,
                    len,
                })
                .is_err()
            {
                return Ok(());
            }
            at += len;
            pos = need.to;
        }
        Ok(())
    })();
    drop(tx);
    drop(rest);
    let emitted = emitter
        .join()
        .unwrap_or_else(|_| Err(Error::failed("the thread writing the stream died")));
    let _ = cache.clear();
    match (reading, emitted) {
        (_, Err(e)) if e.code == fw_core::Exit::BrokenPipe => Err(e),
        (Err(e), _) | (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(_)) => Ok(summary(
            &head,
            client,
            Way::WholePackage,
            needs.len(),
            held,
            total,
        )),
    }
}

/// Whether every file with data has its members' offsets.
fn offsets_complete(head: &Head) -> bool {
    head.base.is_some()
        && head.manifest.gz_length.is_some()
        && head.manifest.entries.iter().all(|e| {
            e.kind != fw_core::manifest::Kind::File
                || e.hardlink.is_some()
                || e.size == Some(0)
                || e.gz.is_some()
        })
}

fn summary(
    head: &Head,
    client: &Client,
    way: Way,
    fetched: usize,
    held: usize,
    bytes: u64,
) -> Summary {
    Summary {
        way,
        name: head.manifest.name.clone(),
        version: head.manifest.version.clone(),
        package_bytes: client.size.unwrap_or(0),
        received: client.received,
        requests: client.requests,
        files_fetched: fetched,
        files_held: held,
        fetched_bytes: bytes,
    }
}

/// A package without offsets, from a server that does Range requests:
/// its first bytes as fetched, then the rest of it in one request, passed
/// on.
fn pass_through<W: Write>(
    options: &Options,
    client: &mut Client,
    prefix: Vec<u8>,
    mut out: W,
) -> Result<Summary> {
    let size = client.size.expect("known after the head");
    let from = prefix.len() as u64;
    let rest: Box<dyn Read + Send> = if from < size {
        match client.get(&[(from, size)])? {
            Reply::Ranges(reader) => Box::new(reader),
            Reply::Whole(_) => unreachable!("a whole package comes only for the first request"),
        }
    } else {
        Box::new(io::empty())
    };
    let input = sync(io::Cursor::new(prefix).chain(rest));
    let (head, mut rest) = head::read(input, &options.keyring)?;
    out.write_all(&head.region)
        .map_err(|e| Error::io("stdout", e))?;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match rest.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        out.write_all(&buf[..n])
            .map_err(|e| Error::io("stdout", e))?;
    }
    out.flush().map_err(|e| Error::io("stdout", e))?;
    Ok(summary(&head, client, Way::PassThrough, 0, 0, 0))
}
