//! Golden bytes: the exact frame of one fixed value of every [`Message`] variant.
//!
//! These pin the `swarmcast/1` encoding. If one fails, the wire format changed: either the change
//! was a mistake, or it needs a new ALPN (see the crate docs). Never "fix" a constant by pasting
//! the new output without deciding which.
//!
//! A few constants are split into annotated pieces: those were checked by hand against the
//! msgpack spec and show the shapes the crate docs describe.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use swarmcast_proto::{
    Ack, Announce, Audience, BroadcastId, BroadcastRecord, BroadcastState, ChunkHeader, ChunkIndex,
    ChunkRequest, Delta, Digest, EntryUpdate, ErrorCode, ErrorMsg, Frame, Have, HaveUpdate,
    Heartbeat, Limits, Lookup, ManifestHeader, ManifestRequest, Message, NodeId, NodeRecord, Ping,
    Progress, ProgressSpan, Register, Registered, RegistryEntry, RegistryView, Role, Status,
    Version, decode, decode_value, encode, encode_chunk,
};

const N1: NodeId = NodeId([0x11; 32]);
const N2: NodeId = NodeId([0x12; 32]);
const B: BroadcastId = BroadcastId([0xbb; 32]);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn record() -> BroadcastRecord {
    BroadcastRecord {
        id: B,
        name: "photos".into(),
        origin: N1,
        size: 1_000_000,
        chunks: 4,
        state: BroadcastState::Active,
        version: 2,
        seq: 0,
        published_ms: 0,
        audience: None,
    }
}

fn node_record() -> NodeRecord {
    NodeRecord {
        progress_seq: 0,
        id: N2,
        name: "node-a".into(),
        role: Role::Node,
        addrs: vec![addr("10.0.0.2:7000")],
        version: Version::new(1, 2),
        progress: vec![Progress {
            broadcast: B,
            held: 3,
            total: 4,
            complete: false,
            failed: None,
        }],
        pull: false,
        groups: Vec::new(),
    }
}

/// Encode `msg`, compare with `golden`, and check that decoding the golden bytes gives `msg`.
#[track_caller]
fn check(msg: &Message, golden: &str) -> Vec<u8> {
    let limits = Limits::default();
    let mut out = Vec::new();
    encode(msg, &limits, &mut out).unwrap();
    assert_eq!(
        hex::encode(&out),
        golden,
        "encoding of {} changed",
        msg.kind()
    );

    let bytes = hex::decode(golden).unwrap();
    let (back, used) = decode_value::<Message>(&bytes, &limits).unwrap().unwrap();
    assert_eq!(&back, msg);
    assert_eq!(used, bytes.len());
    match msg {
        // Headers: a frame without its payload is incomplete.
        Message::ChunkData(_) | Message::ManifestData(_) => {
            assert!(decode(&bytes, &limits).unwrap().is_none());
        }
        _ => {
            let (frame, used) = decode(&bytes, &limits).unwrap().unwrap();
            assert_eq!(frame, Frame::Message(msg.clone()));
            assert_eq!(used, bytes.len());
        }
    }
    bytes
}

#[test]
fn register() {
    const GOLDEN: &str = concat!(
        "0000006c",           // u32 BE body length: 108
        "81",                 // fixmap, 1 entry: the variant
        "a85265676973746572", // fixstr 8: "Register"
        "83",                 // fixmap, 3 entries: the struct, fields by name
        "a26964",             // "id"
        "c420",               // NodeId: bin8 of 32 bytes
        "1111111111111111111111111111111111111111111111111111111111111111",
        "ab696e6361726e6174696f6e", // "incarnation"
        "07",                       // positive fixint 7
        "a56164647273",             // "addrs"
        "92",                       // fixarray, 2 addresses
        "81a25634",                 // SocketAddr: one-entry map {"V4": ..}
        "92947f000001cd2328",       // [[127, 0, 0, 1], uint16 9000]
        "81a25636",                 // {"V6": ..}
        "92dc0010",                 // [array16 of 16 ints (the octets),
        "00000000000000000000000000000001",
        "cd01bb", //  uint16 443]
    );
    check(
        &Message::Register(Register {
            id: N1,
            incarnation: 7,
            addrs: vec![addr("127.0.0.1:9000"), addr("[::1]:443")],
            pull: false,
        }),
        GOLDEN,
    );
}

