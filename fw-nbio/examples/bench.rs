//! Throughput of fw-nbio pipes against the shell.
//!
//! `cargo run --release -p fw-nbio --example bench -- [--bytes N[K|M|G]]` (default 1G)
//!
//! Every case reads the same in-memory source (one shared 1 MiB chunk, repeated) and
//! throws its output away as `> /dev/null` would; each runs twice, the best time counts.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use fw_nbio::{Pipe, Process as P, Source};

const CHUNK: usize = 1 << 20;

/// `len` bytes of `chunk`; lets the last chunk be short without copying.
struct Chunk(Arc<[u8]>, usize);

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.0[..self.1]
    }
}

fn source(total: u64) -> Source {
    let chunk: Arc<[u8]> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    let mut left = total;
    Source::chunks(std::iter::from_fn(move || {
        let n = left.min(CHUNK as u64) as usize;
        left -= n as u64;
        (n > 0).then(|| Chunk(chunk.clone(), n))
    }))
}

fn cat() -> P {
    P::argv(["cat"])
}

fn time(pipe: impl FnOnce() -> Pipe) -> Duration {
    let started = Instant::now();
    pipe().run().expect("benchmark pipe failed");
    started.elapsed()
}

fn best(runs: usize, mut case: impl FnMut() -> Duration) -> Duration {
    (0..runs).map(|_| case()).min().expect("at least one run")
}

fn rate(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn max_rss_kib(who: i32) -> i64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage.ru_maxrss
    }
}

/// Our own peak RSS (`VmHWM`): unlike getrusage's maxrss, which survives exec and so
/// reports `cargo run`'s own peak when launched that way.
fn vm_hwm_kib() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn parse_size(s: &str) -> Option<u64> {
    let (digits, unit) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1 << 10),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    digits.parse::<u64>().ok().map(|n| n * unit)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut bytes: u64 = 1 << 30;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bytes" => {
                bytes = args
                    .next()
                    .as_deref()
                    .and_then(parse_size)
                    .expect("--bytes takes a size like 268435456 or 256M");
            }
            _ => panic!("usage: bench [--bytes N[K|M|G]]"),
        }
    }
    let runs = 2;
    println!(
        "fw-nbio benchmark: {} MiB per case, best of {runs}",
        bytes >> 20
    );

    let rss_before = vm_hwm_kib().unwrap_or(-1);
    let mut nbio = Duration::MAX;
    let mut shell = Duration::MAX;
    for _ in 0..runs {
        // Alternate, so drift in machine load hits both alike.
        nbio = nbio.min(time(|| {
            source(bytes) | cat() | cat() | cat() | std::io::sink()
        }));
        shell = shell.min(time(|| {
            source(bytes) | P::shell("cat | cat | cat") | std::io::sink()
        }));
    }
    let seen = Arc::new(AtomicU64::new(0));
    let closure = best(runs, || {
        let counter = seen.clone();
        time(|| {
            source(bytes)
                | cat()
                | (move |chunk: &[u8]| {
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                })
                | cat()
                | std::io::sink()
        })
    });
    assert_eq!(seen.load(Ordering::Relaxed), bytes * runs as u64);

    let row = |name: &str, d: Duration| {
        println!(
            "{name:<40} {:>8.3} s {:>9.1} MB/s",
            d.as_secs_f64(),
            rate(bytes, d)
        );
    };
    row("fw-nbio  cat | cat | cat", nbio);
    row("sh -c   'cat | cat | cat'", shell);
    println!(
        "{:<40} {:>+7.1} %  (negative: fw-nbio faster)",
        "fw-nbio vs shell wall time",
        (nbio.as_secs_f64() / shell.as_secs_f64() - 1.0) * 100.0
    );
    row("fw-nbio  cat | <Rust closure> | cat", closure);
    println!(
        "peak RSS: self {} KiB (VmHWM {} KiB; {} KiB before the cases), children {} KiB (getrusage maxrss)",
        max_rss_kib(libc::RUSAGE_SELF),
        vm_hwm_kib().unwrap_or(-1),
        rss_before,
        max_rss_kib(libc::RUSAGE_CHILDREN)
    );
}
