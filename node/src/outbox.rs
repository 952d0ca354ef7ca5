//! What waits to go out on one neighbour's control stream, written by the data plane and the
//! neighbour actor and drained by the link's writer task.
//!
//! Nothing here is dropped for want of room. `Have`s and `HaveUpdate`s are *merged*: per
//! broadcast the outbox keeps one pending full bitfield or one pending set of updated chunks
//! (a bitfield too), so that a link whose writer is held up (a full QUIC window) gets, once it
//! can write again, one message per broadcast that says everything the ones it missed would have
//! said. Pings and pongs are queued in order, a few at most: one that finds its queue full is
//! refused ([`Full`]), and the caller tells the neighbour core that the link is congested.
//!
//! The writer takes everything at once ([`Outbox::take`]): pongs first, then pings, then the
//! advertisements, each broadcast's full `Have` before its updates.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use swarmcast_proto::{BroadcastId, ChunkIndex, Have, HaveUpdate, Message, Ping};
use tokio::sync::Notify;

use crate::bitfield::Bitfield;
use crate::sync::lock;

/// Pings (and, apart, pongs) that may wait at once; more means the link is congested.
pub(crate) const MAX_QUEUED: usize = 16;

/// Chunks per `HaveUpdate` frame the writer makes (a chunk index takes at most 5 bytes: well
/// below the frame limit).
pub(crate) const MAX_UPDATE_CHUNKS: usize = 1 << 16;

/// A ping or pong the outbox had no room for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the control stream's queue is full")]
pub(crate) struct Full;

/// An advertisement the outbox cannot take: not a `Have` or `HaveUpdate`, or one whose bits do
/// not fit the broadcast's chunk count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an advertisement the outbox can merge: {0}")]
pub(crate) struct NotAdvert(&'static str);

/// A full `Have` waiting: its bits (later updates merged in) and what it says of the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FullHave {
    bits: Bitfield,
    from_origin: bool,
    seq: u64,
}

/// What one broadcast has waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    /// A full `Have` (later updates merged into it).
    full: Option<FullHave>,
    /// Chunks for a `HaveUpdate` (empty when `full` says it all).
    update: Bitfield,
}

#[derive(Debug, Default)]
struct State {
    pongs: VecDeque<u64>,
    pings: VecDeque<u64>,
    adverts: BTreeMap<BroadcastId, Pending>,
}

/// One link's outgoing control messages. See the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    ready: Notify,
}

impl Outbox {
    /// Queue a ping; [`Full`] if [`MAX_QUEUED`] already wait.
    pub(crate) fn ping(&self, nonce: u64) -> Result<(), Full> {
        self.queue(|s| &mut s.pings, nonce)
    }

    /// Queue the answer to a ping; [`Full`] if [`MAX_QUEUED`] already wait.
    pub(crate) fn pong(&self, nonce: u64) -> Result<(), Full> {
        self.queue(|s| &mut s.pongs, nonce)
    }

