//! What a scenario run measured: `report.json`, a human summary, and two pictures drawn with
//! `plotters`: each node's progress over time with the faults marked, and the traffic matrix.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;
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
    /// Per node: (ms since the run started, share of the dataset's chunks held) as polled; a
    /// new point only when the share moved or a second passed.
    pub progress: BTreeMap<String, Vec<(u64, f64)>>,
}

/// A node's line split where it was not polled for [`GAP_MS`] (killed or paused meanwhile),
/// so that a down node shows as a gap rather than a straight line across it.
fn segments(points: &[(u64, f64)]) -> Vec<&[(u64, f64)]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..points.len() {
        if points[i].0 > points[i - 1].0 + GAP_MS {
            out.push(&points[start..i]);
            start = i;
        }
    }
    if start < points.len() {
        out.push(&points[start..]);
    }
    out
}

/// A poll gap longer than this breaks a node's progress line (points come at least every
/// second while a node answers).
const GAP_MS: u64 = 1500;

/// A plotting error as an `anyhow` one.
fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a picture: {e:?}")
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

    /// Write `report.json`, `summary.txt`, `traffic.svg` and `progress.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        std::fs::write(dir.join("summary.txt"), self.summary())?;
        std::fs::write(dir.join("traffic.svg"), self.traffic_svg()?)?;
        std::fs::write(dir.join("progress.svg"), self.progress_svg()?)?;
        Ok(())
    }

    /// Every node's sender and receiver, sorted.
    fn traffic_names(&self) -> Vec<&String> {
        let mut names: Vec<&String> = self.traffic.keys().collect();
        for row in self.traffic.values() {
            names.extend(row.keys());
        }
        names.sort();
        names.dedup();
        names
    }

    /// The traffic matrix as a heat map: a row per sender, a column per receiver, each cell
    /// coloured by the bytes sent and labelled in MiB, with a colour legend in MiB.
    pub fn traffic_svg(&self) -> Result<String> {
        let names = self.traffic_names();
        let n = names.len().max(1);
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let max = self
            .traffic
            .values()
            .flat_map(|r| r.values())
            .copied()
            .max()
            .unwrap_or(0);
        let cell = (560 / n).clamp(28, 70) as u32;
        let side = cell * n as u32;
        let (w, h) = (side + 230, side + 150);
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_err)?;
            let title = format!(
                "Traffic: MiB each node (row) sent to each node (column), {} seed {}",
                self.scenario, self.seed
            );
            root.draw(&Text::new(title, (10, 8), ("sans-serif", 15)))
                .map_err(plot_err)?;
            let (x0, y0) = (90i32, 60i32);
            let shade = |b: u64| -> RGBColor {
                let f = if max == 0 { 0.0 } else { b as f64 / max as f64 };
                let mixc =
                    |lo: u8, hi: u8| (f64::from(lo) + (f64::from(hi) - f64::from(lo)) * f) as u8;
                RGBColor(mixc(247, 8), mixc(251, 69), mixc(255, 148))
            };
            let c = cell as i32;
            for (j, to) in names.iter().enumerate() {
                let x = x0 + c * j as i32 + c / 2;
                root.draw(&Text::new(
                    to.to_string(),
                    (x - 3 * to.len() as i32, y0 - 16),
                    ("sans-serif", 12),
                ))
                .map_err(plot_err)?;
            }
            for (i, from) in names.iter().enumerate() {
                let y = y0 + c * i as i32;
                root.draw(&Text::new(
                    from.to_string(),
                    (10, y + c / 2 - 6),
                    ("sans-serif", 12),
                ))
                .map_err(plot_err)?;
                for (j, to) in names.iter().enumerate() {
                    let x = x0 + c * j as i32;
                    let bytes = self.traffic.get(*from).and_then(|r| r.get(*to)).copied();
                    let fill = match (i == j, bytes) {
                        (true, _) => RGBColor(220, 220, 220),
                        (false, b) => shade(b.unwrap_or(0)),
                    };
                    root.draw(&Rectangle::new([(x, y), (x + c, y + c)], fill.filled()))
                        .map_err(plot_err)?;
                    root.draw(&Rectangle::new(
                        [(x, y), (x + c, y + c)],
                        WHITE.stroke_width(1),
                    ))
                    .map_err(plot_err)?;
                    if let (false, Some(b)) = (i == j, bytes.filter(|b| *b > 0)) {
                        let dark = max > 0 && b as f64 / max as f64 > 0.55;
                        let label = format!("{:.1}", mib(b));
                        let style = ("sans-serif", 11).into_font().color(if dark {
                            &WHITE
                        } else {
                            &BLACK
                        });
                        root.draw(&Text::new(
                            label.clone(),
                            (x + c / 2 - 3 * label.len() as i32, y + c / 2 - 6),
                            style,
                        ))
                        .map_err(plot_err)?;
                    }
                }
            }
            root.draw(&Text::new(
                "to (receiver)",
                (x0, y0 - 34),
                ("sans-serif", 12),
            ))
            .map_err(plot_err)?;
            root.draw(&Text::new(
                "from (sender)",
                (10, y0 - 34),
                ("sans-serif", 12),
            ))
            .map_err(plot_err)?;
            // The legend: a bar from 0 to the largest cell, in MiB.
            let lx = x0 + side as i32 + 30;
            let steps = 20;
            let bar = side.max(100) as i32;
            for k in 0..steps {
                let b = max as f64 * f64::from(steps - k) / f64::from(steps);
                let y = y0 + bar * k / steps;
                root.draw(&Rectangle::new(
                    [(lx, y), (lx + 18, y + bar / steps + 1)],
                    shade(b as u64).filled(),
                ))
                .map_err(plot_err)?;
            }
            for (k, label) in [(0, mib(max)), (steps / 2, mib(max) / 2.0), (steps, 0.0)] {
                let y = y0 + bar * k / steps;
                root.draw(&Text::new(
                    format!("{label:.1} MiB"),
                    (lx + 24, y - 6),
                    ("sans-serif", 11),
                ))
                .map_err(plot_err)?;
            }
            let note = format!("grey: a node and itself. {}", self.traffic_note);
            root.draw(&Text::new(
                note,
                (10, y0 + side as i32 + 20),
                ("sans-serif", 11),
            ))
            .map_err(plot_err)?;
            root.present().map_err(plot_err)?;
        }
        Ok(svg)
    }

    /// Every node's share of the dataset held over the run, with the timeline's faults marked
    /// on the same axis (numbered, and listed under the chart): a stall is a flat line with
    /// live neighbours, a slow recovery a late climb after a fault. A killed node's line ends
    /// at the kill; a restarted one starts again from what it resumed; a dot marks completion.
    pub fn progress_svg(&self) -> Result<String> {
        let faults: Vec<&Event> = self.timeline.iter().filter(|e| e.kind == "fault").collect();
        let end_ms = self
            .progress
            .values()
            .flatten()
            .map(|p| p.0)
            .chain(self.timeline.iter().map(|e| e.t_ms))
            .max()
            .unwrap_or(1000)
            .max(1000);
        let x_max = end_ms as f64 / 1000.0 * 1.02;
        let list_h = 18 * faults.len() as u32 + 20;
        let (w, h) = (960u32, 480 + list_h);
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_err)?;
            let (top, bottom) = root.split_vertically(480);
            let caption = format!(
                "Progress of each node, {} seed {} ({:?} mode): {}",
                self.scenario,
                self.seed,
                self.mode,
                if self.passed { "passed" } else { "FAILED" }
            );
            let mut chart = ChartBuilder::on(&top)
                .caption(caption, ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(55)
                .build_cartesian_2d(0f64..x_max, 0f64..110f64)
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc("seconds since the run started")
                .y_desc("% of the dataset held")
                .y_labels(6)
                .draw()
                .map_err(plot_err)?;
            for (k, e) in faults.iter().enumerate() {
                let t = e.t_ms as f64 / 1000.0;
                let red = RGBColor(200, 30, 30);
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(t, 0.0), (t, 103.0)],
                        red.mix(0.5).stroke_width(1),
                    )))
                    .map_err(plot_err)?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!("F{}", k + 1),
                        (t, 109.0),
                        ("sans-serif", 11).into_font().color(&red),
                    )))
                    .map_err(plot_err)?;
            }
            for (i, (node, points)) in self.progress.iter().enumerate() {
                let colour = Palette99::pick(i).to_rgba();
                let at = |&(t, f): &(u64, f64)| (t as f64 / 1000.0, f * 100.0);
                for (k, segment) in segments(points).into_iter().enumerate() {
                    let series = chart
                        .draw_series(LineSeries::new(
                            segment.iter().map(at),
                            colour.stroke_width(2),
                        ))
                        .map_err(plot_err)?;
                    if k == 0 {
                        series.label(node.clone()).legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                        });
                    } else if let Some(p) = segment.first() {
                        // Back after a gap (a kill or a pause): a hollow circle.
                        chart
                            .draw_series(std::iter::once(Circle::new(
                                at(p),
                                5,
                                colour.stroke_width(2),
                            )))
                            .map_err(plot_err)?;
                    }
                }
                if let Some(&(t, _)) = points.iter().find(|p| p.1 >= 1.0) {
                    chart
                        .draw_series(std::iter::once(Circle::new(
                            (t as f64 / 1000.0, 100.0),
                            4,
                            colour.filled(),
                        )))
                        .map_err(plot_err)?;
                }
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(plot_err)?;
            for (k, e) in faults.iter().enumerate() {
                let line = format!("F{}  {:7.2} s  {}", k + 1, e.t_ms as f64 / 1000.0, e.what);
                bottom
                    .draw(&Text::new(
                        line,
                        (60, 4 + 18 * k as i32),
                        ("sans-serif", 12),
                    ))
                    .map_err(plot_err)?;
            }
            root.present().map_err(plot_err)?;
        }
        Ok(svg)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn report() -> Report {
        let mut r = Report {
            scenario: "churn".into(),
            seed: 3,
            passed: true,
            ..Report::default()
        };
        r.timeline.push(Event {
            t_ms: 2_000,
            kind: "fault".into(),
            what: "SIGKILL n2 (pid 9)".into(),
        });
        r.timeline.push(Event {
            t_ms: 4_000,
            kind: "fault".into(),
            what: "restart n2 (with its data)".into(),
        });
        r.progress.insert(
            "n1".into(),
            (0..=10).map(|k| (k * 500, k as f64 / 10.0)).collect(),
        );
        // n2: down from 2 s to 4 s.
        r.progress.insert(
            "n2".into(),
            vec![
                (0, 0.0),
                (1_000, 0.2),
                (1_900, 0.3),
                (4_200, 0.3),
                (5_000, 1.0),
            ],
        );
        r.traffic.insert(
            "n1".into(),
            [("n2".to_owned(), 3 << 20)].into_iter().collect(),
        );
        r.traffic.insert(
            "n2".into(),
            [("n1".to_owned(), 1 << 20)].into_iter().collect(),
        );
        r
    }

    #[test]
    fn a_node_down_for_a_while_is_a_gap_in_its_line() {
        let r = report();
        let s = segments(&r.progress["n2"]);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[1][0], (4_200, 0.3));
        assert_eq!(segments(&r.progress["n1"]).len(), 1);
        assert!(segments(&[]).is_empty());
    }

    #[test]
    fn the_pictures_name_faults_nodes_and_volumes() {
        let r = report();
        let p = r.progress_svg().unwrap();
        assert!(p.starts_with("<svg"), "{}", &p[..80.min(p.len())]);
        for needle in [
            "Progress of each node, churn seed 3",
            "seconds since the run started",
            "F1",
            "SIGKILL n2",
            "restart n2",
            "n1",
            "n2",
        ] {
            assert!(p.contains(needle), "progress.svg lacks {needle:?}");
        }
        let t = r.traffic_svg().unwrap();
        for needle in [
            "3.0",
            "1.0",
            "MiB",
            "to (receiver)",
            "from (sender)",
            "n1",
            "n2",
        ] {
            assert!(t.contains(needle), "traffic.svg lacks {needle:?}");
        }
    }
}
