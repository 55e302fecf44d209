//! Where the power goes: phases, cut cases, and how a run spreads its cuts
//! over the steps the phases make.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context};

/// The operations cut into. What each one sets up, runs and must end in
/// is in `guest/guest.sh`.
pub const PHASES: &[&str] = &[
    "fresh",
    "upgrade",
    "rollback",
    "failsafe",
    "recover-rollback",
    "recover-undo",
    "commit",
    "clean",
    "link-tree",
];

/// The pseudo-step of the line the guest prints as it starts the
/// operation: a cut after it falls before the first traced call.
pub const START: &str = "start";

/// Where a cut falls: after the `n`th instance of `step` (or after the
/// operation finished, `step` None), plus `delay_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub phase: String,
    pub step: Option<String>,
    pub n: usize,
    pub delay_ms: u64,
    /// ext4's data mode for the cut boot: ordered or writeback.
    pub data: String,
    /// A cut of the disk's volatile cache instead (logwrites.rs): after
    /// the operation's `.0`th flush point, with the writes after it that
    /// seed `.1` picks (none without).
    pub cache_loss: Option<(usize, Option<u64>)>,
}

/// `PHASE@STEP#N+DELAYms/DATA`, or `PHASE@done+DELAYms/DATA`; for the disk's
/// cache, `PHASE@flush#K/DATA` or `PHASE@flush#K~SEED/DATA`: what a
/// failure record says and `replay` takes.
impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((barrier, subset)) = self.cache_loss {
            write!(f, "{}@flush#{barrier}", self.phase)?;
            if let Some(seed) = subset {
                write!(f, "~{seed}")?;
            }
            return write!(f, "/{}", self.data);
        }
        match &self.step {
            Some(step) => write!(f, "{}@{step}#{}", self.phase, self.n)?,
            None => write!(f, "{}@done", self.phase)?,
        }
        write!(f, "+{}ms/{}", self.delay_ms, self.data)
    }
}

impl FromStr for Case {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Case> {
        let bad = || {
            format!(
                "{s:?} is not a case (PHASE@STEP#N+DELAYms/DATA, PHASE@done+DELAYms/DATA, \
                 PHASE@flush#K/DATA or PHASE@flush#K~SEED/DATA)"
            )
        };
        let (phase, rest) = s.split_once('@').with_context(bad)?;
        let mut cache_loss = None;
        let (step, n, delay, data) = if let Some(flush) = rest.strip_prefix("flush#") {
            let (point, data) = flush.split_once('/').with_context(bad)?;
            let (barrier, subset) = match point.split_once('~') {
                Some((b, seed)) => (b, Some(seed.parse().with_context(bad)?)),
                None => (point, None),
            };
            cache_loss = Some((barrier.parse().with_context(bad)?, subset));
            (None, 0, "0", data)
        } else {
            let (at, rest) = rest.rsplit_once('+').with_context(bad)?;
            let (delay, data) = rest.split_once("ms/").with_context(bad)?;
            match at {
                "done" => (None, 0, delay, data),
                _ => {
                    let (step, n) = at.rsplit_once('#').with_context(bad)?;
                    (
                        Some(step.to_string()),
                        n.parse().with_context(bad)?,
                        delay,
                        data,
                    )
                }
            }
        };
        if !PHASES.contains(&phase) {
            bail!("unknown phase {phase:?}: one of {}", PHASES.join(", "));
        }
        if !["ordered", "writeback"].contains(&data) {
            bail!("unknown data mode {data:?}: ordered or writeback");
        }
        Ok(Case {
            phase: phase.to_string(),
            step,
            n,
            delay_ms: delay.parse().with_context(bad)?,
            data: data.to_string(),
            cache_loss,
        })
    }
}

/// The cases of a regressions file: one a line, its first word; a line
/// that starts with `#` is a comment, and so is what follows the case.
pub fn regressions(text: &str) -> anyhow::Result<Vec<Case>> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .map(|l| l.parse().with_context(|| format!("regressions: {l}")))
        .collect()
}

/// One step instance of a phase's uncut run: its class, which instance of
/// it, and when it came (ms after the start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub step: String,
    pub n: usize,
    pub at_ms: u64,
}

/// A phase's operation run to its end once: the steps it makes, in order.
#[derive(Debug, Clone, Default)]
pub struct Calibration {
    pub marks: Vec<Mark>,
    pub total_ms: u64,
}