#[test]
fn heartbeat() {
    const GOLDEN: &str = "000000aa81a948656172746265617484a26964c4201111111111111111111111111111111111111111111111111111111111111111a776657273696f6e82ab696e6361726e6174696f6e03a96865617274626561742aa561646472739181a2563492940a000001cd1b58a870726f67726573739183a962726f616463617374c420bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbba468656c6405a5746f74616c0a";
    check(
        &Message::Heartbeat(Heartbeat {
            progress_span: None,
            progress_removed: Vec::new(),
            id: N1,
            version: Version::new(3, 42),
            addrs: vec![addr("10.0.0.1:7000")],
            progress: vec![Progress {
                broadcast: B,
                held: 5,
                total: 10,
                complete: false,
                failed: None,
            }],
            changes_since: None,
            pull: false,
        }),
        GOLDEN,
    );
}

/// A heartbeat carrying a span of its progress stream: the items changed in it, the broadcasts
/// forgotten in it. Both fields are omitted when unset (above), so older bootstraps read the
/// rest as before.
#[test]
fn heartbeat_with_a_progress_span() {
    const GOLDEN: &str = "000000fa81a948656172746265617486a26964c4201111111111111111111111111111111111111111111111111111111111111111a776657273696f6e82ab696e6361726e6174696f6e03a96865617274626561742aa561646472739181a2563492940a000001cd1b58a870726f67726573739183a962726f616463617374c420bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbba468656c6405a5746f74616c0aad70726f67726573735f7370616e82a573696e636503a47570746f07b070726f67726573735f72656d6f76656491c420cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
    check(
        &Message::Heartbeat(Heartbeat {
            id: N1,
            version: Version::new(3, 42),
            addrs: vec![addr("10.0.0.1:7000")],
            progress: vec![Progress {
                broadcast: B,
                held: 5,
                total: 10,
                complete: false,
                failed: None,
            }],
            progress_span: Some(ProgressSpan { since: 3, upto: 7 }),
            progress_removed: vec![BroadcastId([0xcc; 32])],
            changes_since: None,
            pull: false,
        }),
        GOLDEN,
    );
}

#[test]
fn lookup() {
    const GOLDEN: &str = "0000000981a64c6f6f6b757080";
    check(&Message::Lookup(Lookup {}), GOLDEN);
}

#[test]
fn announce() {
    const GOLDEN: &str = "0000009581a8416e6e6f756e636581a67265636f726487a26964c420bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbba46e616d65a670686f746f73a66f726967696ec4201111111111111111111111111111111111111111111111111111111111111111a473697a65ce000f4240a66368756e6b7304a57374617465a6616374697665a776657273696f6e02";
    check(&Message::Announce(Announce { record: record() }), GOLDEN);
}

#[test]
fn registered() {
    const GOLDEN: &str = "0000006881aa5265676973746572656482a26964c4201111111111111111111111111111111111111111111111111111111111111111aa626f6f747374726170739281a256349294ccc000020acd1ce881a2563692dc001020010dccb8000000000000000000000005cd1ce8";
    check(
        &Message::Registered(Registered {
            id: N1,
            bootstraps: vec![addr("192.0.2.10:7400"), addr("[2001:db8::5]:7400")],
        }),
        GOLDEN,
    );
}

#[test]
fn ack() {
    const GOLDEN: &str = concat!(
        "00000006", // body length 6
        "81",       // fixmap 1: the variant
        "a341636b", // "Ack"
        "80",       // empty struct: fixmap with 0 entries
    );
    check(&Message::Ack(Ack {}), GOLDEN);
}

#[test]
fn registry() {
    const GOLDEN: &str = "0000017781a8526567697374727982a56e6f6465739183a67265636f726486a26964c4201212121212121212121212121212121212121212121212121212121212121212a46e616d65a66e6f64652d61a4726f6c65a46e6f6465a561646472739181a2563492940a000002cd1b58a776657273696f6e82ab696e6361726e6174696f6e01a968656172746265617402a870726f67726573739183a962726f616463617374c420bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbba468656c6403a5746f74616c04a6737461747573a773757370656374a66167655f6d73cd05dcaa62726f616463617374739187a26964c420bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbba46e616d65a670686f746f73a66f726967696ec4201111111111111111111111111111111111111111111111111111111111111111a473697a65ce000f4240a66368756e6b7304a57374617465a6616374697665a776657273696f6e02";
    check(
        &Message::Registry(RegistryView {
            nodes: vec![RegistryEntry {
                record: node_record(),
                status: Status::Suspect,
                age_ms: 1500,
            }],
            broadcasts: vec![record()],
            ..Default::default()
        }),
        GOLDEN,
    );
}

