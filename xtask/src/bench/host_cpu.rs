//! Where the whole machine's CPU time goes during a run: per group of processes (found by their
//! command name in /proc, inside containers or not) and the rest, per request answered.
//!
//! A container's cgroup says what the container used, but a request through the Compose stack also
//! costs CPU outside every container: Docker's port forwarding, and the engine carrying each line a
//! container writes on stdout to its log driver (containerd's shim, then dockerd). Those costs are
//! shared by the whole machine's 2 CPUs with the load generator and the database, so they are
//! counted here, process by process.

use std::collections::HashMap;

/// A group of processes, by the command name the kernel keeps for each (`/proc/<pid>/stat`'s
/// second field, at most 15 characters).
pub struct Group {
    pub label: &'static str,
    /// A process belongs to the first group one of whose names its command name starts with.
    names: &'static [&'static str],
}

/// The groups of the table, in its column order; everything else is "other".
pub const GROUPS: [Group; 6] = [
    Group {
        label: "service (`challenge`)",
        names: &["challenge"],
    },
    Group {
        label: "HAProxy",
        names: &["haproxy"],
    },
    Group {
        label: "port forwarding (`docker-proxy`)",
        names: &["docker-proxy"],
    },
    Group {
        label: "engine (`dockerd`, `containerd`, shims)",
        // containerd-shim-runc-v2's command name is cut to `containerd-shim`.
        names: &["dockerd", "containerd"],
    },
    Group {
        label: "database (`mariadbd`)",
        names: &["mariadbd", "mysqld"],
    },
    Group {
        label: "load (`wrk`)",
        names: &["wrk"],
    },
];

/// The kernel's clock ticks per second in /proc (USER_HZ: 100 on every Linux ABI this runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// The group of the load generator, whose runs end before the second sample: it is counted by the
/// time of this process's children that have ended.
const LOAD: usize = 5;

/// CPU ticks so far: the machine's busy ticks and each process's.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    busy: u64,
    /// pid -> (group index, user + system ticks).
    processes: HashMap<u32, (usize, u64)>,
    /// User + system ticks of this process's children that have ended (wrk, once it returns).
    children: u64,
}

/// CPU time per request between two samples, in microseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct PerRequest {
    /// In the order of [`GROUPS`].
    pub groups: Vec<f64>,
    /// Busy time of no listed process: other processes, processes that ended during the run (the
    /// containers' health checks), and interrupts the kernel does not charge to a process.
    pub other: f64,
    pub total: f64,
}

impl Sample {
    /// Reads /proc now; `None` where it cannot be read (not Linux).
    pub fn now() -> Option<Sample> {
        let (busy, _) = super::cpu_times(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let mut processes = HashMap::new();
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            // A process may end between the listing and the read.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some((name, ticks)) = process_ticks(&stat)
                && let Some(group) = group_of(name)
            {
                processes.insert(pid, (group, ticks));
            }
        }
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        let children = children_ticks(&own)?;
        Some(Sample {
            busy,
            processes,
            children,
        })
    }

    /// What ran from `before` to `self`, per request of `requests`. A process that started in
    /// between counts from zero; one that ended in between is in `other`.
    pub fn since(&self, before: &Sample, requests: u64) -> PerRequest {
        let per_request = 1e6 / TICKS_PER_SECOND / requests.max(1) as f64;
        let mut groups = vec![0u64; GROUPS.len()];
        for (pid, (group, ticks)) in &self.processes {
            let earlier = before
                .processes
                .get(pid)
                .filter(|(g, _)| g == group)
                .map_or(0, |(_, t)| *t);
            groups[*group] += ticks.saturating_sub(earlier);
        }
        groups[LOAD] += self.children.saturating_sub(before.children);
        let busy = self.busy.saturating_sub(before.busy);
        let listed: u64 = groups.iter().sum();
        PerRequest {
            groups: groups.iter().map(|t| *t as f64 * per_request).collect(),
            other: busy.saturating_sub(listed) as f64 * per_request,
            total: busy as f64 * per_request,
        }
    }
}

impl PerRequest {
    /// Each figure's median over the runs; `None` without runs.
    pub fn median(runs: &[PerRequest]) -> Option<PerRequest> {
        let first = runs.first()?;
        let median = |f: &dyn Fn(&PerRequest) -> f64| super::median(runs.iter().map(f).collect());
        Some(PerRequest {
            groups: (0..first.groups.len())
                .map(|i| median(&|r| r.groups[i]))
                .collect(),
            other: median(&|r| r.other),
            total: median(&|r| r.total),
        })
    }
}

