//! The registry check, pure: the views of every live bootstrap against what the harness knows.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use anyhow::{Result, bail};
pub(super) use swarmcast_bootstrap::listing::ListedEntry as Entry;
use swarmcast_proto::{Role, Status};

/// (name, node id, incarnation) of every node entry of one bootstrap.
type RegistrySet = BTreeSet<(String, String, u64)>;

/// Ok if every bootstrap lists each node once, only nodes the harness started (by name and id),
/// every live node alive, no killed node alive, and all of them the same (node id, incarnation)
/// set. `ids`: name -> hex id of every node started; `killed`: killed and not restarted.
pub(super) fn check_views(
    views: &[(SocketAddr, Vec<Entry>)],
    ids: &BTreeMap<String, String>,
    live: &[String],
    killed: &[String],
) -> Result<()> {
    if views.is_empty() {
        bail!("no bootstrap is alive to ask");
    }
    let mut first: Option<(SocketAddr, RegistrySet)> = None;
    for (b, view) in views {
        let nodes: Vec<&Entry> = view.iter().filter(|e| e.role == Role::Node).collect();
        let mut seen = BTreeSet::new();
        for e in &nodes {
            if !seen.insert(e.name.as_str()) {
                bail!("{b} lists {} twice", e.name);
            }
            if ids.get(&e.name) != Some(&e.id) {
                bail!("{b} lists a ghost {} ({})", e.name, e.id);
            }
        }
        let alive = |n: &str| {
            nodes
                .iter()
                .any(|e| e.name == n && e.status == Status::Alive)
        };
        if let Some(n) = live.iter().find(|n| !alive(n)) {
            bail!("{b} does not list live {n} alive");
        }
        if let Some(n) = killed.iter().find(|n| alive(n)) {
            bail!("{b} still lists killed {n} alive");
        }
        let set: RegistrySet = nodes
            .iter()
            .map(|e| (e.name.clone(), e.id.clone(), e.incarnation))
            .collect();
        match &first {
            None => first = Some((*b, set)),
            Some((a, s)) if *s != set => bail!("{a} and {b} disagree: {s:?} vs {set:?}"),
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, id: &str, inc: u64, status: &str) -> Entry {
        Entry {
            id: id.into(),
            name: name.into(),
            role: Role::Node,
            addrs: Vec::new(),
            incarnation: inc,
            heartbeat: 1,
            status: match status {
                "alive" => Status::Alive,
                "suspect" => Status::Suspect,
                _ => Status::Dead,
            },
            age_ms: 0,
            progress: Vec::new(),
            pull: false,
            groups: Vec::new(),
        }
    }

    fn ids() -> BTreeMap<String, String> {
        [("n1", "aa"), ("n2", "bb"), ("n3", "cc")]
            .into_iter()
            .map(|(n, i)| (n.to_owned(), i.to_owned()))
            .collect()
    }

    #[track_caller]
    fn err(views: &[(SocketAddr, Vec<Entry>)], live: &[&str], killed: &[&str]) -> String {
        let live: Vec<String> = live.iter().map(|s| s.to_string()).collect();
        let killed: Vec<String> = killed.iter().map(|s| s.to_string()).collect();
        match check_views(views, &ids(), &live, &killed) {
            Ok(()) => panic!("accepted {views:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn agreeing_views_pass_and_every_defect_is_named() {
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:1".parse().expect("addr"),
            "127.0.0.1:2".parse().expect("addr"),
        );
        let good = vec![
            e("n1", "aa", 1, "alive"),
            e("n2", "bb", 1, "alive"),
            e("n3", "cc", 1, "dead"),
        ];
        let live = vec!["n1".to_owned(), "n2".to_owned()];
        check_views(
            &[(a, good.clone()), (b, good.clone())],
            &ids(),
            &live,
            &["n3".into()],
        )
        .expect("agreeing views pass");

        let mut dup = good.clone();
        dup.push(e("n2", "bb", 2, "alive"));
        assert!(err(&[(a, dup)], &["n1"], &[]).contains("twice"));
        let mut ghost = good.clone();
        ghost.push(e("n9", "ff", 1, "alive"));
        assert!(err(&[(a, ghost)], &["n1"], &[]).contains("ghost n9"));
        let wrong_id = vec![e("n1", "zz", 1, "alive")];
        assert!(err(&[(a, wrong_id)], &[], &[]).contains("ghost n1"));
        assert!(err(&[(a, good.clone())], &["n3"], &[]).contains("does not list live n3"));
        assert!(err(&[(a, good.clone())], &[], &["n2"]).contains("killed n2"));
        let mut newer = good.clone();
        newer[0].incarnation = 2;
        assert!(err(&[(a, good.clone()), (b, newer)], &[], &[]).contains("disagree"));
        assert!(err(&[], &[], &[]).contains("no bootstrap"));
    }
}
