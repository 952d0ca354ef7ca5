//! Proptest strategies shared by the integration tests: arbitrary values of every wire type.

#![allow(dead_code)] // Each test crate uses a different subset.

use std::net::{IpAddr, SocketAddr};

use proptest::collection::vec;
use proptest::prelude::*;
use swarmcast_proto::{
    Ack, Announce, BroadcastId, BroadcastRecord, BroadcastState, ChunkHeader, ChunkIndex,
    ChunkRequest, Delta, Digest, EntryUpdate, ErrorCode, ErrorMsg, Frame, Have, HaveUpdate,
    Heartbeat, Limits, Lookup, ManifestHeader, ManifestRequest, Message, NodeId, NodeRecord, Ping,
    Progress, ProgressSpan, Register, Registered, RegistryCursor, RegistryEntry, RegistryView,
    Role, Status, Version, encode, encode_chunk,
};

/// Short collections keep the cases fast (a few strategies go further to cross a msgpack size
/// boundary).
const MAX_ITEMS: usize = 4;

pub fn node_id() -> impl Strategy<Value = NodeId> {
    any::<[u8; 32]>().prop_map(NodeId)
}

pub fn broadcast_id() -> impl Strategy<Value = BroadcastId> {
    any::<[u8; 32]>().prop_map(BroadcastId)
}

/// Any address the wire can carry. IPv6 flow info and scope id are not carried (see the crate
/// docs), so they are always zero here.
pub fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| (IpAddr::from(ip), port).into()),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| (IpAddr::from(ip), port).into()),
    ]
}

pub fn addrs() -> impl Strategy<Value = Vec<SocketAddr>> {
    vec(addr(), 0..MAX_ITEMS)
}

pub fn version() -> impl Strategy<Value = Version> {
    (any::<u64>(), any::<u64>()).prop_map(|(i, h)| Version::new(i, h))
}

pub fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Bootstrap), Just(Role::Node)]
}

pub fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Alive),
        Just(Status::Suspect),
        Just(Status::Dead)
    ]
}

pub fn broadcast_state() -> impl Strategy<Value = BroadcastState> {
    prop_oneof![Just(BroadcastState::Active), Just(BroadcastState::Failed)]
}

pub fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::Forbidden),
        Just(ErrorCode::BadRequest),
        Just(ErrorCode::NotFound),
        Just(ErrorCode::Unavailable),
    ]
}

pub fn progress() -> impl Strategy<Value = Vec<Progress>> {
    vec(
        (
            broadcast_id(),
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            proptest::option::of(any::<String>()),
        )
            .prop_map(|(broadcast, held, total, complete, failed)| Progress {
                broadcast,
                held,
                total,
                complete,
                failed,
            }),
        0..MAX_ITEMS,
    )
}

pub fn node_record() -> impl Strategy<Value = NodeRecord> {
    (
        node_id(),
        any::<String>(),
        role(),
        addrs(),
        version(),
        progress(),
        any::<u64>(),
    )
        .prop_map(
            |(id, name, role, addrs, version, progress, progress_seq)| NodeRecord {
                progress_seq,
                id,
                name,
                role,
                addrs,
                version,
                progress,
                pull: false,
                groups: Vec::new(),
            },
        )
}

