//! Wiring a pipe's stages: which ends are OS pipes between processes, which need a pump
//! (a closure, the collected output, a sink writer), which a feeder thread (a Rust
//! source), and where each process's stdout and stderr go.

use std::{
    fs::File,
    io::{self, Write},
    os::fd::OwnedFd,
    process::Stdio,
};

use super::{
    capture::Capture,
    child::ChildState,
    feed::{reader_feed, Feeder},
    pump::{Pump, PumpOut},
    writer::SinkThread,
    Engine,
};
use crate::{
    pipe::{Stage, Tap},
    process::{Process, Stderr},
    sink::SinkKind,
    source::{Feed, SourceKind},
    sys, Error, Pipe,
};

/// What feeds the next stage.
enum Upstream {
    Null,
    Inherit,
    /// A pipe's read end, and the child writing into it, if a child does.
    Fd(OwnedFd, Option<usize>),
}

/// Where a process's stdout goes.
enum Target {
    Null,
    Inherit,
    Fd(OwnedFd),
}

impl Engine {
    pub(crate) fn spawn(pipe: Pipe) -> Result<Engine, Error> {
        if sys::children_are_autoreaped() {
            return Err(Error::Io(io::Error::other(
                "SIGCHLD is ignored in this process, so the kernel reaps its children and \
                 their exit statuses cannot be known: restore its default disposition \
                 (fw_nbio::reset_sigchld) before running pipes",
            )));
        }
        let Pipe {
            source,
            stages,
            sink,
            timeout,
            by_line,
            killers,
        } = pipe;
        let mut engine = Engine::new(killers, timeout)?;
        if engine.killers.iter().any(crate::Killer::is_killed) {
            return Err(Error::Killed);
        }

        let first_is_process = matches!(stages.first(), Some(Stage::Process(_)));
        let mut up = match source.0 {
            SourceKind::Empty => Upstream::Null,
            SourceKind::Inherit if first_is_process => Upstream::Inherit,
            SourceKind::Fd(fd) if first_is_process => Upstream::Fd(fd, None),
            SourceKind::Path(path) if first_is_process => Upstream::Fd(open(&path)?.into(), None),
            // A closure reads first: copy the input in on a feeder thread.
            SourceKind::Inherit => engine.feed(reader_feed(io::stdin()))?,
            SourceKind::Fd(fd) => engine.feed(reader_feed(File::from(fd)))?,
            SourceKind::Path(path) => engine.feed(reader_feed(open(&path)?))?,
            SourceKind::Feed(feed) => engine.feed(feed)?,
        };

        let mut sink = sink.map_or(SinkKind::Collect, |s| s.0);
        let processes = stages
            .iter()
            .filter(|s| matches!(s, Stage::Process(_)))
            .count();
        let mut taps: Vec<Tap> = Vec::new();
        let mut lines = false;
        let mut stages = stages.into_iter().peekable();
        while let Some(stage) = stages.next() {
            let process = match stage {
                Stage::Tap(tap) => {
                    taps.push(tap);
                    continue;
                }
                Stage::Process(p) => p,
            };
            let stdin = match up {
                Upstream::Fd(input, writer) if !taps.is_empty() => {
                    let (r, w) = sys::pipe()?;
                    let out = PumpOut::Child(Some(w));
                    engine.add_pump(input, writer, std::mem::take(&mut taps), lines, out)?;
                    Stdio::from(r)
                }
                up => {
                    taps.clear(); // closures with nothing to read are never called
                    match up {
                        Upstream::Null => Stdio::null(),
                        Upstream::Inherit => Stdio::inherit(),
                        Upstream::Fd(fd, _) => Stdio::from(fd),
                    }
                }
            };
            // The last process writes straight into a file, our stdout or stderr, or
            // /dev/null; anything else reads its output from a pipe.
            let direct = match stages.peek() {
                None => direct_target(&mut sink)?,
                Some(_) => None,
            };
            let (target, next) = match direct {
                Some(target) => (target, None),
                None => {
                    let (r, w) = sys::pipe()?;
                    (Target::Fd(w), Some(r))
                }
            };
            lines = process.by_line;
            let feeds_a_process = engine.children.len() + 1 < processes;
            let child = engine.start(*process, stdin, target, feeds_a_process)?;
            up = match next {
                Some(r) => Upstream::Fd(r, Some(child)),
                None => Upstream::Null,
            };
        }

        match up {
            Upstream::Fd(input, writer) => {
                let out = match sink {
                    SinkKind::Collect => PumpOut::Collect,
                    SinkKind::Discard => PumpOut::Discard,
                    SinkKind::Stdout => engine.writer(Box::new(io::stdout()))?,
                    SinkKind::Stderr => engine.writer(Box::new(io::stderr()))?,
                    SinkKind::Fd(fd) => engine.writer(Box::new(File::from(fd)))?,
                    SinkKind::Path(path) => engine.writer(Box::new(create(&path)?))?,
                    SinkKind::Writer(w) => engine.writer(w)?,
                };
                engine.add_pump(input, writer, taps, lines || by_line, out)?;
            }
            // Nothing produces output: the sink stays empty (or the file is just created).
            Upstream::Null | Upstream::Inherit => {
                if let SinkKind::Path(path) = sink {
                    create(&path)?;
                }
            }
        }
        Ok(engine)
    }

