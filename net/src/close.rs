//! QUIC application close and stream reset codes.

use quinn::VarInt;

/// Why a connection was closed or a stream reset, as sent in the QUIC frame.
///
/// The numbers are part of the wire protocol: never renumber a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum CloseCode {
    /// Normal shutdown.
    Shutdown = 0,
    /// The peer sent bytes that do not decode.
    Protocol = 1,
    /// The peer's certificate does not allow what it tried.
    Forbidden = 2,
    /// A duplicate or unwanted connection (neighbour tie-break, over the cap).
    Unwanted = 3,
    /// The dialled peer is not who the registry said.
    WrongPeer = 4,
    /// Neighbour missed its pings or was declared dead.
    Lost = 5,
}

impl CloseCode {
    /// Every code, in numeric order.
    pub const ALL: [Self; 6] = [
        Self::Shutdown,
        Self::Protocol,
        Self::Forbidden,
        Self::Unwanted,
        Self::WrongPeer,
        Self::Lost,
    ];

    /// The number sent on the wire.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The code a peer sent, if it is one of ours.
    pub fn from_code(code: VarInt) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| u64::from(c.code()) == code.into_inner())
    }
}

impl From<CloseCode> for VarInt {
    fn from(c: CloseCode) -> Self {
        VarInt::from_u32(c.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_the_wire_protocol() {
        let wire: Vec<u32> = CloseCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(wire, [0, 1, 2, 3, 4, 5]);
        assert_eq!(VarInt::from(CloseCode::WrongPeer), VarInt::from_u32(4));
    }

    #[test]
    fn round_trips_and_rejects_unknown_codes() {
        for c in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(c.into()), Some(c));
        }
        assert_eq!(CloseCode::from_code(VarInt::from_u32(6)), None);
        assert_eq!(CloseCode::from_code(VarInt::from_u32(u32::MAX)), None);
    }
}
