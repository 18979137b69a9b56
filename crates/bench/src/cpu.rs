//! Where the CPU goes during a load: each thread's time on a CPU and time waiting for one, from
//! Linux's `/proc/PID/task/TID/schedstat` (nanoseconds, unlike the clock ticks of `stat`), and
//! the whole machine's busy share from `/proc/stat`. Read before and after a load; the
//! difference, divided by the events stored, is the CPU each event cost. On two cores the
//! throughput of a CPU-bound server is about `2 cores × busy share / (µs per event)`, so this
//! table says whether a server is bound by its CPU or by something else.
//!
//! Linux only: elsewhere every sample is empty and the table says so.

use std::collections::BTreeMap;
use std::time::Duration;

/// Time a thread spent on a CPU and waiting in a run queue for one, in nanoseconds.
#[derive(Clone, Copy, Default)]
pub(crate) struct Times {
    pub(crate) on_cpu: u64,
    pub(crate) waiting: u64,
}

impl Times {
    pub(crate) fn since(self, before: Times) -> Times {
        Times {
            on_cpu: self.on_cpu.saturating_sub(before.on_cpu),
            waiting: self.waiting.saturating_sub(before.waiting),
        }
    }

    fn add(&mut self, other: Times) {
        self.on_cpu += other.on_cpu;
        self.waiting += other.waiting;
    }
}

/// `on_cpu waiting timeslices`, as in `/proc/.../schedstat`.
fn parse_schedstat(text: &str) -> Option<Times> {
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    Some(Times {
        on_cpu: fields.next()?.ok()?,
        waiting: fields.next()?.ok()?,
    })
}

/// The calling thread's times, as of the last time it left a CPU (the kernel adds a running
/// thread's time when it is switched out): up to a scheduler tick behind, nothing over a load.
pub(crate) fn this_thread() -> Times {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|t| parse_schedstat(&t))
        .unwrap_or_default()
}

/// Every live thread of process `pid`, by thread id: its name and times.
#[derive(Default)]
pub(crate) struct Process(BTreeMap<u64, (String, Times)>);

impl Process {
    pub(crate) fn sample(pid: u32) -> Process {
        let mut threads = BTreeMap::new();
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return Process(threads);
        };
        for task in dir.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let path = task.path();
            let (Ok(name), Ok(stat)) = (
                std::fs::read_to_string(path.join("comm")),
                std::fs::read_to_string(path.join("schedstat")),
            ) else {
                continue;
            };
            if let Some(times) = parse_schedstat(&stat) {
                threads.insert(tid, (name.trim().to_owned(), times));
            }
        }
        Process(threads)
    }

    /// What each thread name's threads did between `before` and `self`. A thread born in
    /// between counts from zero; one that ended in between is missing (the servers measured
    /// here keep their threads for the whole run).
    pub(crate) fn since(&self, before: &Process) -> BTreeMap<String, Times> {
        let mut by_name: BTreeMap<String, Times> = BTreeMap::new();
        for (tid, (name, now)) in &self.0 {
            let then = before.0.get(tid).map(|(_, t)| *t).unwrap_or_default();
            by_name
                .entry(name.clone())
                .or_default()
                .add(now.since(then));
        }
        by_name
    }
}

/// The machine's CPU time from the first line of `/proc/stat`: (busy, all), in clock ticks.
/// Busy is everything but idle and I/O wait; stolen time counts as busy (a CPU was wanted).
pub(crate) fn machine() -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    parse_machine(&text).unwrap_or((0, 0))
}

fn parse_machine(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already
    // counted in user and nice.
    let all: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((all - idle, all))
}

/// The busy share of the machine between two [`machine`] readings.
pub(crate) fn busy_share(before: (u64, u64), after: (u64, u64)) -> f64 {
    let all = after.1.saturating_sub(before.1);
    if all == 0 {
        return f64::NAN;
    }
    after.0.saturating_sub(before.0) as f64 / all as f64
}

/// Microseconds of `t` per event.
pub(crate) fn micros_per(t: u64, events: u64) -> f64 {
    if events == 0 {
        return f64::NAN;
    }
    t as f64 / 1000.0 / events as f64
}

/// `t` as a share of the wall time `over`, in percent.
pub(crate) fn percent_of(t: u64, over: Duration) -> f64 {
    t as f64 / over.as_nanos() as f64 * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_gives_time_on_a_cpu_then_time_waiting_for_one() {
        let t = parse_schedstat("166481560 13579386 299\n").expect("parsed");
        assert_eq!((t.on_cpu, t.waiting), (166_481_560, 13_579_386));
        assert!(parse_schedstat("12").is_none());
    }

    #[test]
    fn the_machine_is_busy_for_all_but_idle_and_io_wait() {
        let text = "cpu  600 10 100 4000 150 5 40 11 7 0\ncpu0 1 2 3 4 5 6 7 8\n";
        // busy: user 600 + nice 10 + system 100 + irq 5 + softirq 40 + steal 11; guest (7)
        // is inside user already.
        assert_eq!(parse_machine(text), Some((766, 4916)));
        assert_eq!(busy_share((0, 0), (766, 4916)), 766.0 / 4916.0);
    }

    #[test]
    fn a_process_sample_follows_its_threads_by_id_and_sums_them_by_name() {
        let before = Process(BTreeMap::from([
            (
                1,
                (
                    "w".to_owned(),
                    Times {
                        on_cpu: 10,
                        waiting: 1,
                    },
                ),
            ),
            (
                2,
                (
                    "w".to_owned(),
                    Times {
                        on_cpu: 5,
                        waiting: 0,
                    },
                ),
            ),
        ]));
        let after = Process(BTreeMap::from([
            (
                1,
                (
                    "w".to_owned(),
                    Times {
                        on_cpu: 30,
                        waiting: 4,
                    },
                ),
            ),
            (
                2,
                (
                    "w".to_owned(),
                    Times {
                        on_cpu: 6,
                        waiting: 0,
                    },
                ),
            ),
            (
                3,
                (
                    "x".to_owned(),
                    Times {
                        on_cpu: 7,
                        waiting: 2,
                    },
                ),
            ),
        ]));
        let d = after.since(&before);
        assert_eq!((d["w"].on_cpu, d["w"].waiting), (21, 3));
        assert_eq!((d["x"].on_cpu, d["x"].waiting), (7, 2));
    }

    #[test]
    fn this_thread_has_run() {
        // The kernel adds a running thread's time to what `schedstat` shows when it leaves the
        // CPU, so a new thread that has not slept yet may read 0.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let t = this_thread();
        if std::path::Path::new("/proc/thread-self/schedstat").exists() {
            assert!(t.on_cpu > 0);
        }
    }
}