#[test]
fn digest() {
    const GOLDEN: &str = "0000007c81a644696765737482a56e6f6465739192c420111111111111111111111111111111111111111111111111111111111111111182ab696e6361726e6174696f6e01a968656172746265617402aa62726f616463617374739192c420bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb03";
    check(
        &Message::Digest(Digest {
            nodes: vec![(N1, Version::new(1, 2))],
            broadcasts: vec![(B, 3)],
        }),
        GOLDEN,
    );
}

#[test]
fn delta() {
    const GOLDEN: &str = "0000014281a544656c746184a56e6f6465739182a67265636f726486a26964c4201212121212121212121212121212121212121212121212121212121212121212a46e616d65a66e6f64652d61a4726f6c65a46e6f6465a561646472739181a2563492940a000002cd1b58a776657273696f6e82ab696e6361726e6174696f6e01a968656172746265617402a870726f67726573739183a962726f616463617374c420bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbba468656c6403a5746f74616c04a66167655f6d73ccfaaa62726f6164636173747390aa77616e745f6e6f64657391c4201111111111111111111111111111111111111111111111111111111111111111af77616e745f62726f6164636173747391c420bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    check(
        &Message::Delta(Delta {
            nodes: vec![EntryUpdate {
                record: node_record(),
                age_ms: 250,
            }],
            broadcasts: vec![],
            want_nodes: vec![N1],
            want_broadcasts: vec![B],
        }),
        GOLDEN,
    );
}

#[test]
fn ping() {
    const GOLDEN: &str = concat!(
        "00000016",           // body length 22
        "81a450696e67",       // {"Ping": ..}
        "81a56e6f6e6365",     // {"nonce": ..}
        "cf0102030405060708", // uint64, big-endian
    );
    check(
        &Message::Ping(Ping {
            nonce: 0x0102_0304_0506_0708,
        }),
        GOLDEN,
    );
}

#[test]
fn pong() {
    const GOLDEN: &str = "0000000e81a4506f6e6781a56e6f6e636500";
    check(&Message::Pong(Ping { nonce: 0 }), GOLDEN);
}

#[test]
fn error() {
    const GOLDEN: &str = "0000002d81a54572726f7282a4636f6465a96e6f745f666f756e64a76d657373616765ad6e6f2073756368206368756e6b";
    check(
        &Message::Error(ErrorMsg {
            code: ErrorCode::NotFound,
            message: "no such chunk".into(),
        }),
        GOLDEN,
    );
}

#[test]
fn have() {
    const GOLDEN: &str = "0000004481a44861766583a962726f616463617374c420bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbba66368756e6b730aa462697473c402ffc0";
    check(
        &Message::Have(Have {
            broadcast: B,
            chunks: 10,
            bits: vec![0xff, 0xc0],
            from_origin: false,
            seq: 0,
            audience: None,
        }),
        GOLDEN,
    );
}

#[test]
fn have_update() {
    const GOLDEN: &str = concat!(
        "0000004a",                 // body length 74
        "81aa48617665557064617465", // {"HaveUpdate": ..}
        "82",                       // fixmap, 2 fields
        "a962726f616463617374",     // "broadcast"
        "c420",                     // BroadcastId: bin8 of 32 bytes
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        "a66368756e6b73", // "chunks"
        "94",             // fixarray 4: ChunkIndex is a plain integer
        "00",             // 0
        "7f",             // 127 (positive fixint)
        "cc80",           // 128 (uint8)
        "ce00010000",     // 65536 (uint32)
    );
    check(
        &Message::HaveUpdate(HaveUpdate {
            broadcast: B,
            chunks: vec![
                ChunkIndex(0),
                ChunkIndex(127),
                ChunkIndex(128),
                ChunkIndex(65536),
            ],
        }),
        GOLDEN,
    );
}

#[test]
fn chunk_request() {
    const GOLDEN: &str = "0000004981ac4368756e6b5265717565737483a962726f616463617374c420bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbba5696e64657803a5636f756e7402";
    check(
        &Message::ChunkRequest(ChunkRequest {
            broadcast: B,
            index: ChunkIndex(3),
            count: 2,
        }),
        GOLDEN,
    );
}