impl Calibration {
    /// From the steps as they came, with their times.
    pub fn new(steps: &[(String, u64)], total_ms: u64) -> Calibration {
        let mut counts = BTreeMap::<&str, usize>::new();
        let mut marks = vec![Mark {
            step: START.into(),
            n: 1,
            at_ms: 0,
        }];
        for (step, at_ms) in steps {
            let n = counts.entry(step).or_default();
            *n += 1;
            marks.push(Mark {
                step: step.clone(),
                n: *n,
                at_ms: *at_ms,
            });
        }
        Calibration { marks, total_ms }
    }

    /// The distinct steps, in order of first appearance.
    pub fn steps(&self) -> Vec<&str> {
        let mut seen = Vec::new();
        for mark in &self.marks {
            if !seen.contains(&mark.step.as_str()) {
                seen.push(mark.step.as_str());
            }
        }
        seen
    }

    /// Time from mark `i` to the next one (or to the end).
    fn gap_ms(&self, i: usize) -> u64 {
        let next = self
            .marks
            .get(i + 1)
            .map(|m| m.at_ms)
            .unwrap_or(self.total_ms);
        next.saturating_sub(self.marks[i].at_ms)
    }
}

/// Spreads `cuts` over the phases (in proportion to their distinct steps,
/// at least 3 each), and within a phase: one cut after it finished, then
/// every distinct step once (a random instance) while cuts last, then
/// random instances. The delay after the marker is random, up to a little
/// more than the time to the next step, so cuts land during the calls as
/// well as between them.
pub fn plan(calibrations: &BTreeMap<String, Calibration>, cuts: usize, seed: u64) -> Vec<Case> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let weights: Vec<(&String, usize)> = calibrations
        .iter()
        .map(|(phase, c)| (phase, c.steps().len()))
        .collect();
    let total: usize = weights.iter().map(|(_, w)| w).sum::<usize>().max(1);
    let mut budgets: Vec<(&String, usize)> = weights
        .iter()
        .map(|(p, w)| (*p, (cuts * w / total).max(3)))
        .collect();
    // Bring the sum to `cuts` (rounding, and the minimum of 3).
    let mut sum: usize = budgets.iter().map(|(_, b)| b).sum();
    while sum < cuts && !budgets.is_empty() {
        let i = rng.usize(..budgets.len());
        budgets[i].1 += 1;
        sum += 1;
    }
    while sum > cuts {
        // Take from the phases above the minimum, else from any above one.
        let floor = if budgets.iter().any(|(_, b)| *b > 3) {
            3
        } else {
            1
        };
        let above: Vec<usize> = (0..budgets.len())
            .filter(|&i| budgets[i].1 > floor)
            .collect();
        if above.is_empty() {
            break;
        }
        budgets[above[rng.usize(..above.len())]].1 -= 1;
        sum -= 1;
    }
    let mut cases = Vec::new();
    for (phase, budget) in budgets {
        let calibration = &calibrations[phase];
        let data = |rng: &mut fastrand::Rng| {
            if rng.u8(..3) == 0 {
                "writeback"
            } else {
                "ordered"
            }
            .to_string()
        };
        let mut phase_cases = vec![Case {
            phase: phase.clone(),
            step: None,
            n: 0,
            delay_ms: rng.u64(..400),
            data: data(&mut rng),
            cache_loss: None,
        }];
        let mut steps = calibration.steps();
        rng.shuffle(&mut steps);
        let mut picks: Vec<usize> = steps
            .iter()
            .map(|step| {
                let instances: Vec<usize> = (0..calibration.marks.len())
                    .filter(|&i| calibration.marks[i].step == *step)
                    .collect();
                instances[rng.usize(..instances.len())]
            })
            .collect();
        while picks.len() < budget {
            picks.push(rng.usize(..calibration.marks.len()));
        }
        for i in picks.into_iter().take(budget.saturating_sub(1)) {
            let mark = &calibration.marks[i];
            let span = (calibration.gap_ms(i) * 3 / 2).clamp(5, 3000);
            phase_cases.push(Case {
                phase: phase.clone(),
                step: Some(mark.step.clone()),
                n: mark.n,
                delay_ms: rng.u64(..span),
                data: data(&mut rng),
                cache_loss: None,
            });
        }
        cases.extend(phase_cases);
    }
    rng.shuffle(&mut cases);
    cases
}

