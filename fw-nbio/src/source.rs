//! What a pipe reads.

use std::{
    fmt,
    fs::File,
    io::{self, Read, Write},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    process::ChildStdout,
};

/// Writes a Rust source's data into the pipe; runs on a feeder thread of its own, since
/// iterators and readers may block.
pub(crate) type Feed = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send>;

/// What a pipe reads: bytes, an iterator of chunks, a reader, a file, or nothing.
///
/// Usually made implicitly: `"text" | process`, `vec | process`, `file | process`.
pub struct Source(pub(crate) SourceKind);

pub(crate) enum SourceKind {
    Empty,
    /// Our own stdin.
    Inherit,
    /// An fd handed straight to the first process: a file, another child's stdout.
    Fd(OwnedFd),
    Path(PathBuf),
    Feed(Feed),
}

impl Source {
    /// No input: the first process reads `/dev/null`.
    pub fn empty() -> Self {
        Source(SourceKind::Empty)
    }

    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Self {
        let bytes = bytes.into();
        Source(SourceKind::Feed(Box::new(move |w| w.write_all(&bytes))))
    }

    /// Each item of `chunks`, in order, as it is produced (a generator, a download's chunks).
    pub fn chunks<I>(chunks: I) -> Self
    where
        I: IntoIterator + Send + 'static,
        I::Item: AsRef<[u8]>,
    {
        Source(SourceKind::Feed(Box::new(move |w| {
            chunks
                .into_iter()
                .try_for_each(|chunk| w.write_all(chunk.as_ref()))
        })))
    }

    /// Everything `reader` yields: a socket, a decoder, anything [`Read`].
    pub fn reader(mut reader: impl Read + Send + 'static) -> Self {
        Source(SourceKind::Feed(Box::new(move |w| {
            io::copy(&mut reader, w).map(drop)
        })))
    }

    /// An open file (or pipe), given to the first process as its stdin: no copying.
    pub fn file(file: File) -> Self {
        Source(SourceKind::Fd(file.into()))
    }

    /// The file at `path`, opened when the pipe runs (Fussy's `<`).
    pub fn path(path: impl AsRef<Path>) -> Self {
        Source(SourceKind::Path(path.as_ref().to_owned()))
    }

    /// Our own stdin, inherited by the first process.
    pub fn stdin() -> Self {
        Source(SourceKind::Inherit)
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            SourceKind::Empty => f.write_str("Source::Empty"),
            SourceKind::Inherit => f.write_str("Source::Stdin"),
            SourceKind::Fd(fd) => write!(f, "Source::Fd({fd:?})"),
            SourceKind::Path(p) => write!(f, "Source::Path({p:?})"),
            SourceKind::Feed(_) => f.write_str("Source::Feed"),
        }
    }
}

macro_rules! source_from {
    ($($ty:ty => |$v:ident| $make:expr;)*) => {$(
        impl From<$ty> for Source {
            fn from($v: $ty) -> Self {
                $make
            }
        }
    )*};
}

source_from! {
    &str => |s| Source::bytes(s);
    String => |s| Source::bytes(s);
    &[u8] => |b| Source::bytes(b);
    Vec<u8> => |b| Source::bytes(b);
    File => |f| Source::file(f);
    ChildStdout => |s| Source(SourceKind::Fd(s.into()));
    io::Stdin => |_s| Source::stdin();
}

impl<const N: usize> From<&[u8; N]> for Source {
    fn from(b: &[u8; N]) -> Self {
        Source::bytes(b.as_slice())
    }
}
