//! The small part of the nfnetlink_queue protocol that link impairment needs: bind a queue in
//! "metadata only" mode, read queued packets' ids, give verdicts. Messages are built and parsed
//! by hand (a few fixed structs); the socket is a plain netlink socket.
//!
//! Protocol reference: `include/uapi/linux/netfilter/nfnetlink_queue.h` in the kernel.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;

const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_META: u8 = 1;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;

/// A verdict on a queued packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// NF_DROP.
    Drop,
    /// NF_ACCEPT.
    Accept,
}

/// A bound queue in the network namespace of the thread that opened it.
#[derive(Debug)]
pub struct Queue {
    fd: OwnedFd,
    num: u16,
    seq: u32,
    buf: Vec<u8>,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// One netlink message of the queue subsystem: header, nfgenmsg, then attributes.
fn message(kind: u16, flags: u16, seq: u32, queue: u16, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&[0; NLMSG_HDRLEN]);
    // nfgenmsg: family AF_UNSPEC, version 0, resource id (the queue) big-endian.
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&queue.to_be_bytes());
    for (kind, payload) in attrs {
        let len = 4 + payload.len();
        m.extend_from_slice(&(len as u16).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(payload);
        m.resize(align4(m.len()), 0);
    }
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m[4..6].copy_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | kind).to_ne_bytes());
    m[6..8].copy_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    m
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// What one netlink message said.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A queued packet's id.
    Packet(u32),
    /// An acknowledgement (0) or an error (negative errno) for request `seq`.
    Ack { seq: u32, errno: i32 },
    /// Anything else (ignored).
    Other,
}

/// Split a datagram of netlink messages and parse each. Malformed input ends the walk.
pub(crate) fn parse(datagram: &[u8]) -> Vec<Incoming> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + NLMSG_HDRLEN <= datagram.len() {
        let (Some(len), Some(kind)) = (u32_at(datagram, at), u16_at(datagram, at + 4)) else {
            break;
        };
        let len = len as usize;
        if len < NLMSG_HDRLEN || at + len > datagram.len() {
            break;
        }
        let msg = &datagram[at..at + len];
        out.push(parse_one(kind, msg));
        at += align4(len);
    }
    out
}

fn parse_one(kind: u16, msg: &[u8]) -> Incoming {
    if kind == NLMSG_ERROR {
        // struct nlmsgerr { int error; struct nlmsghdr msg; }
        let errno = u32_at(msg, NLMSG_HDRLEN).map_or(0, |e| e as i32);
        let seq = u32_at(msg, NLMSG_HDRLEN + 4 + 8).unwrap_or(0);
        return Incoming::Ack { seq, errno };
    }
    if kind != ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET) {
        return Incoming::Other;
    }
    let mut at = NLMSG_HDRLEN + NFGENMSG_LEN;
    while at + 4 <= msg.len() {
        let (Some(len), Some(attr)) = (u16_at(msg, at), u16_at(msg, at + 2)) else {
            break;
        };
        let len = len as usize;
        if len < 4 || at + len > msg.len() {
            break;
        }
        // The nested / byte-order flag bits live in the top of the type.
        if attr & 0x3fff == NFQA_PACKET_HDR && len >= 4 + 4 {
            let id = u32::from_be_bytes([msg[at + 4], msg[at + 5], msg[at + 6], msg[at + 7]]);
            return Incoming::Packet(id);
        }
        at += align4(len);
    }
    Incoming::Other
}

