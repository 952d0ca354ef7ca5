//! Restricted broadcasts (`node send --to NAME|group:G`): who may receive one, decided here
//! for every use of the rule at this node, from certificates only.
//!
//! A restricted broadcast's audience is in its manifest (so its id binds it) and copied into
//! its registry record and into `Have`s, for nodes that have not got the manifest. The
//! decisions:
//! * **Serving** ([`serve_verdict`]): a node holding the broadcast (its origin or any
//!   receiver) serves its manifest and chunks only to a peer whose certificate's name or
//!   groups the manifest's audience admits; anyone else is refused with
//!   [`ErrorCode::Forbidden`](swarmcast_proto::ErrorCode::Forbidden). The serving shell
//!   asks this function with the audience the core handed it in
//!   [`BroadcastAction::Serve`](super::BroadcastAction::Serve) and the peer's certificate.
//! * **Receiving** ([`Broadcasts::may_receive`]): a node outside the audience (by its own
//!   certificate) never fetches the manifest, never creates a workspace and so holds,
//!   serves and relays nothing of it; it does not count it among its name's versions either
//!   (a restricted newer version does not supersede what it may receive). The audience it
//!   goes by is the registry record's (the bootstraps took it from the origin's certificate)
//!   or, before the record, the one the announcing `Have` gave. A manifest that arrives
//!   anyway and names an audience without this node is dropped before any workspace.
//! * **Asking** (`node fetch`): refused with [`TargetError::NotInAudience`].
//! * **Waiting** (`node send --wait`): [`crate::status::takes_part`], from the registry.

use swarmcast_proto::{Audience, BroadcastId, BroadcastRecord};

use super::{Broadcasts, TargetError};

/// Why a peer is refused a restricted broadcast.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{peer:?} is not in the audience of this broadcast ({audience})")]
pub struct NotInAudience {
    /// The peer's certificate name.
    pub peer: String,
    /// Who may receive it.
    pub audience: Audience,
}

/// Whether a peer with certificate name `name` and certificate groups `groups` may be served
/// a broadcast whose manifest says `audience` (`None`: anyone).
pub fn serve_verdict(
    audience: Option<&Audience>,
    name: &str,
    groups: &[String],
) -> Result<(), NotInAudience> {
    match audience {
        Some(a) if !a.admits(name, groups) => Err(NotInAudience {
            peer: name.to_owned(),
            audience: a.clone(),
        }),
        _ => Ok(()),
    }
}

impl Broadcasts {
    /// Whether this node (by its certificate's name and groups) is in `audience`.
    pub(super) fn admits_me(&self, audience: Option<&Audience>) -> bool {
        audience.is_none_or(|a| a.admits(&self.config.cert_name, &self.config.cert_groups))
    }

    /// Whether this node may receive what `record` describes: its origin, or in its audience.
    pub(super) fn may_receive_record(&self, r: &BroadcastRecord) -> bool {
        r.origin == self.me || self.admits_me(r.audience.as_ref())
    }

    /// Whether this node may receive `id`, as far as it knows: held here (it had the
    /// manifest, which it checked), else by the registry's record, else by the audience an
    /// announcement gave (none known: yes).
    pub fn may_receive(&self, id: BroadcastId) -> bool {
        if self.broadcasts.contains_key(&id) {
            return true;
        }
        if let Some(r) = self.records.get(&id) {
            return self.may_receive_record(r);
        }
        let claimed = self
            .unknown
            .get(&id)
            .and_then(|u| u.claimed_audience.as_ref());
        self.admits_me(claimed)
    }

