//! A pump moves data where Rust stands in the stream: from a process's stdout (or a
//! feeder) through closures, into the next process's stdin, the collected output, or a
//! sink writer's thread. It never blocks: what the next stage has no room for waits in
//! its buffer, and its input is not read meanwhile.

use std::{collections::VecDeque, io, os::fd::OwnedFd};

use super::writer::{Sent, SinkThread};
use crate::{
    lines::LineSplitter,
    pipe::Tap,
    sys::{self, Io},
};

/// Bytes moved per read: a default pipe's whole capacity.
const CHUNK: usize = 64 * 1024;
/// Chunks a pump moves per wake-up before letting the others have a turn.
const BURST: usize = 16;

pub(super) struct Pump {
    /// `None` once at its end, or closed.
    pub(super) input: Option<OwnedFd>,
    taps: Vec<Tap>,
    lines: Option<LineSplitter>,
    pub(super) out: PumpOut,
    /// Read but not yet passed on.
    buf: Vec<u8>,
    written: usize,
}

pub(super) enum PumpOut {
    /// A child's stdin; `None` once closed.
    Child(Option<OwnedFd>),
    Collect,
    Discard,
    Writer(SinkThread),
}

impl Pump {
    pub(super) fn new(input: OwnedFd, taps: Vec<Tap>, by_line: bool, out: PumpOut) -> Self {
        Pump {
            input: Some(input),
            lines: (by_line && !taps.is_empty()).then(LineSplitter::default),
            taps,
            out,
            buf: Vec::new(),
            written: 0,
        }
    }

    /// Whether it holds data the next stage has not taken yet (and so must not read).
    pub(super) fn pending(&self) -> bool {
        self.written < self.buf.len()
    }

    /// Move data until it would block (or has had its turn). Collected output goes to
    /// `out`.
    pub(super) fn run(&mut self, out: &mut VecDeque<Vec<u8>>) {
        for _ in 0..BURST {
            if !self.pass_on() {
                return;
            }
            let Some(input) = &self.input else {
                self.out.close();
                return;
            };
            self.buf.resize(CHUNK, 0);
            self.written = 0;
            let n = match sys::read(input, &mut self.buf) {
                Ok(Io::Done(n)) => n,
                Ok(Io::WouldBlock) => {
                    self.buf.clear();
                    return;
                }
                Err(_) => 0, // treat a broken input like its end
            };
            self.buf.truncate(n);
            if n == 0 {
                self.input = None;
                if let Some(lines) = &mut self.lines {
                    let taps = &mut self.taps;
                    lines.finish(|line| taps.iter_mut().for_each(|tap| tap(line)));
                }
                self.out.close();
                return;
            }
            match &mut self.lines {
                Some(lines) => {
                    let taps = &mut self.taps;
                    lines.feed(&self.buf, |line| taps.iter_mut().for_each(|tap| tap(line)));
                }
                None => self.taps.iter_mut().for_each(|tap| tap(&self.buf)),
            }
            match &self.out {
                PumpOut::Child(_) | PumpOut::Writer(_) => {} // passed on at the loop's top
                PumpOut::Collect => out.push_back(std::mem::take(&mut self.buf)),
                PumpOut::Discard => self.buf.clear(),
            }
        }
    }

    /// Pass on what is buffered; false if some of it must wait.
    fn pass_on(&mut self) -> bool {
        if !self.pending() {
            return true;
        }
        match &mut self.out {
            PumpOut::Child(Some(fd)) => {
                while self.written < self.buf.len() {
                    match sys::write(fd, &self.buf[self.written..]) {
                        Ok(Io::Done(n)) => self.written += n,
                        Ok(Io::WouldBlock) => return false,
                        // The next child stopped reading: stop reading too, so the one
                        // before us gets its SIGPIPE, as in a shell pipeline.
                        Err(_) => {
                            self.close();
                            return false;
                        }
                    }
                }
                self.buf.clear();
                self.written = 0;
                true
            }
            PumpOut::Writer(sink) => match sink.send(std::mem::take(&mut self.buf)) {
                Sent::Yes => true,
                Sent::Full(chunk) => {
                    self.buf = chunk;
                    false
                }
                // Its error ends the pipe as soon as the engine collects it.
                Sent::Gone => false,
            },
            PumpOut::Child(None) | PumpOut::Collect | PumpOut::Discard => {
                self.buf.clear();
                true
            }
        }
    }

    /// Stop moving data: close our ends (a writer thread then finishes on its own).
    pub(super) fn close(&mut self) {
        self.input = None;
        self.out.close();
        self.buf.clear();
        self.written = 0;
    }

    pub(super) fn is_closed(&self) -> bool {
        self.input.is_none()
            && match &self.out {
                PumpOut::Child(fd) => fd.is_none(),
                PumpOut::Writer(sink) => sink.is_closed(),
                PumpOut::Collect | PumpOut::Discard => true,
            }
    }

    /// Whether what it passed on has all been written (or it never had a writer).
    pub(super) fn is_delivered(&self) -> bool {
        match &self.out {
            PumpOut::Writer(sink) => sink.is_finished(),
            _ => true,
        }
    }

    /// A sink writer's failure, once its thread has reported it.
    pub(super) fn sink_error(&mut self) -> Option<io::Error> {
        match &mut self.out {
            PumpOut::Writer(sink) => sink.outcome(),
            _ => None,
        }
    }
}

impl PumpOut {
    fn close(&mut self) {
        match self {
            PumpOut::Child(fd) => *fd = None,
            PumpOut::Writer(sink) => sink.close(),
            PumpOut::Collect | PumpOut::Discard => {}
        }
    }
}