pub fn broadcast_record() -> impl Strategy<Value = BroadcastRecord> {
    (
        broadcast_id(),
        any::<String>(),
        node_id(),
        any::<u64>(),
        any::<u64>(),
        broadcast_state(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(id, name, origin, size, chunks, state, version, seq, published_ms)| BroadcastRecord {
                id,
                name,
                origin,
                size,
                chunks,
                state,
                version,
                seq,
                published_ms,
                audience: None,
            },
        )
}

pub fn chunk_index() -> impl Strategy<Value = ChunkIndex> {
    any::<u32>().prop_map(ChunkIndex)
}

pub fn chunk_header(max_len: u32) -> impl Strategy<Value = ChunkHeader> {
    (broadcast_id(), chunk_index(), 0..=max_len).prop_map(|(broadcast, index, len)| ChunkHeader {
        broadcast,
        index,
        len,
    })
}

pub fn manifest_header(max_len: u64) -> impl Strategy<Value = ManifestHeader> {
    (broadcast_id(), 0..=max_len).prop_map(|(broadcast, len)| ManifestHeader { broadcast, len })
}

pub fn register() -> impl Strategy<Value = Message> {
    (node_id(), any::<u64>(), addrs()).prop_map(|(id, incarnation, addrs)| {
        Message::Register(Register {
            id,
            incarnation,
            addrs,
            pull: false,
        })
    })
}

pub fn cursor() -> impl Strategy<Value = RegistryCursor> {
    (any::<u64>(), any::<u64>()).prop_map(|(epoch, seq)| RegistryCursor { epoch, seq })
}

pub fn heartbeat() -> impl Strategy<Value = Message> {
    (
        node_id(),
        version(),
        addrs(),
        progress(),
        proptest::option::of(cursor()),
        proptest::option::of((any::<u64>(), any::<u64>())),
        vec(broadcast_id(), 0..MAX_ITEMS),
    )
        .prop_map(
            |(id, version, addrs, progress, changes_since, span, removed)| {
                Message::Heartbeat(Heartbeat {
                    progress_span: span.map(|(since, upto)| ProgressSpan { since, upto }),
                    progress_removed: removed,
                    id,
                    version,
                    addrs,
                    progress,
                    changes_since,
                    pull: false,
                })
            },
        )
}

pub fn lookup() -> impl Strategy<Value = Message> {
    Just(Message::Lookup(Lookup {}))
}

pub fn announce() -> impl Strategy<Value = Message> {
    broadcast_record().prop_map(|record| Message::Announce(Announce { record }))
}

pub fn registered() -> impl Strategy<Value = Message> {
    (node_id(), addrs())
        .prop_map(|(id, bootstraps)| Message::Registered(Registered { id, bootstraps }))
}

pub fn ack() -> impl Strategy<Value = Message> {
    Just(Message::Ack(Ack {}))
}

pub fn registry() -> impl Strategy<Value = Message> {
    let entry = (node_record(), status(), any::<u64>()).prop_map(|(record, status, age_ms)| {
        RegistryEntry {
            record,
            status,
            age_ms,
        }
    });
    (
        vec(entry, 0..MAX_ITEMS),
        vec(broadcast_record(), 0..MAX_ITEMS),
        proptest::option::of(cursor()),
        any::<bool>(),
        vec(node_id(), 0..MAX_ITEMS),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(
            |(nodes, broadcasts, cursor, partial, removed, progress_ack)| {
                Message::Registry(RegistryView {
                    nodes,
                    broadcasts,
                    cursor,
                    partial,
                    removed,
                    progress_ack,
                })
            },
        )
}

pub fn digest() -> impl Strategy<Value = Message> {
    (
        vec((node_id(), version()), 0..MAX_ITEMS),
        vec((broadcast_id(), any::<u64>()), 0..MAX_ITEMS),
    )
        .prop_map(|(nodes, broadcasts)| Message::Digest(Digest { nodes, broadcasts }))
}

pub fn delta() -> impl Strategy<Value = Message> {
    let update =
        (node_record(), any::<u64>()).prop_map(|(record, age_ms)| EntryUpdate { record, age_ms });
    (
        vec(update, 0..MAX_ITEMS),
        vec(broadcast_record(), 0..MAX_ITEMS),
        vec(node_id(), 0..MAX_ITEMS),
        vec(broadcast_id(), 0..MAX_ITEMS),
    )
        .prop_map(|(nodes, broadcasts, want_nodes, want_broadcasts)| {
            Message::Delta(Delta {
                nodes,
                broadcasts,
                want_nodes,
                want_broadcasts,
            })
        })
}

pub fn ping() -> impl Strategy<Value = Message> {
    any::<u64>().prop_map(|nonce| Message::Ping(Ping { nonce }))
}

pub fn pong() -> impl Strategy<Value = Message> {
    any::<u64>().prop_map(|nonce| Message::Pong(Ping { nonce }))
}

pub fn error() -> impl Strategy<Value = Message> {
    (error_code(), any::<String>())
        .prop_map(|(code, message)| Message::Error(ErrorMsg { code, message }))
}

pub fn have() -> impl Strategy<Value = Message> {
    // Up to 300 bytes so that bin8 and bin16 both occur.
    (
        broadcast_id(),
        any::<u32>(),
        vec(any::<u8>(), 0..300),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(broadcast, chunks, bits, from_origin, seq)| {
            Message::Have(Have {
                broadcast,
                chunks,
                bits,
                from_origin,
                seq,
                audience: None,
            })
        })
}

pub fn have_update() -> impl Strategy<Value = Message> {
    (broadcast_id(), vec(chunk_index(), 0..20))
        .prop_map(|(broadcast, chunks)| Message::HaveUpdate(HaveUpdate { broadcast, chunks }))
}

pub fn chunk_request() -> impl Strategy<Value = Message> {
    (broadcast_id(), chunk_index(), any::<u32>()).prop_map(|(broadcast, index, count)| {
        Message::ChunkRequest(ChunkRequest {
            broadcast,
            index,
            count,
        })
    })
}

/// A chunk header alone, with any length (the payload is not part of the value).
pub fn chunk_data() -> impl Strategy<Value = Message> {
    chunk_header(u32::MAX).prop_map(Message::ChunkData)
}

pub fn manifest_request() -> impl Strategy<Value = Message> {
    broadcast_id().prop_map(|broadcast| Message::ManifestRequest(ManifestRequest { broadcast }))
}

/// A manifest header alone, with any length (the payload is not part of the value).
pub fn manifest_data() -> impl Strategy<Value = Message> {
    manifest_header(u64::MAX).prop_map(Message::ManifestData)
}

/// One strategy per message kind, in declaration order.
pub fn each_kind() -> Vec<(&'static str, BoxedStrategy<Message>)> {
    vec![
        ("register", register().boxed()),
        ("heartbeat", heartbeat().boxed()),
        ("lookup", lookup().boxed()),
        ("announce", announce().boxed()),
        ("registered", registered().boxed()),
        ("ack", ack().boxed()),
        ("registry", registry().boxed()),
        ("digest", digest().boxed()),
        ("delta", delta().boxed()),
        ("ping", ping().boxed()),
        ("pong", pong().boxed()),
        ("error", error().boxed()),
        ("have", have().boxed()),
        ("have_update", have_update().boxed()),
        ("chunk_request", chunk_request().boxed()),
        ("chunk_data", chunk_data().boxed()),
        ("manifest_request", manifest_request().boxed()),
        ("manifest_data", manifest_data().boxed()),
    ]
}

/// Any message of any kind.
pub fn message() -> impl Strategy<Value = Message> {
    proptest::strategy::Union::new(each_kind().into_iter().map(|(_, s)| s))
}

/// Any message that is not a payload header.
pub fn control_message() -> impl Strategy<Value = Message> {
    proptest::strategy::Union::new(
        each_kind()
            .into_iter()
            .filter(|(kind, _)| !matches!(*kind, "chunk_data" | "manifest_data"))
            .map(|(_, s)| s),
    )
}

/// A chunk frame: a header whose `len` matches its payload.
pub fn chunk_frame(max_len: usize) -> impl Strategy<Value = Frame> {
    (broadcast_id(), chunk_index(), vec(any::<u8>(), 0..=max_len)).prop_map(
        |(broadcast, index, data)| Frame::Chunk {
            header: ChunkHeader {
                broadcast,
                index,
                len: u32::try_from(data.len()).expect("test payloads are small"),
            },
            data,
        },
    )
}

/// A manifest frame: a header whose `len` matches its payload.
pub fn manifest_frame(max_len: usize) -> impl Strategy<Value = Frame> {
    (broadcast_id(), vec(any::<u8>(), 0..=max_len)).prop_map(|(broadcast, data)| Frame::Manifest {
        header: ManifestHeader {
            broadcast,
            len: data.len() as u64,
        },
        data,
    })
}

/// Any frame: a control message, or a header with its payload.
pub fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        3 => control_message().prop_map(Frame::Message),
        1 => chunk_frame(300),
        1 => manifest_frame(300),
    ]
}

/// Append `frame` (and its payload) to `out`.
#[track_caller]
pub fn encode_frame(frame: &Frame, limits: &Limits, out: &mut Vec<u8>) {
    match frame {
        Frame::Message(msg) => encode(msg, limits, out).expect("encodable"),
        Frame::Chunk { header, data } => {
            encode_chunk(*header, data, limits, out).expect("encodable");
        }
        Frame::Manifest { header, data } => {
            encode(&Message::ManifestData(*header), limits, out).expect("encodable");
            out.extend_from_slice(data);
        }
    }
}