/// A request from before `count` existed decodes as a request for one chunk.
#[test]
fn chunk_request_without_count_means_one() {
    const OLD: &str = "0000004281ac4368756e6b5265717565737482a962726f616463617374c420bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbba5696e64657803";
    let bytes = hex::decode(OLD).unwrap();
    let (msg, used) = decode_value::<Message>(&bytes, &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(
        msg,
        Message::ChunkRequest(ChunkRequest {
            broadcast: B,
            index: ChunkIndex(3),
            count: 1,
        })
    );
}

#[test]
fn chunk_data() {
    const GOLDEN: &str = "0000004481a94368756e6b4461746183a962726f616463617374c420bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbba5696e64657803a36c656e05";
    let header = ChunkHeader {
        broadcast: B,
        index: ChunkIndex(3),
        len: 5,
    };
    let frame = check(&Message::ChunkData(header), GOLDEN);

    // The payload follows the frame raw, outside msgpack.
    let limits = Limits::default();
    let mut out = Vec::new();
    encode_chunk(header, b"hello", &limits, &mut out).unwrap();
    assert_eq!(out, [frame.as_slice(), b"hello"].concat());
    let (back, used) = decode(&out, &limits).unwrap().unwrap();
    assert_eq!(
        back,
        Frame::Chunk {
            header,
            data: b"hello".to_vec()
        }
    );
    assert_eq!(used, out.len());
}

#[test]
fn manifest_request() {
    const GOLDEN: &str = "0000003e81af4d616e69666573745265717565737481a962726f616463617374c420bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    check(
        &Message::ManifestRequest(ManifestRequest { broadcast: B }),
        GOLDEN,
    );
}

#[test]
fn manifest_data() {
    const GOLDEN: &str = "0000004081ac4d616e69666573744461746182a962726f616463617374c420bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbba36c656e04";
    let header = ManifestHeader {
        broadcast: B,
        len: 4,
    };
    let mut bytes = check(&Message::ManifestData(header), GOLDEN);

    bytes.extend_from_slice(b"{..}");
    let (back, used) = decode(&bytes, &Limits::default()).unwrap().unwrap();
    assert_eq!(
        back,
        Frame::Manifest {
            header,
            data: b"{..}".to_vec()
        }
    );
    assert_eq!(used, bytes.len());
}

// ----- Schema evolution, as the crate docs promise it -----

mod evolution {
    use serde::Serialize;

    use super::*;

    /// A newer peer's `Ping` with a field this version does not know.
    #[derive(Serialize)]
    enum NewerMessage {
        Ping { nonce: u64, sent_at_ms: u64 },
    }

    /// An older peer's `Heartbeat`, from before `progress` existed.
    #[derive(Serialize)]
    enum OlderMessage {
        Heartbeat {
            id: NodeId,
            version: Version,
            addrs: Vec<SocketAddr>,
        },
    }

    #[track_caller]
    fn reencode<T: Serialize>(value: &T) -> Message {
        let limits = Limits::default();
        let mut out = Vec::new();
        swarmcast_proto::encode_value(value, &limits, &mut out).unwrap();
        let (msg, used) = decode_value::<Message>(&out, &limits).unwrap().unwrap();
        assert_eq!(used, out.len());
        msg
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let msg = reencode(&NewerMessage::Ping {
            nonce: 9,
            sent_at_ms: 1234,
        });
        assert_eq!(msg, Message::Ping(Ping { nonce: 9 }));
    }

    #[test]
    fn missing_default_field_decodes() {
        let msg = reencode(&OlderMessage::Heartbeat {
            id: N1,
            version: Version::new(1, 1),
            addrs: vec![],
        });
        assert_eq!(
            msg,
            Message::Heartbeat(Heartbeat {
                progress_span: None,
                progress_removed: Vec::new(),
                id: N1,
                version: Version::new(1, 1),
                addrs: vec![],
                progress: vec![],
                changes_since: None,
                pull: false,
            })
        );
    }

    #[test]
    fn lenient_forms_decode_and_reencode_canonically() {
        // {"Ping": [5]}: the struct as an array of its fields.
        let positional = hex::decode("81a450696e679105").unwrap();
        // {9: {"nonce": 5}}: the variant by index (Ping is the tenth).
        let by_index = hex::decode("810981a56e6f6e636505").unwrap();
        for body in [positional, by_index] {
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            let (msg, _) = decode_value::<Message>(&frame, &Limits::default())
                .unwrap()
                .unwrap();
            assert_eq!(msg, Message::Ping(Ping { nonce: 5 }));
        }
    }

