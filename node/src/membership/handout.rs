//! When a heartbeat's registry view is handed on to the status board, the data plane and the
//! neighbours. Handing it on copies every node's entry and every broadcast record, and the data
//! plane then looks each record up: O(history) per beat, the bulk of an idle node's CPU once it
//! keeps thousands of broadcasts. So it is handed on when the copy changed, and otherwise only
//! every [`FULL_EVERY`] beats (ages on the status board, and unknown broadcasts' mentions in the
//! data plane, whose expiry is a minute). Pure: the shell asks after each answered beat.

/// Beats between two hand-outs when nothing changed.
pub(crate) const FULL_EVERY: u32 = 10;

/// The hand-out schedule.
#[derive(Debug, Default)]
pub(crate) struct Handout {
    handed_once: bool,
    quiet_beats: u32,
}

impl Handout {
    /// A beat was answered and applied; `changed`: the copy changed. Whether to hand it on.
    pub(crate) fn after_beat(&mut self, changed: bool) -> bool {
        self.quiet_beats = self.quiet_beats.saturating_add(1);
        let due = changed || !self.handed_once || self.quiet_beats >= FULL_EVERY;
        if due {
            self.handed_once = true;
            self.quiet_beats = 0;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handed_on_at_first_on_every_change_and_every_tenth_quiet_beat() {
        let mut h = Handout::default();
        assert!(h.after_beat(false), "the first view, changed or not");
        let quiet: Vec<bool> = (0..FULL_EVERY).map(|_| h.after_beat(false)).collect();
        assert_eq!(quiet.iter().filter(|d| **d).count(), 1);
        assert!(quiet[FULL_EVERY as usize - 1], "the tenth quiet beat");
        assert!(h.after_beat(true), "a change at once");
        assert!(!h.after_beat(false), "and the count starts over");
    }
}