    /// Start `process`; returns its index.
    fn start(
        &mut self,
        process: Process,
        stdin: Stdio,
        target: Target,
        feeds_a_process: bool,
    ) -> Result<usize, Error> {
        let mut capture = None;
        let stderr = match process.stderr {
            Stderr::Inherit => Stdio::inherit(),
            Stderr::Discard => Stdio::null(),
            Stderr::Merge => match &target {
                Target::Null => Stdio::null(),
                Target::Inherit => Stdio::from(sys::dup_stdout()?),
                Target::Fd(fd) => Stdio::from(fd.try_clone()?),
            },
            Stderr::Capture => {
                let (r, w) = sys::pipe()?;
                sys::set_nonblocking(&r)?;
                capture = Some(self.captures.len());
                self.captures.push(Capture::new(r));
                Stdio::from(w)
            }
        };
        let stdout = match target {
            Target::Null => Stdio::null(),
            Target::Inherit => Stdio::inherit(),
            Target::Fd(fd) => Stdio::from(fd),
        };
        let child = ChildState::start(process, stdin, stdout, stderr, feeds_a_process, capture)?;
        self.children.push(child);
        Ok(self.children.len() - 1)
    }

    /// A pump reading `input`, which child `writer` (if any) writes into.
    fn add_pump(
        &mut self,
        input: OwnedFd,
        writer: Option<usize>,
        taps: Vec<Tap>,
        by_line: bool,
        out: PumpOut,
    ) -> Result<(), Error> {
        sys::set_nonblocking(&input)?;
        if let PumpOut::Child(Some(fd)) = &out {
            sys::set_nonblocking(fd)?;
        }
        self.pumps.push(Pump::new(input, taps, by_line, out));
        if let Some(child) = writer {
            self.children[child].out_pump = Some(self.pumps.len() - 1);
        }
        Ok(())
    }

    fn writer(&mut self, writer: Box<dyn Write + Send>) -> Result<PumpOut, Error> {
        Ok(PumpOut::Writer(SinkThread::start(
            writer,
            self.wake_tx.clone(),
        )?))
    }

    /// Run `feed` on a thread writing into a new pipe; returns the pipe's read end.
    fn feed(&mut self, feed: Feed) -> Result<Upstream, Error> {
        let (r, w) = sys::pipe()?;
        self.feeders
            .push(Feeder::start(feed, w, self.wake_tx.clone())?);
        Ok(Upstream::Fd(r, None))
    }
}

/// The fd-level target for `sink`, taken out of it, if the last process can write to it
/// directly.
fn direct_target(sink: &mut SinkKind) -> Result<Option<Target>, Error> {
    Ok(Some(match std::mem::replace(sink, SinkKind::Collect) {
        SinkKind::Discard => Target::Null,
        SinkKind::Stdout => {
            // Keep what we printed before what the child prints.
            let _ = io::stdout().flush();
            Target::Inherit
        }
        SinkKind::Stderr => Target::Fd(sys::dup_stderr()?),
        SinkKind::Fd(fd) => Target::Fd(fd),
        SinkKind::Path(path) => Target::Fd(create(&path)?.into()),
        pumped @ (SinkKind::Collect | SinkKind::Writer(_)) => {
            *sink = pumped;
            return Ok(None);
        }
    }))
}

fn open(path: &std::path::Path) -> Result<File, Error> {
    File::open(path)
        .map_err(|e| Error::Source(io::Error::new(e.kind(), format!("{}: {e}", path.display()))))
}

fn create(path: &std::path::Path) -> Result<File, Error> {
    File::create(path)
        .map_err(|e| Error::Sink(io::Error::new(e.kind(), format!("{}: {e}", path.display()))))
}
