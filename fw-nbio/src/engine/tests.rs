use super::*;
use crate::{Pipe, Process};

/// Step `engine` until it is done.
fn drive(engine: &mut Engine) -> (Vec<u8>, Report, Option<Error>) {
    let mut out = VecDeque::new();
    while !engine.step(&mut out) {}
    let (report, error) = engine.finish();
    (out.into_iter().flatten().collect(), report, error)
}

/// Drive `pipe` as if the kernel had no pidfds: exits are found by the periodic tick.
fn run_without_pidfds(pipe: Pipe) -> (Vec<u8>, Report, Option<Error>) {
    let mut engine = Engine::spawn(pipe).unwrap();
    engine
        .children
        .iter_mut()
        .for_each(ChildState::forget_pidfd);
    drive(&mut engine)
}

#[test]
fn exits_are_seen_without_pidfds() {
    let (out, _, error) =
        run_without_pidfds(Process::shell("printf abc") | Process::shell("cat; exit 4"));
    assert_eq!(out, b"abc");
    assert_eq!(error.unwrap().process().unwrap().failure, Failure::Exit(4));

    let (out, report, error) =
        run_without_pidfds(Process::argv(["yes"]) | Process::argv(["head", "-c", "2"]));
    assert_eq!(out, b"y\n");
    assert!(error.is_none());
    assert_eq!(report.statuses.len(), 2);
}

/// Process state letter from /proc: `Z` for a zombie; `None` once reaped.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

#[test]
fn an_exited_leader_stays_a_zombie_until_the_pipe_is_done() {
    // Stage 0 exits at once; stage 1 runs on. While it does, stage 0's pid must stay
    // ours (a zombie): it is the id of the process group a teardown kills.
    let mut engine =
        Engine::spawn(Process::argv(["true"]) | Process::argv(["sleep", "30"])).unwrap();
    let mut out = VecDeque::new();
    while !engine.children[0].has_exited() {
        assert!(!engine.step(&mut out));
    }
    let leader = engine.children[0].pid;
    assert_eq!(
        state(leader),
        Some('Z'),
        "stage 0 was reaped while its group may be signalled"
    );
    engine.kill();
    let (_, _, error) = drive(&mut engine);
    assert!(matches!(error, Some(Error::Killed)));
    assert_eq!(state(leader), None, "not reaped at the end");
}
