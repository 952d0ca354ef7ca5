//! A fixed-length bitfield of held chunks or pieces, MSB first (the wire layout of
//! [`swarmcast_proto::Have`]).

/// Why bytes do not form a bitfield of the expected length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BitfieldError {
    /// Not `ceil(len / 8)` bytes.
    #[error("bitfield of {len} bits needs {expected} bytes, got {got}")]
    Length {
        /// Bits.
        len: u32,
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// Bits set past the end.
    #[error("bitfield has bits set past its length")]
    TrailingBits,
}

/// A fixed-length set of indices `0..len`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    ones: u32,
}

impl Bitfield {
    /// All clear.
    pub fn new(len: u32) -> Self {
        Self {
            bytes: vec![0; Self::byte_len(len)],
            len,
            ones: 0,
        }
    }

    /// All set.
    pub fn full(len: u32) -> Self {
        let mut b = Self::new(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }

    /// Bytes needed for `len` bits.
    pub fn byte_len(len: u32) -> usize {
        (len as usize).div_ceil(8)
    }

    /// From wire bytes, checking length and trailing bits.
    pub fn from_bytes(len: u32, bytes: &[u8]) -> Result<Self, BitfieldError> {
        let expected = Self::byte_len(len);
        if bytes.len() != expected {
            return Err(BitfieldError::Length {
                len,
                expected,
                got: bytes.len(),
            });
        }
        let tail = len % 8;
        if tail != 0 {
            let mask = 0xffu8 >> tail;
            if bytes.last().is_some_and(|b| b & mask != 0) {
                return Err(BitfieldError::TrailingBits);
            }
        }
        let ones = bytes.iter().map(|b| b.count_ones()).sum();
        Ok(Self {
            bytes: bytes.to_vec(),
            len,
            ones,
        })
    }

    /// Number of indices.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether it has no indices at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `i` is set (false past the end).
    pub fn get(&self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        self.bytes[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Set `i`; true if it was clear. Indices past the end are ignored (false).
    pub fn set(&mut self, i: u32) -> bool {
        if i >= self.len || self.get(i) {
            return false;
        }
        self.bytes[(i / 8) as usize] |= 0x80 >> (i % 8);
        self.ones += 1;
        true
    }

    /// Clear `i`; true if it was set. Indices past the end are ignored (false).
    pub fn clear(&mut self, i: u32) -> bool {
        if !self.get(i) {
            return false;
        }
        self.bytes[(i / 8) as usize] &= !(0x80 >> (i % 8));
        self.ones -= 1;
        true
    }

    /// How many are set.
    pub fn count_ones(&self) -> u32 {
        self.ones
    }

    /// Whether every index is set.
    pub fn is_complete(&self) -> bool {
        self.ones == self.len
    }

    /// Wire bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Set indices, ascending.
    pub fn iter_ones(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|i| self.get(*i))
    }

    /// Clear indices, ascending.
    pub fn iter_zeros(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|i| !self.get(*i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_count_and_wire_layout() {
        let mut b = Bitfield::new(10);
        assert_eq!(b.as_bytes().len(), 2);
        assert!(b.set(0));
        assert!(!b.set(0));
        assert!(b.set(9));
        assert!(!b.set(10));
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(b.count_ones(), 2);
        assert_eq!(b.iter_ones().collect::<Vec<_>>(), vec![0, 9]);
        assert_eq!(Bitfield::from_bytes(10, b.as_bytes()), Ok(b.clone()));
        assert!(Bitfield::full(10).is_complete());
        assert_eq!(Bitfield::full(10).iter_zeros().count(), 0);
    }

    #[test]
    fn rejects_bad_wire_bytes() {
        assert!(matches!(
            Bitfield::from_bytes(10, &[0]),
            Err(BitfieldError::Length { .. })
        ));
        assert_eq!(
            Bitfield::from_bytes(10, &[0, 0x20]),
            Err(BitfieldError::TrailingBits)
        );
        assert!(Bitfield::from_bytes(0, &[]).is_ok());
    }
}