    fn queue(
        &self,
        which: impl Fn(&mut State) -> &mut VecDeque<u64>,
        nonce: u64,
    ) -> Result<(), Full> {
        {
            let mut s = lock(&self.state);
            let q = which(&mut s);
            if q.len() >= MAX_QUEUED {
                return Err(Full);
            }
            q.push_back(nonce);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Merge an advertisement of a broadcast of `chunks` chunks: a full `Have` replaces what
    /// waits for it (keeping the chunks of updates not yet sent), a `HaveUpdate` adds its
    /// chunks to what waits.
    pub(crate) fn advertise(&self, msg: &Message, chunks: u32) -> Result<(), NotAdvert> {
        {
            let mut s = lock(&self.state);
            match msg {
                Message::Have(h) => {
                    if h.chunks != chunks {
                        return Err(NotAdvert("a have of another chunk count"));
                    }
                    let mut bits = Bitfield::from_bytes(h.chunks, &h.bits)
                        .map_err(|_| NotAdvert("a malformed have"))?;
                    let p = pending(&mut s, h.broadcast, chunks);
                    for c in p.update.iter_ones() {
                        bits.set(c);
                    }
                    if let Some(old) = &p.full {
                        for c in old.bits.iter_ones() {
                            bits.set(c);
                        }
                    }
                    // The newest says who the sender is and which version it knows.
                    p.full = Some(FullHave {
                        bits,
                        from_origin: h.from_origin,
                        seq: h.seq,
                    });
                    p.update = Bitfield::new(chunks);
                }
                Message::HaveUpdate(u) => {
                    if u.chunks.iter().any(|c| c.0 >= chunks) {
                        return Err(NotAdvert("an update past the chunk count"));
                    }
                    let p = pending(&mut s, u.broadcast, chunks);
                    let into = match p.full.as_mut() {
                        Some(f) => &mut f.bits,
                        None => &mut p.update,
                    };
                    for c in &u.chunks {
                        into.set(c.0);
                    }
                }
                _ => return Err(NotAdvert("neither a have nor a have-update")),
            }
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Everything waiting, in the order to write it; empty if nothing waits.
    pub(crate) fn take(&self) -> Vec<Message> {
        let s = std::mem::take(&mut *lock(&self.state));
        let mut out: Vec<Message> = s
            .pongs
            .into_iter()
            .map(|nonce| Message::Pong(Ping { nonce }))
            .collect();
        out.extend(
            s.pings
                .into_iter()
                .map(|nonce| Message::Ping(Ping { nonce })),
        );
        for (broadcast, p) in s.adverts {
            if let Some(full) = p.full {
                out.push(Message::Have(Have {
                    broadcast,
                    chunks: full.bits.len(),
                    bits: full.bits.as_bytes().to_vec(),
                    from_origin: full.from_origin,
                    seq: full.seq,
                    audience: None,
                }));
            }
            let chunks: Vec<ChunkIndex> = p.update.iter_ones().map(ChunkIndex).collect();
            for part in chunks.chunks(MAX_UPDATE_CHUNKS) {
                out.push(Message::HaveUpdate(HaveUpdate {
                    broadcast,
                    chunks: part.to_vec(),
                }));
            }
        }
        out
    }

    /// Wait until something is queued, then take it all ([`take`](Self::take)).
    pub(crate) async fn next(&self) -> Vec<Message> {
        loop {
            // Registered before looking, so that a push between the look and the wait is not
            // missed.
            let ready = self.ready.notified();
            let batch = self.take();
            if !batch.is_empty() {
                return batch;
            }
            ready.await;
        }
    }
}

fn pending(s: &mut State, id: BroadcastId, chunks: u32) -> &mut Pending {
    s.adverts.entry(id).or_insert_with(|| Pending {
        full: None,
        update: Bitfield::new(chunks),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::*;

    fn have(id: BroadcastId, chunks: u32, held: impl IntoIterator<Item = u32>) -> Message {
        let mut bits = Bitfield::new(chunks);
        for c in held {
            bits.set(c);
        }
        Message::Have(Have {
            broadcast: id,
            chunks,
            bits: bits.as_bytes().to_vec(),
            from_origin: false,
            seq: 0,
            audience: None,
        })
    }

    fn update(id: BroadcastId, chunks: impl IntoIterator<Item = u32>) -> Message {
        Message::HaveUpdate(HaveUpdate {
            broadcast: id,
            chunks: chunks.into_iter().map(ChunkIndex).collect(),
        })
    }

    /// What the messages say each broadcast's peer can now ask for.
    fn advertised(msgs: &[Message]) -> BTreeMap<BroadcastId, BTreeSet<u32>> {
        let mut out: BTreeMap<BroadcastId, BTreeSet<u32>> = BTreeMap::new();
        for m in msgs {
            match m {
                Message::Have(h) => {
                    let bits = Bitfield::from_bytes(h.chunks, &h.bits).expect("bits");
                    out.entry(h.broadcast).or_default().extend(bits.iter_ones());
                }
                Message::HaveUpdate(u) => {
                    out.entry(u.broadcast)
                        .or_default()
                        .extend(u.chunks.iter().map(|c| c.0));
                }
                _ => {}
            }
        }
        out
    }

    /// A writer that cannot write for a while loses nothing: 20 000 updates (far more than the
    /// 1 024 messages the old per-link channel held, whose overflow was dropped) come out as one
    /// message per broadcast that says all of them.
    #[test]
    fn advertisements_pile_up_merged_while_the_writer_is_held_up() {
        let (a, b) = (BroadcastId([1; 32]), BroadcastId([2; 32]));
        let total = 40_000;
        let outbox = Outbox::default();
        outbox.advertise(&have(a, total, []), total).expect("have");
        for c in 0..20_000 {
            let (id, chunk) = if c % 2 == 0 { (a, c) } else { (b, c * 2) };
            outbox
                .advertise(&update(id, [chunk]), total)
                .expect("update");
        }
        let msgs = outbox.take();
        assert!(msgs.len() <= 3, "{} messages", msgs.len());
        let got = advertised(&msgs);
        assert_eq!(got[&a], (0..20_000).step_by(2).collect::<BTreeSet<u32>>());
        assert_eq!(
            got[&b],
            (1..20_000)
                .step_by(2)
                .map(|c| c * 2)
                .collect::<BTreeSet<u32>>()
        );
        // `a` had a full have waiting: the updates went into it, no separate update.
        assert!(matches!(&msgs[0], Message::Have(h) if h.broadcast == a));
        assert!(outbox.take().is_empty(), "taken once");
    }

    #[test]
    fn a_full_have_keeps_updates_not_yet_sent_and_long_updates_are_split() {
        let id = BroadcastId([3; 32]);
        let total = 3 * MAX_UPDATE_CHUNKS as u32;
        let outbox = Outbox::default();
        outbox
            .advertise(&update(id, [7, 9]), total)
            .expect("update");
        outbox
            .advertise(&have(id, total, [1]), total)
            .expect("have");
        let got = advertised(&outbox.take());
        assert_eq!(got[&id], BTreeSet::from([1, 7, 9]));
        outbox
            .advertise(&update(id, 0..total), total)
            .expect("update");
        let msgs = outbox.take();
        assert_eq!(msgs.len(), 3, "split at {MAX_UPDATE_CHUNKS} chunks");
        assert_eq!(advertised(&msgs)[&id].len(), total as usize);
        // The newest full have says who the sender is and which version it knows.
        let origin_have = Message::Have(Have {
            broadcast: id,
            chunks: total,
            bits: Bitfield::new(total).as_bytes().to_vec(),
            from_origin: true,
            seq: 3,
            audience: None,
        });
        outbox.advertise(&origin_have, total).expect("have");
        outbox.advertise(&update(id, [5]), total).expect("update");
        match outbox.take().as_slice() {
            [Message::Have(h)] => {
                assert!(h.from_origin && h.seq == 3, "{h:?}");
                let bits = Bitfield::from_bytes(total, &h.bits).expect("bits");
                assert_eq!(bits.iter_ones().collect::<Vec<_>>(), [5]);
            }
            other => panic!("{other:?}"),
        }
        // What does not fit is refused, not truncated.
        assert!(outbox.advertise(&update(id, [total]), total).is_err());
        assert!(outbox.advertise(&have(id, total - 1, []), total).is_err());
        assert!(
            outbox
                .advertise(&Message::Ping(Ping { nonce: 1 }), total)
                .is_err()
        );
    }

    #[test]
    fn pings_and_pongs_queue_in_order_up_to_a_bound_and_go_first() {
        let id = BroadcastId([4; 32]);
        let outbox = Outbox::default();
        outbox.advertise(&update(id, [0]), 8).expect("update");
        for n in 0..MAX_QUEUED as u64 {
            outbox.ping(n).expect("room");
            outbox.pong(100 + n).expect("room");
        }
        assert_eq!(outbox.ping(99), Err(Full));
        assert_eq!(outbox.pong(199), Err(Full));
        let msgs = outbox.take();
        let pongs: Vec<u64> = (100..100 + MAX_QUEUED as u64).collect();
        let pings: Vec<u64> = (0..MAX_QUEUED as u64).collect();
        let (first, rest) = msgs.split_at(MAX_QUEUED);
        assert!(
            first
                .iter()
                .zip(&pongs)
                .all(|(m, n)| *m == Message::Pong(Ping { nonce: *n }))
        );
        let (middle, last) = rest.split_at(MAX_QUEUED);
        assert!(
            middle
                .iter()
                .zip(&pings)
                .all(|(m, n)| *m == Message::Ping(Ping { nonce: *n }))
        );
        assert_eq!(last, [update(id, [0])]);
        // Room again once taken.
        outbox.ping(5).expect("room");
    }

    #[tokio::test]
    async fn the_writer_wakes_for_what_arrives_while_it_waits() {
        let outbox = std::sync::Arc::new(Outbox::default());
        let waiter = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.next().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        outbox.ping(3).expect("room");
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(got, [Message::Ping(Ping { nonce: 3 })]);
    }
}
