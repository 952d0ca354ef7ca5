//! `swarmcast sim`'s report: the figures of one simulated run as text, JSON and an SVG of
//! completion over time.

use std::fmt::Write as _;

use serde::Serialize;
use swarmcast_node::sim::{FaultAction, Outcome, ScheduledFault, When};

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    pub seed: u64,
    pub receivers: usize,
    pub bytes: f64,
    /// Virtual seconds to the last completion of a receiver that had to complete.
    pub t_s: f64,
    pub t_star_s: f64,
    pub t_over_t_star: f64,
    /// What the origin uploaded, in copies of the file.
    pub origin_copies: f64,
    /// Receivers that had to complete and did not.
    pub incomplete: usize,
    /// Completion times' quantiles over the receivers that completed (seconds).
    pub p50_s: Option<f64>,
    pub p90_s: Option<f64>,
    pub p100_s: Option<f64>,
    /// Every receiver's completion (`completion_s[i - 1]` for receiver `i`).
    pub completion_s: Vec<Option<f64>>,
    pub edges: Vec<EdgeReport>,
    pub faults: Vec<FaultReport>,
    /// Wall-clock seconds the simulation took.
    pub wall_s: f64,
}

/// Payload over one connection.
#[derive(Debug, Clone, Serialize)]
pub struct EdgeReport {
    pub from: usize,
    pub to: usize,
    pub bytes: u64,
}

/// One scheduled fault and when it happened.
#[derive(Debug, Clone, Serialize)]
pub struct FaultReport {
    pub node: usize,
    pub action: &'static str,
    /// As scheduled: `12.5s` or `50%`.
    pub when: String,
    /// Virtual seconds when it happened (`None`: the run ended first).
    pub at_s: Option<f64>,
}

impl SimReport {
    pub fn new(
        seed: u64,
        o: &Outcome,
        faults: &[(ScheduledFault, Option<f64>)],
        wall_s: f64,
    ) -> Self {
        let mut done: Vec<f64> = o.done_at.iter().flatten().copied().collect();
        done.sort_by(f64::total_cmp);
        let q = |p: f64| {
            (!done.is_empty()).then(|| {
                let i = ((p * done.len() as f64).ceil() as usize).clamp(1, done.len());
                done[i - 1]
            })
        };
        Self {
            seed,
            receivers: o.done_at.len(),
            bytes: o.bytes,
            t_s: o.t,
            t_star_s: o.t_star,
            t_over_t_star: o.t / o.t_star,
            origin_copies: o.origin_copies,
            incomplete: o.incomplete,
            p50_s: q(0.5),
            p90_s: q(0.9),
            p100_s: q(1.0),
            completion_s: o.done_at.clone(),
            edges: o
                .edges
                .iter()
                .map(|&(from, to, bytes)| EdgeReport {
                    from,
                    to,
                    bytes: bytes.round() as u64,
                })
                .collect(),
            faults: faults
                .iter()
                .map(|(f, at)| FaultReport {
                    node: f.node,
                    action: match f.action {
                        FaultAction::Kill => "kill",
                        FaultAction::Restart => "restart",
                        FaultAction::Pause => "pause",
                        FaultAction::Resume => "resume",
                    },
                    when: match f.when {
                        When::At(t) => format!("{}s", t.as_secs_f64()),
                        When::Progress(p) => format!("{}%", p * 100.0),
                    },
                    at_s: *at,
                })
                .collect(),
            wall_s,
        }
    }

    /// The summary, a few lines.
    pub fn to_text(&self) -> String {
        let secs = |t: Option<f64>| t.map_or("-".to_owned(), |t| format!("{t:.2} s"));
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} receivers, {:.1} MiB, seed {}: T = {:.2} s, T* = {:.2} s, T/T* = {:.3}",
            self.receivers,
            self.bytes / (1 << 20) as f64,
            self.seed,
            self.t_s,
            self.t_star_s,
            self.t_over_t_star
        );
        let _ = writeln!(s, "origin upload: {:.3} x F", self.origin_copies);
        let complete = self.completion_s.iter().flatten().count();
        let _ = writeln!(
            s,
            "completed: {complete} of {} (p50 {}, p90 {}, p100 {}); {} that had to did not",
            self.receivers,
            secs(self.p50_s),
            secs(self.p90_s),
            secs(self.p100_s),
            self.incomplete
        );
        for f in &self.faults {
            let _ = writeln!(
                s,
                "fault: {} node {} at {}: {}",
                f.action,
                f.node,
                f.when,
                f.at_s
                    .map_or("never (the run ended first)".to_owned(), |t| format!(
                        "at {t:.2} s"
                    ))
            );
        }
        let _ = writeln!(s, "wall time: {:.2} s", self.wall_s);
        s
    }

    /// Receivers complete against virtual time, a step per completion, with T* marked.
    pub fn to_svg(&self) -> String {
        let (w, h, left, bottom, top, right) = (720.0, 420.0, 60.0, 40.0, 30.0, 20.0);
        let mut done: Vec<f64> = self.completion_s.iter().flatten().copied().collect();
        done.sort_by(f64::total_cmp);
        let t_max = done
            .last()
            .copied()
            .unwrap_or(0.0)
            .max(self.t_star_s)
            .max(1e-9)
            * 1.05;
        let n = self.receivers.max(1) as f64;
        let x = |t: f64| left + t / t_max * (w - left - right);
        let y = |k: f64| h - bottom - k / n * (h - bottom - top);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{left}" y="18">swarmcast sim: {} receivers, seed {}, T/T* = {:.3}</text>"#,
            self.receivers, self.seed, self.t_over_t_star
        );
        // Axes and ticks.
        let _ = writeln!(
            s,
            r#"<path d="M{left} {top} V{} H{}" stroke="black" fill="none"/>"#,
            h - bottom,
            w - right
        );
        for i in 0..=4 {
            let f = f64::from(i) / 4.0;
            let (tx, ty) = (x(f * t_max), y(f * n));
            let _ = writeln!(
                s,
                r#"<text x="{tx:.1}" y="{}" text-anchor="middle">{:.1} s</text>"#,
                h - bottom + 16.0,
                f * t_max
            );
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{:.0}</text>"#,
                left - 6.0,
                ty + 4.0,
                f * n
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">virtual time</text>"#,
            (left + w - right) / 2.0,
            h - 6.0
        );
        // T*.
        let ts = x(self.t_star_s);
        let _ = writeln!(
            s,
            r##"<path d="M{ts:.1} {top} V{}" stroke="#c33" stroke-dasharray="4 3"/><text x="{:.1}" y="{}" fill="#c33">T*</text>"##,
            h - bottom,
            ts + 4.0,
            top + 12.0
        );
        // The completion steps.
        let mut d = format!("M{:.1} {:.1}", x(0.0), y(0.0));
        for (k, &t) in done.iter().enumerate() {
            let _ = write!(d, " H{:.1} V{:.1}", x(t), y((k + 1) as f64));
        }
        let _ = writeln!(
            s,
            r##"<path d="{d}" stroke="#36c" stroke-width="2" fill="none"/>"##
        );
        s.push_str("</svg>\n");
        s
    }
}
