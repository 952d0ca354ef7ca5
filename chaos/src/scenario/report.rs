//! What a scenario run measured: `report.json`, a human summary, and two hand-written SVGs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

/// A fault or milestone, in milliseconds since the run started.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Milliseconds since start.
    pub t_ms: u64,
    /// `fault`, `milestone` or `check`.
    pub kind: String,
    /// What happened.
    pub what: String,
}

/// The outcome of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// The run seed.
    pub seed: u64,
    /// Process or netns.
    pub mode: super::Mode,
    /// The command that replays this run.
    pub replay: String,
    /// The resolved schedule.
    pub schedule: Vec<String>,
    /// Whether every check passed.
    pub passed: bool,
    /// The failure, if any.
    pub error: Option<String>,
    /// Faults and milestones.
    pub timeline: Vec<Event>,
    /// Bytes of the dataset.
    pub bytes: u64,
    /// Per node: completion time in ms since the send (latest incarnation).
    pub completion_ms: BTreeMap<String, u64>,
    /// `traffic[from][to]` bytes, from each live node's `uploaded_to` right before the end.
    pub traffic: BTreeMap<String, BTreeMap<String, u64>>,
    /// What the traffic matrix cannot show.
    pub traffic_note: String,
    /// Origin upload as a multiple of the dataset (its latest incarnation).
    pub origin_upload: f64,
    /// Per restarted receiver: bytes fetched beyond the dataset across its incarnations.
    pub refetched: BTreeMap<String, u64>,
    /// Per killed or stopped process: ms until the first bootstrap asked listed it dead.
    pub detection_ms: BTreeMap<String, u64>,
}

impl Report {
    /// The human summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let _ = writeln!(
            s,
            "scenario {} seed {} ({:?} mode): {}",
            self.scenario,
            self.seed,
            self.mode,
            if self.passed { "PASSED" } else { "FAILED" }
        );
        if let Some(e) = &self.error {
            let _ = writeln!(s, "  error: {e}");
        }
        let _ = writeln!(s, "  replay: {}", self.replay);
        let _ = writeln!(s, "  dataset {:.1} MiB", mib(self.bytes));
        let _ = writeln!(s, "timeline");
        for e in &self.timeline {
            let _ = writeln!(s, "  {:>8} ms  {:<9} {}", e.t_ms, e.kind, e.what);
        }
        let _ = writeln!(s, "completion since send");
        for (n, t) in &self.completion_ms {
            let _ = writeln!(s, "  {n:<5} {:8.2} s", *t as f64 / 1000.0);
        }
        let _ = writeln!(s, "origin upload {:.2} x the dataset", self.origin_upload);
        for (n, b) in &self.refetched {
            let _ = writeln!(s, "re-fetched by {n}: {:.2} MiB", mib(*b));
        }
        for (n, t) in &self.detection_ms {
            let _ = writeln!(s, "{n} listed dead after {t} ms");
        }
        let _ = writeln!(
            s,
            "traffic (MiB, row sends to column): {}",
            self.traffic_note
        );
        for (from, row) in &self.traffic {
            let cells: Vec<String> = row
                .iter()
                .map(|(to, b)| format!("{to}:{:.1}", mib(*b)))
                .collect();
            let _ = writeln!(s, "  {from:<5} -> {}", cells.join(" "));
        }
        s
    }

    /// Write `report.json`, `summary.txt`, `traffic.svg` and `completion.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        std::fs::write(dir.join("summary.txt"), self.summary())?;
        std::fs::write(dir.join("traffic.svg"), self.traffic_svg())?;
        std::fs::write(dir.join("completion.svg"), self.completion_svg())?;
        Ok(())
    }

    /// Nodes on a circle, an edge per (from, to) with its width by bytes.
    pub fn traffic_svg(&self) -> String {
        let mut names: Vec<&String> = self.traffic.keys().collect();
        for row in self.traffic.values() {
            names.extend(row.keys());
        }
        names.sort();
        names.dedup();
        let (cx, cy, r) = (300.0, 300.0, 230.0);
        let pos = |i: usize| {
            let a = std::f64::consts::TAU * i as f64 / names.len().max(1) as f64;
            (cx + r * a.cos(), cy + r * a.sin())
        };
        let index: BTreeMap<&String, usize> =
            names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let max = self
            .traffic
            .values()
            .flat_map(|r| r.values())
            .copied()
            .max()
            .unwrap_or(1)
            .max(1);
        let mut s = String::from(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"620\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        );
        for (from, row) in &self.traffic {
            for (to, bytes) in row {
                let ((x1, y1), (x2, y2)) = (pos(index[from]), pos(index[to]));
                let w = 0.5 + 12.0 * *bytes as f64 / max as f64;
                let _ = writeln!(
                    s,
                    "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" \
                     stroke=\"steelblue\" stroke-opacity=\"0.5\" stroke-width=\"{w:.2}\">\
                     <title>{from} -&gt; {to}: {bytes} bytes</title></line>"
                );
            }
        }
        for (i, n) in names.iter().enumerate() {
            let (x, y) = pos(i);
            let _ = writeln!(
                s,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"16\" fill=\"orange\"/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"12\">{n}</text>",
                y + 4.0
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"10\" y=\"610\" font-size=\"11\">edge width: bytes sent (max {max}); {}</text>\n</svg>",
            self.traffic_note
        );
        s
    }

    /// One bar per node: completion time since the send.
    pub fn completion_svg(&self) -> String {
        let max = self
            .completion_ms
            .values()
            .copied()
            .max()
            .unwrap_or(1)
            .max(1);
        let h = 30 + 24 * self.completion_ms.len();
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"{h}\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        );
        for (i, (n, t)) in self.completion_ms.iter().enumerate() {
            let y = 10 + 24 * i;
            let w = 480.0 * *t as f64 / max as f64;
            let _ = writeln!(
                s,
                "<text x=\"5\" y=\"{}\" font-size=\"12\">{n}</text>\
                 <rect x=\"60\" y=\"{y}\" width=\"{w:.1}\" height=\"18\" fill=\"seagreen\"/>\
                 <text x=\"{:.1}\" y=\"{}\" font-size=\"12\">{:.2} s</text>",
                y + 13,
                65.0 + w,
                y + 13,
                *t as f64 / 1000.0
            );
        }
        s.push_str("</svg>\n");
        s
    }
}