/// Spreads `cuts` disk-cache cuts over the phases (`barriers`: how many
/// flush points each phase's logged run has, and its data mode): evenly,
/// each phase's share over its flush points, half of them with a random
/// subset of the writes after the flush.
pub fn plan_cache_loss(
    barriers: &BTreeMap<String, (usize, String)>,
    cuts: usize,
    seed: u64,
) -> Vec<Case> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let phases: Vec<(&String, &(usize, String))> =
        barriers.iter().filter(|(_, (n, _))| *n > 0).collect();
    let mut cases = Vec::new();
    for (i, (phase, (points, data))) in phases.iter().enumerate() {
        let share = cuts / phases.len() + usize::from(i < cuts % phases.len());
        for k in 0..share {
            // Stratified: the k-th of `share` slices of the flush points.
            let lo = (k * points / share).min(points - 1);
            let hi = ((k + 1) * points / share).clamp(lo + 1, *points);
            cases.push(Case {
                phase: phase.to_string(),
                step: None,
                n: 0,
                delay_ms: 0,
                data: data.clone(),
                cache_loss: Some((rng.usize(lo..hi), rng.bool().then(|| rng.u64(..1_000_000)))),
            });
        }
    }
    rng.shuffle(&mut cases);
    cases
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calibration(steps: &[&str]) -> Calibration {
        let steps: Vec<(String, u64)> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.to_string(), 10 * i as u64 + 10))
            .collect();
        Calibration::new(&steps, 500)
    }

    #[test]
    fn cases_print_and_parse_back() {
        for text in [
            "upgrade@fw-fixate:renameat2:S/V>T/V#1+12ms/ordered",
            "link-tree@done+300ms/writeback",
            "fresh@start#1+0ms/ordered",
            "upgrade@flush#7/writeback",
            "clean@flush#0~12345/ordered",
        ] {
            let case: Case = text.parse().unwrap();
            assert_eq!(case.to_string(), text);
        }
        assert!("nowhere@done+1ms/ordered".parse::<Case>().is_err());
        assert!("fresh@done+1ms/journal".parse::<Case>().is_err());
        assert!("fresh@x#y+1ms/ordered".parse::<Case>().is_err());
    }

    #[test]
    fn the_regressions_file_parses() {
        let cases = regressions(include_str!("../regressions")).unwrap();
        assert!(!cases.is_empty());
        assert!(
            regressions("# nothing\n\nfresh@done+1ms/ordered # why\n")
                .unwrap()
                .len()
                == 1
        );
    }

    #[test]
    fn a_plan_spends_every_cut_and_reaches_every_step_when_it_can() {
        let mut calibrations = BTreeMap::new();
        calibrations.insert(
            "upgrade".to_string(),
            calibration(&["a", "b", "a", "c", "d", "a"]),
        );
        calibrations.insert("commit".to_string(), calibration(&["x", "y"]));
        let cases = plan(&calibrations, 20, 7);
        assert_eq!(cases.len(), 20);
        for (phase, calibration) in &calibrations {
            let mine: Vec<&Case> = cases.iter().filter(|c| &c.phase == phase).collect();
            assert!(mine.len() >= 3, "{phase}: {}", mine.len());
            assert!(
                mine.iter().any(|c| c.step.is_none()),
                "{phase}: no cut after the end"
            );
            for step in calibration.steps() {
                assert!(
                    mine.iter().any(|c| c.step.as_deref() == Some(step)),
                    "{phase}: step {step} not planned"
                );
            }
        }
        // The same seed, the same plan.
        assert_eq!(plan(&calibrations, 20, 7), cases);
        // Fewer cuts than steps: the minimum per phase still holds.
        assert_eq!(plan(&calibrations, 6, 1).len(), 6);
    }

    #[test]
    fn cache_cuts_spread_over_every_phase_and_its_flush_points() {
        let mut barriers = BTreeMap::new();
        barriers.insert("upgrade".to_string(), (40, "ordered".to_string()));
        barriers.insert("commit".to_string(), (3, "writeback".to_string()));
        let cases = plan_cache_loss(&barriers, 9, 3);
        assert_eq!(cases.len(), 9);
        let upgrade: Vec<usize> = cases
            .iter()
            .filter(|c| c.phase == "upgrade")
            .map(|c| c.cache_loss.unwrap().0)
            .collect();
        // 9 over 2 phases: 5 and 4, the extra one to the first.
        assert_eq!(upgrade.len(), 4);
        assert!(upgrade.iter().all(|&b| b < 40));
        assert!(
            upgrade.iter().any(|&b| b >= 30),
            "the last slice: {upgrade:?}"
        );
        let commit: Vec<usize> = cases
            .iter()
            .filter(|c| c.phase == "commit")
            .map(|c| c.cache_loss.unwrap().0)
            .collect();
        assert!(commit.iter().all(|&b| b < 3), "{commit:?}");
        for case in &cases {
            assert_eq!(case.to_string().parse::<Case>().unwrap(), *case);
        }
    }
}
