//! Random, RTT-weighted choice of candidates.

use std::time::Duration;

use rand::Rng;
use swarmcast_proto::NodeId;

/// Added to every RTT before weighting, so that sub-millisecond jitter between LAN peers does
/// not turn into large preferences: 1 ms against 2 ms weighs 6:7, not 2:1.
const RTT_FLOOR: Duration = Duration::from_millis(5);

/// The weight of a candidate with smoothed RTT `rtt`: inversely proportional to `rtt + 5 ms`.
fn rtt_weight(rtt: Duration) -> f64 {
    1.0 / (rtt + RTT_FLOOR).as_secs_f64()
}

/// Picks up to `n` distinct ids from `candidates` at random, favouring low RTT.
///
/// `candidates` is `(id, smoothed RTT if known)` in a fixed order (the core passes them sorted
/// by id), so that a seeded `rng` gives the same choice every time. A candidate never measured
/// is weighed as if it had the median RTT of those measured, so it is neither favoured nor
/// shunned; if none were measured, the choice is uniform.
///
/// Weighted sampling without replacement by Efraimidis and Spirakis (A-Res): each candidate
/// draws `u` uniform in (0, 1] and gets the key `ln(u) / weight`; the `n` largest keys win.
/// This picks exactly as drawing one at a time with probability proportional to weight would.
pub(super) fn pick<R: Rng>(
    rng: &mut R,
    candidates: &[(NodeId, Option<Duration>)],
    n: usize,
) -> Vec<NodeId> {
    if n == 0 || candidates.is_empty() {
        return Vec::new();
    }
    let unknown = median_rtt(candidates).map_or(1.0, rtt_weight);
    let mut keyed: Vec<(f64, NodeId)> = candidates
        .iter()
        .map(|&(id, rtt)| {
            let weight = rtt.map_or(unknown, rtt_weight);
            // random::<f64>() is in [0, 1); 1 - it is in (0, 1], so ln is finite.
            let u = 1.0 - rng.random::<f64>();
            (u.ln() / weight, id)
        })
        .collect();
    // Largest key first; equal keys keep the candidates' order (sort_by is stable).
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
    keyed.into_iter().take(n).map(|(_, id)| id).collect()
}

/// The median of the known RTTs, if any.
fn median_rtt(candidates: &[(NodeId, Option<Duration>)]) -> Option<Duration> {
    let mut known: Vec<Duration> = candidates.iter().filter_map(|&(_, rtt)| rtt).collect();
    if known.is_empty() {
        return None;
    }
    known.sort_unstable();
    Some(known[known.len() / 2])
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId([n; 32])
    }

    #[test]
    fn picks_distinct_ids_up_to_n() {
        let mut rng = StdRng::seed_from_u64(1);
        let cands: Vec<_> = (0..10).map(|n| (id(n), None)).collect();
        let mut got = pick(&mut rng, &cands, 4);
        assert_eq!(got.len(), 4);
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 4);
        assert_eq!(pick(&mut rng, &cands, 20).len(), 10);
        assert!(pick(&mut rng, &cands, 0).is_empty());
        assert!(pick(&mut rng, &[], 3).is_empty());
    }

    #[test]
    fn low_rtt_is_favoured_but_not_exclusive() {
        // One near peer at 1 ms among nine far ones at 95 ms: weight ratio 100:6.
        let mut cands: Vec<_> = (1..10)
            .map(|n| (id(n), Some(Duration::from_millis(95))))
            .collect();
        cands.push((id(0), Some(Duration::from_millis(1))));
        let mut rng = StdRng::seed_from_u64(7);
        let trials = 2000;
        let near = (0..trials)
            .filter(|_| pick(&mut rng, &cands, 1) == [id(0)])
            .count();
        // Expected share 100 / (100 + 9 * 6) = 0.65; uniform would be 0.1.
        assert!(
            (1100..1500).contains(&near),
            "near picked {near} of {trials}"
        );
    }

    #[test]
    fn unknown_rtt_weighs_as_the_median() {
        // Half measured at 5 ms, half unknown: the unknown ones weigh as 5 ms, so about half of
        // the picks are unknown.
        let cands: Vec<_> = (0..10)
            .map(|n| (id(n), (n % 2 == 0).then_some(Duration::from_millis(5))))
            .collect();
        let mut rng = StdRng::seed_from_u64(3);
        let unknown = (0..2000)
            .filter(|_| pick(&mut rng, &cands, 1)[0].0[0] % 2 == 1)
            .count();
        assert!((850..1150).contains(&unknown), "unknown picked {unknown}");
    }
}