/// A process's command name and user + system ticks, from its /proc/<pid>/stat line. The name sits
/// in parentheses and may itself hold spaces or parentheses, so the fields are counted from the
/// last `)`.
fn process_ticks(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    // After the name: state (field 3), ..., utime (field 14), stime (field 15).
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// The user + system ticks of a process's ended children (cutime, cstime: fields 16 and 17).
fn children_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let user: u64 = fields.get(13)?.parse().ok()?;
    let system: u64 = fields.get(14)?.parse().ok()?;
    Some(user + system)
}

fn group_of(name: &str) -> Option<usize> {
    GROUPS
        .iter()
        .position(|g| g.names.iter().any(|n| name.starts_with(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_ticks_count_fields_after_the_last_parenthesis() {
        let stat = "4242 (containerd-shim) S 1 4242 1 0 -1 1077936384 1200 0 0 0 \
                    310 95 0 0 20 0 12 0 5000 0 0";
        assert_eq!(process_ticks(stat), Some(("containerd-shim", 405)));
        // A name with a space and a parenthesis of its own.
        let stat = "7 (a (b) c) R 1 7 1 0 -1 0 0 0 0 0 11 22 0 0 20 0 1 0 5 0 0";
        assert_eq!(process_ticks(stat), Some(("a (b) c", 33)));
        assert_eq!(process_ticks("7 (short) R 1 2"), None);
        // cutime 5 and cstime 6 follow utime and stime.
        let own = "9 (xtask) S 1 9 1 0 -1 0 0 0 0 0 11 22 5 6 20 0 1 0 5 0 0";
        assert_eq!(children_ticks(own), Some(11));
    }

    #[test]
    fn processes_fall_in_the_first_matching_group() {
        let label = |name| group_of(name).map(|g| GROUPS[g].label);
        assert_eq!(label("challenge"), Some("service (`challenge`)"));
        assert_eq!(label("containerd-shim"), Some(GROUPS[3].label));
        assert_eq!(label("dockerd"), Some(GROUPS[3].label));
        assert_eq!(label("docker-proxy"), Some(GROUPS[2].label));
        assert_eq!(label("mariadbd"), Some(GROUPS[4].label));
        assert_eq!(label("bash"), None);
        // The ended children's time goes to the load generator's column.
        assert_eq!(label("wrk"), Some(GROUPS[LOAD].label));
    }

    #[test]
    fn since_spreads_each_groups_ticks_over_the_requests() {
        let before = Sample {
            busy: 1_000,
            processes: HashMap::from([(1, (0, 100)), (2, (3, 50)), (3, (5, 10))]),
            children: 7,
        };
        let after = Sample {
            busy: 1_400,
            // pid 3 ended (its ticks are in `other`), pid 4 started (counted from zero), pid 2's
            // number was taken by a process of another group (counted from zero).
            processes: HashMap::from([(1, (0, 300)), (2, (4, 20)), (4, (1, 30))]),
            // A wrk run of 40 ticks ended.
            children: 47,
        };
        // 1,000 requests: a tick (10 ms) is 10 µs per request.
        let used = after.since(&before, 1_000);
        assert_eq!(used.groups, vec![2_000.0, 300.0, 0.0, 0.0, 200.0, 400.0]);
        assert_eq!(used.total, 4_000.0);
        assert_eq!(used.other, 4_000.0 - 2_900.0);
    }

    #[test]
    fn the_median_is_taken_per_figure() {
        let run = |g: f64, other: f64| PerRequest {
            groups: vec![g, 1.0],
            other,
            total: g + 1.0 + other,
        };
        let median = PerRequest::median(&[run(10.0, 5.0), run(30.0, 1.0), run(20.0, 9.0)]).unwrap();
        assert_eq!(median.groups, vec![20.0, 1.0]);
        assert_eq!(median.other, 5.0);
        assert_eq!(median.total, 30.0);
        assert_eq!(PerRequest::median(&[]), None);
    }

    #[test]
    fn this_machine_can_be_sampled() {
        let before = Sample::now().expect("/proc is readable on Linux");
        // A child that burns CPU and ends counts for the load group.
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        let after = Sample::now().unwrap();
        assert!(after.busy >= before.busy, "busy ticks never go back");
        assert!(
            after.children > before.children,
            "the ended child's time is counted: {} then {}",
            before.children,
            after.children
        );
    }
}