    /// The refusal of `node fetch` for `id` named by `target`, when this node is outside its
    /// audience.
    pub(super) fn fetch_refusal(&self, target: &str, id: BroadcastId) -> Option<TargetError> {
        if self.may_receive(id) {
            return None;
        }
        let audience = (self.records.get(&id))
            .and_then(|r| r.audience.clone())
            .or_else(|| {
                self.unknown
                    .get(&id)
                    .and_then(|u| u.claimed_audience.clone())
            })
            .unwrap_or_default();
        Some(TargetError::NotInAudience {
            target: target.to_owned(),
            audience: audience.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use swarmcast_proto::{Have, Message};

    use super::super::tests::{
        ME, ORIGIN, actions, fetch_of, have, node, origin_entry, version_manifest, version_record,
    };
    use super::super::{BroadcastAction, BroadcastConfig, ManifestSource};
    use super::*;
    use crate::bitfield::Bitfield;
    use crate::manifest::{Layout, Manifest};

    /// This node: certificate `me`, group `cpu`.
    fn core() -> Broadcasts {
        let config = BroadcastConfig {
            cert_name: "me".into(),
            cert_groups: vec!["cpu".into()],
            ..BroadcastConfig::default()
        };
        Broadcasts::new(config, node(ME), 7)
    }

    fn restricted(names: &[&str], groups: &[&str]) -> Audience {
        Audience {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
        .canonical()
    }

    /// A restricted version: its manifest (audience inside, so the id binds it) and record.
    fn version(audience: &Audience) -> (Arc<Manifest>, Arc<Layout>, BroadcastId, BroadcastRecord) {
        let (m, _, _) = version_manifest("ds", 2, 1);
        let mut m = (*m).clone();
        m.audience = Some(audience.clone());
        let id = crate::manifest::manifest_id(&m.to_bytes());
        let layout = Arc::new(Layout::new(&m));
        let mut r = version_record(id, "ds", 2, 1);
        r.audience = Some(audience.clone());
        (Arc::new(m), layout, id, r)
    }

    fn have_for(id: BroadcastId, audience: Option<&Audience>) -> Message {
        let Message::Have(h) = have(id, 2, &[0, 1]) else {
            unreachable!()
        };
        Message::Have(Have {
            audience: audience.cloned(),
            ..h
        })
    }

    /// Nothing of `id` is tracked, listed or being fetched here.
    #[track_caller]
    fn assert_untracked(c: &mut Broadcasts, id: BroadcastId) {
        assert!(!c.unknown.contains_key(&id), "tracked as unknown");
        assert!(!c.haves.contains_key(&id), "peers' haves kept");
        assert!(!c.asked.contains(&id), "asked for");
        assert!(c.list().is_empty());
        let a = actions(c);
        assert!(fetch_of(&a).is_empty(), "{a:?}");
    }

    /// No workspace is asked for.
    #[track_caller]
    fn assert_no_workspace(c: &mut Broadcasts) {
        let a = actions(c);
        assert!(
            !a.iter()
                .any(|a| matches!(a, BroadcastAction::CreateWorkspace { .. })),
            "{a:?}"
        );
    }

    /// The Have gate, alone: an announcement whose audience excludes this node (no record
    /// yet) is not tracked, and its manifest is not fetched, however long one waits.
    #[test]
    fn an_announcement_for_others_is_not_tracked() {
        let now = Instant::now();
        let mut c = core();
        let (_, _, id, _) = version(&restricted(&["n3"], &["gpu"]));
        c.handle_peer_up(now, node(5));
        c.handle_peer_message(
            now,
            node(5),
            have_for(id, Some(&restricted(&["n3"], &["gpu"]))),
        );
        assert_untracked(&mut c, id);
        c.handle_timeout(now + Duration::from_secs(5));
        assert_untracked(&mut c, id);
    }

    /// The record gate, alone: a neighbour's announcement said nothing of an audience, so
    /// this node tracks the broadcast and asks for its manifest; the registry's record then
    /// says it is for others, and everything the announcement made this node keep is dropped
    /// (no retry of the manifest, no peers' haves).
    #[test]
    fn a_record_for_others_drops_what_an_announcement_made_this_node_track() {
        let now = Instant::now();
        let mut c = core();
        let (_, _, id, r) = version(&restricted(&["n3"], &["gpu"]));
        c.handle_peer_up(now, node(5));
        c.handle_peer_message(now, node(5), have_for(id, None));
        assert_eq!(
            fetch_of(&actions(&mut c)),
            vec![ManifestSource::Peer(node(5))]
        );
        assert!(c.unknown.contains_key(&id) && c.haves.contains_key(&id));
        c.handle_registry(now, vec![origin_entry()], vec![r]);
        assert!(!c.may_receive(id));
        assert_untracked(&mut c, id);
        c.handle_timeout(now + Duration::from_secs(5));
        assert_untracked(&mut c, id);
    }

    /// The fetch gate, alone: `node fetch` of a broadcast restricted to others (by name or by
    /// id) is refused saying so, and asks for nothing.
    #[test]
    fn node_fetch_of_a_broadcast_for_others_is_refused() {
        let now = Instant::now();
        let mut c = core();
        let (_, _, id, r) = version(&restricted(&["n3"], &["gpu"]));
        c.handle_registry(now, vec![origin_entry()], vec![r]);
        assert_untracked(&mut c, id);
        for target in ["ds", &id.to_hex()[..8]] {
            match c.fetch(now, target) {
                Err(TargetError::NotInAudience { audience, .. }) => {
                    assert_eq!(audience, "n3, group:gpu");
                }
                other => panic!("{target}: {other:?}"),
            }
            assert_untracked(&mut c, id);
        }
    }

    /// A manifest that arrives anyway (whoever served it should not have) makes no workspace.
    #[test]
    fn a_manifest_for_others_after_a_record_makes_no_workspace() {
        let now = Instant::now();
        let mut c = core();
        let (m, _, id, r) = version(&restricted(&["n3"], &["gpu"]));
        c.handle_registry(now, vec![origin_entry()], vec![r]);
        c.handle_manifest_fetched(now, id, Ok(m.to_bytes()));
        assert_no_workspace(&mut c);
    }

    /// A manifest whose audience excludes this node is dropped even when no record or
    /// announcement said so (an unrestricted-looking `Have`).
    #[test]
    fn a_manifest_for_others_makes_no_workspace() {
        let now = Instant::now();
        let mut c = core();
        let (m, _, id, _) = version(&restricted(&["n3"], &[]));
        c.handle_peer_up(now, node(5));
        c.handle_peer_message(now, node(5), have_for(id, None));
        assert_eq!(
            fetch_of(&actions(&mut c)),
            vec![ManifestSource::Peer(node(5))]
        );
        c.handle_manifest_fetched(now, id, Ok(m.to_bytes()));
        assert_no_workspace(&mut c);
        c.handle_peer_message(now, node(6), have_for(id, None));
        assert!(fetch_of(&actions(&mut c)).is_empty(), "fetched again");
    }

    /// In the audience by name or by a group of its certificate: fetched as any broadcast,
    /// and served with the audience, so that the serving side refuses everyone else.
    #[test]
    fn a_node_in_the_audience_receives_and_serves_with_the_audience() {
        let now = Instant::now();
        for audience in [restricted(&["me"], &[]), restricted(&["n3"], &["cpu"])] {
            let mut c = core();
            let (m, layout, id, r) = version(&audience);
            c.handle_registry(now, vec![origin_entry()], vec![r]);
            let a = actions(&mut c);
            assert_eq!(fetch_of(&a).len(), 1, "{a:?}");
            c.handle_manifest_fetched(now, id, Ok(m.to_bytes()));
            let a = actions(&mut c);
            assert!(
                a.iter()
                    .any(|a| matches!(a, BroadcastAction::CreateWorkspace { .. })),
                "{a:?}"
            );
            c.add_receiver(now, id, m, layout, Bitfield::new(2), false, None);
            let a = actions(&mut c);
            assert!(
                a.contains(&BroadcastAction::Serve {
                    id,
                    super_seed: false,
                    audience: Some(audience.clone()),
                    priority: swarmcast_proto::Priority::Normal,
                }),
                "{a:?}"
            );
            // Its own Have tells neighbours whom the broadcast is for.
            let flooded = a.iter().any(|a| {
                matches!(a, BroadcastAction::Flood { msg: Message::Have(h) }
                    if h.audience.as_ref() == Some(&audience))
            });
            assert!(flooded, "{a:?}");
        }
    }

    /// The origin is in every audience of its own broadcasts; its record and `Have` carry the
    /// audience, and it serves with it.
    #[test]
    fn the_origin_announces_and_serves_with_the_audience() {
        let now = Instant::now();
        let audience = restricted(&["n3"], &[]);
        let mut c = core();
        let (m, layout, id, _) = version(&audience);
        c.add_origin(now, id, m, layout, "/src/ds".into(), None, 0);
        let a = actions(&mut c);
        assert!(
            a.iter().any(
                |a| matches!(a, BroadcastAction::Serve { audience: Some(x), .. } if *x == audience)
            ),
            "{a:?}"
        );
        let report = c.report();
        let record = report.records.first().unwrap();
        assert_eq!(record.audience.as_ref(), Some(&audience));
        assert_eq!(record.origin, node(ME));
        assert_ne!(node(ME), node(ORIGIN));
    }

    #[test]
    fn a_peer_is_served_when_named_or_in_a_group_and_anyone_without_an_audience() {
        let a = Audience {
            names: vec!["n3".into()],
            groups: vec!["gpu".into()],
        };
        assert_eq!(serve_verdict(None, "x", &[]), Ok(()));
        assert_eq!(serve_verdict(Some(&a), "n3", &[]), Ok(()));
        assert_eq!(serve_verdict(Some(&a), "n4", &["gpu".into()]), Ok(()));
        let refused = serve_verdict(Some(&a), "n4", &["cpu".into()]).unwrap_err();
        assert_eq!(refused.peer, "n4");
        assert!(refused.to_string().contains("n3, group:gpu"), "{refused}");
        // A group is not a name, nor a name a group.
        assert!(serve_verdict(Some(&a), "gpu", &[]).is_err());
        assert!(serve_verdict(Some(&a), "n4", &["n3".into()]).is_err());
    }
}
