//! Switches that turn parts of the request path off, for `cargo xtask bench`'s attribution of the
//! service's cost per request (docs/BENCHMARKS.md). They exist only in a binary built with the
//! cargo feature `attribution`; the shipped binary has no such switch: every part is on, and the
//! checks below are constants the compiler removes.
//!
//! A binary built with the feature reads `CHALLENGE_ATTRIBUTION_OFF` once: a comma-separated list
//! of [`Part`] names to switch off (`metrics,request-id,tracing,limits`). An unknown name stops the
//! process at start (exit 2) with a message naming the accepted ones.

/// A part of the request path that the attribution can switch off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The request metrics: active-requests gauge, duration histogram, exemplars, open-connections
    /// gauge, the database operation histogram.
    Metrics,
    /// The request id (accepted or generated, echoed back) and the generated trace id of the log
    /// line.
    RequestId,
    /// `tracing` on the request path: the request and database spans, and the request's log line
    /// (even when `RUST_LOG` filters it out, its call site is still checked).
    Tracing,
    /// The connection cap, the per-connection header and idle timeouts (the watchdog), and the
    /// database timeout around each call.
    Limits,
}

impl Part {
    pub const ALL: [Part; 4] = [Part::Metrics, Part::RequestId, Part::Tracing, Part::Limits];

    pub fn name(self) -> &'static str {
        match self {
            Part::Metrics => "metrics",
            Part::RequestId => "request-id",
            Part::Tracing => "tracing",
            Part::Limits => "limits",
        }
    }
}

/// The parts named in `list` (comma-separated, blanks ignored).
pub fn parse(list: &str) -> Result<Vec<Part>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            Part::ALL
                .into_iter()
                .find(|part| part.name() == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = Part::ALL.iter().map(|p| p.name()).collect();
                    format!(
                        "CHALLENGE_ATTRIBUTION_OFF={list:?}: unknown part {name:?}, expected a comma-separated list of {}",
                        known.join(", ")
                    )
                })
        })
        .collect()
}

/// Whether `part` runs: always in the shipped binary.
#[cfg(not(feature = "attribution"))]
#[inline(always)]
pub fn on(_part: Part) -> bool {
    true
}

/// Reads the switches at start, so that a bad list stops the process before it serves.
#[cfg(not(feature = "attribution"))]
pub fn init() {}

/// Reads the switches at start, so that a bad list stops the process before it serves.
#[cfg(feature = "attribution")]
pub fn init() {
    off();
}

/// Whether `part` runs: unless `CHALLENGE_ATTRIBUTION_OFF` names it.
#[cfg(feature = "attribution")]
pub fn on(part: Part) -> bool {
    !off().contains(&part)
}

#[cfg(feature = "attribution")]
fn off() -> &'static [Part] {
    use std::sync::OnceLock;
    static OFF: OnceLock<Vec<Part>> = OnceLock::new();
    OFF.get_or_init(|| {
        let list = std::env::var("CHALLENGE_ATTRIBUTION_OFF").unwrap_or_default();
        parse(&list).unwrap_or_else(|message| {
            eprintln!("error: {message}");
            std::process::exit(2)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::{Part, parse};

    #[test]
    fn parses_a_list_of_parts() {
        assert_eq!(
            parse("metrics, request-id,tracing,limits"),
            Ok(Part::ALL.to_vec())
        );
        assert_eq!(parse(""), Ok(vec![]));
        assert_eq!(parse("limits,"), Ok(vec![Part::Limits]));
    }

    #[test]
    fn an_unknown_part_is_named_with_the_accepted_ones() {
        let err = parse("metrics,logs").unwrap_err();
        assert!(err.contains("\"logs\""), "{err}");
        assert!(
            err.contains("metrics, request-id, tracing, limits"),
            "{err}"
        );
    }

    #[cfg(not(feature = "attribution"))]
    #[test]
    fn the_shipped_binary_has_every_part_on() {
        for part in Part::ALL {
            assert!(super::on(part));
        }
    }
}