    #[test]
    fn unknown_variant_is_invalid() {
        // {"Gossip": {}}
        let body = hex::decode("81a6476f7373697080").unwrap();
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        let err = decode_value::<Message>(&frame, &Limits::default()).unwrap_err();
        assert!(
            matches!(err, swarmcast_proto::DecodeError::Invalid(_)),
            "{err:?}"
        );
    }

    #[test]
    fn ipv6_flow_info_and_scope_id_are_not_carried() {
        let sent: SocketAddr =
            std::net::SocketAddrV6::new([0xfe80, 0, 0, 0, 0, 0, 0, 1].into(), 7000, 5, 3).into();
        let msg = reencode(&Message::Registered(Registered {
            id: N1,
            bootstraps: vec![sent],
        }));
        let Message::Registered(r) = msg else {
            panic!("not a Registered: {msg:?}");
        };
        assert_eq!(r.bootstraps, [addr("[fe80::1]:7000")]);
    }
}

/// Fields added for repeated broadcasts (`Progress::complete`, `Progress::failed`,
/// `BroadcastRecord::seq`) are written only when set, so the goldens above, from before them,
/// are unchanged and old peers decode new messages; set, they are named map entries.
#[test]
fn heartbeat_with_completion_and_failure() {
    const GOLDEN: &str = "000000f181a948656172746265617484a26964c4201111111111111111111111111111111111111111111111111111111111111111a776657273696f6e82ab696e6361726e6174696f6e03a96865617274626561742aa5616464727390a870726f67726573739284a962726f616463617374c420bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbba468656c6400a5746f74616c00a8636f6d706c657465c384a962726f616463617374c420bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbba468656c6400a5746f74616c04a66661696c6564a86e6f207370616365";
    check(
        &Message::Heartbeat(Heartbeat {
            progress_span: None,
            progress_removed: Vec::new(),
            id: N1,
            version: Version::new(3, 42),
            addrs: vec![],
            progress: vec![
                Progress {
                    broadcast: B,
                    held: 0,
                    total: 0,
                    complete: true,
                    failed: None,
                },
                Progress {
                    broadcast: B,
                    held: 0,
                    total: 4,
                    complete: false,
                    failed: Some("no space".into()),
                },
            ],
            changes_since: None,
            pull: false,
        }),
        GOLDEN,
    );
}

#[test]
fn announce_with_seq() {
    const GOLDEN: &str = "0000009a81a8416e6e6f756e636581a67265636f726488a26964c420bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbba46e616d65a670686f746f73a66f726967696ec4201111111111111111111111111111111111111111111111111111111111111111a473697a65ce000f4240a66368756e6b7304a57374617465a6616374697665a776657273696f6e02a373657103"; // ... "seq": 3 (a3 736571 03)
    let mut r = record();
    r.seq = 3;
    check(&Message::Announce(Announce { record: r }), GOLDEN);
}

/// Restricted broadcasts and pull nodes (issue 23): the new fields appear only when set, by
/// name, so older peers decode them (and ignore them) and older encodings are unchanged.
#[test]
fn have_with_an_audience_and_register_of_a_pull_node() {
    let audience = Audience {
        names: vec!["n3".into()],
        groups: vec!["gpu".into()],
    };
    check(
        &Message::Have(Have {
            broadcast: B,
            chunks: 10,
            bits: vec![0xff, 0xc0],
            from_origin: false,
            seq: 0,
            audience: Some(audience),
        }),
        concat!(
            "0000006481a44861766584a962726f616463617374c420",
            "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            "a66368756e6b730aa462697473c402ffc0",
            "a861756469656e6365",       // "audience"
            "82a56e616d657391a26e33",   // {"names": ["n3"],
            "a667726f75707391a3677075", //  "groups": ["gpu"]}
        ),
    );
    check(
        &Message::Register(Register {
            id: N1,
            incarnation: 7,
            addrs: vec![],
            pull: true,
        }),
        concat!(
            "0000004a81a8526567697374657284a26964c420",
            "1111111111111111111111111111111111111111111111111111111111111111",
            "ab696e6361726e6174696f6e07a5616464727390",
            "a470756c6cc3", // "pull": true
        ),
    );
}