impl Queue {
    /// Open a netlink socket in the calling thread's network namespace and bind queue `num`
    /// (metadata only: the kernel keeps the payload).
    pub fn bind(num: u16, max_len: u32) -> Result<Self> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkNetFilter,
        )
        .context("opening a netfilter netlink socket")?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).context("binding the netlink socket")?;
        // Room for bursts: a full queue drops packets at the kernel.
        let _ = setsockopt(&fd, sockopt::RcvBufForce, &(8 << 20));
        let mut q = Self {
            fd,
            num,
            seq: 0,
            buf: vec![0; 1 << 16],
        };
        // struct nfqnl_msg_config_cmd { u8 command; u8 pad; be16 pf; }
        q.request(NFQA_CFG_CMD, &[NFQNL_CFG_CMD_BIND, 0, 0, 0])
            .with_context(|| format!("binding nfqueue {num}"))?;
        // struct nfqnl_msg_config_params { be32 copy_range; u8 copy_mode; } (packed)
        let mut params = [0u8; 5];
        params[4] = NFQNL_COPY_META;
        q.request(NFQA_CFG_PARAMS, &params)
            .context("setting nfqueue copy mode")?;
        q.request(NFQA_CFG_QUEUE_MAXLEN, &max_len.to_be_bytes())
            .context("setting nfqueue length")?;
        Ok(q)
    }

    /// Send one config attribute and wait for its acknowledgement.
    fn request(&mut self, attr: u16, payload: &[u8]) -> Result<()> {
        self.seq += 1;
        let seq = self.seq;
        let m = message(
            NFQNL_MSG_CONFIG,
            NLM_F_ACK,
            seq,
            self.num,
            &[(attr, payload)],
        );
        send(self.fd.as_raw_fd(), &m, MsgFlags::empty()).context("netlink send")?;
        self.set_timeout(Some(Duration::from_secs(2)))?;
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::empty())
                .context("waiting for the kernel's answer")?;
            for msg in parse(&self.buf[..n]) {
                if let Incoming::Ack { seq: s, errno } = msg
                    && s == seq
                {
                    if errno != 0 {
                        bail!("the kernel refused: {}", Errno::from_raw(-errno));
                    }
                    return Ok(());
                }
            }
        }
    }

    /// How long `recv_ids` may block (None: forever).
    pub fn set_timeout(&self, t: Option<Duration>) -> Result<()> {
        let tv = t.map_or(TimeVal::new(0, 0), |t| {
            TimeVal::new(
                t.as_secs() as _,
                // A zero timeval means "block forever": never ask for less than 1 µs.
                (t.subsec_micros().max(u32::from(t.as_secs() == 0))) as _,
            )
        });
        setsockopt(&self.fd, sockopt::ReceiveTimeout, &tv).context("setting SO_RCVTIMEO")?;
        Ok(())
    }

    /// Ids of packets queued since the last call; empty on timeout. Kernel drops for a full
    /// socket buffer (ENOBUFS) are not an error: those packets were dropped, like on a link.
    pub fn recv_ids(&mut self, out: &mut Vec<u32>) -> Result<()> {
        match recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::empty()) {
            Ok(n) => {
                out.extend(parse(&self.buf[..n]).into_iter().filter_map(|m| match m {
                    Incoming::Packet(id) => Some(id),
                    _ => None,
                }));
                Ok(())
            }
            Err(Errno::EAGAIN | Errno::EINTR | Errno::ENOBUFS) => Ok(()),
            Err(e) => Err(e).context("reading the nfqueue"),
        }
    }

    /// Give packet `id` its verdict.
    pub fn verdict(&mut self, id: u32, v: Verdict) -> Result<()> {
        // struct nfqnl_msg_verdict_hdr { be32 verdict; be32 id; }
        let mut hdr = [0u8; 8];
        let code: u32 = match v {
            Verdict::Drop => 0,
            Verdict::Accept => 1,
        };
        hdr[..4].copy_from_slice(&code.to_be_bytes());
        hdr[4..].copy_from_slice(&id.to_be_bytes());
        let m = message(
            NFQNL_MSG_VERDICT,
            0,
            0,
            self.num,
            &[(NFQA_VERDICT_HDR, &hdr)],
        );
        match send(self.fd.as_raw_fd(), &m, MsgFlags::empty()) {
            // The packet is gone already (queue flushed): nothing to do.
            Ok(_) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e).context("sending a verdict"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_message_has_the_kernel_layout() {
        let m = message(
            NFQNL_MSG_CONFIG,
            NLM_F_ACK,
            7,
            3,
            &[(NFQA_CFG_CMD, &[1, 0, 0, 0])],
        );
        assert_eq!(m.len(), 16 + 4 + 8);
        assert_eq!(u32_at(&m, 0), Some(28));
        assert_eq!(u16_at(&m, 4), Some((3 << 8) | 2));
        assert_eq!(u16_at(&m, 6), Some(NLM_F_REQUEST | NLM_F_ACK));
        assert_eq!(u32_at(&m, 8), Some(7));
        assert_eq!(&m[16..20], &[0, 0, 0, 3]);
        assert_eq!(u16_at(&m, 20), Some(8));
        assert_eq!(u16_at(&m, 22), Some(NFQA_CFG_CMD));
        // A 5-byte attribute is padded to 4 bytes.
        let p = message(
            NFQNL_MSG_CONFIG,
            0,
            1,
            0,
            &[(NFQA_CFG_PARAMS, &[0, 0, 0, 0, 1])],
        );
        assert_eq!(p.len(), 16 + 4 + 12);
        assert_eq!(u16_at(&p, 20), Some(9));
    }

    fn packet_msg(id: u32) -> Vec<u8> {
        let mut hdr = id.to_be_bytes().to_vec();
        hdr.extend_from_slice(&[0x08, 0x00, 3]);
        let mut m = message(NFQNL_MSG_PACKET, 0, 0, 0, &[(NFQA_PACKET_HDR, &hdr)]);
        m[6..8].copy_from_slice(&0u16.to_ne_bytes());
        m
    }

    #[test]
    fn packets_and_acks_parse_and_garbage_does_not_panic() {
        let mut d = packet_msg(41);
        d.extend(packet_msg(42));
        assert_eq!(parse(&d), vec![Incoming::Packet(41), Incoming::Packet(42)]);
        let mut err = vec![0u8; 16 + 4 + 16];
        let len = err.len() as u32;
        err[0..4].copy_from_slice(&len.to_ne_bytes());
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err[16..20].copy_from_slice(&(-1i32).to_ne_bytes());
        err[28..32].copy_from_slice(&9u32.to_ne_bytes());
        assert_eq!(parse(&err), vec![Incoming::Ack { seq: 9, errno: -1 }]);
        for cut in 0..d.len() {
            let _ = parse(&d[..cut]);
        }
        let mut lying = packet_msg(1);
        lying[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(parse(&lying).is_empty());
        let mut short_attr = packet_msg(1);
        short_attr[20..22].copy_from_slice(&2u16.to_ne_bytes());
        assert_eq!(parse(&short_attr), vec![Incoming::Other]);
    }
}
