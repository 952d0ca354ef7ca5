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
        let mut bytes = vec![0xff; Self::byte_len(len)];
        let tail = len % 8;
        if let Some(last) = bytes.last_mut().filter(|_| tail != 0) {
            *last = 0xffu8 << (8 - tail);
        }
        Self {
            bytes,
            len,
            ones: len,
        }
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

    /// Set indices, ascending. Word at a time: a run of clear bits costs one test per 64.
    pub fn iter_ones(&self) -> Ones<'_> {
        Ones::new(self, false)
    }

    /// Clear indices, ascending. Word at a time, as [`iter_ones`](Self::iter_ones).
    pub fn iter_zeros(&self) -> Ones<'_> {
        Ones::new(self, true)
    }

    /// How many indices are set here and clear in `other` (of the same length; bits past
    /// `other`'s length count as clear there). A word at a time.
    pub fn count_not_in(&self, other: &Bitfield) -> u32 {
        let words = (self.len as usize).div_ceil(64);
        (0..words)
            .map(|w| {
                let theirs = if w * 64 < other.len as usize {
                    other.word(w, false)
                } else {
                    0
                };
                (self.word(w, false) & !theirs).count_ones()
            })
            .sum()
    }

    /// The 64 bits starting at bit `64 * word`, MSB first (bit `64 * word` is the top bit),
    /// inverted if `invert`; bits past the end are always clear.
    fn word(&self, word: usize, invert: bool) -> u64 {
        crate::work::tick(1);
        let start = word * 8;
        let end = (start + 8).min(self.bytes.len());
        let mut buf = [0u8; 8];
        buf[..end - start].copy_from_slice(&self.bytes[start..end]);
        let mut w = u64::from_be_bytes(buf);
        if invert {
            w = !w;
        }
        let bits_here = (self.len as usize).saturating_sub(word * 64).min(64);
        if bits_here < 64 {
            w &= !(u64::MAX >> bits_here);
        }
        w
    }
}

/// The set (or clear) indices of a [`Bitfield`], ascending, found a 64-bit word at a time.
#[derive(Debug, Clone)]
pub struct Ones<'a> {
    bits: &'a Bitfield,
    invert: bool,
    /// Index of the word in `current`.
    word: usize,
    /// What is left of that word: found bits are cleared from the top.
    current: u64,
}

impl<'a> Ones<'a> {
    fn new(bits: &'a Bitfield, invert: bool) -> Self {
        let current = if bits.len == 0 {
            0
        } else {
            bits.word(0, invert)
        };
        Self {
            bits,
            invert,
            word: 0,
            current,
        }
    }
}

impl Iterator for Ones<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let words = (self.bits.len as usize).div_ceil(64);
        while self.current == 0 {
            self.word += 1;
            if self.word >= words {
                return None;
            }
            self.current = self.bits.word(self.word, self.invert);
        }
        let lead = self.current.leading_zeros();
        self.current &= !(1u64 << (63 - lead));
        Some((self.word * 64) as u32 + lead)
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
    fn iterators_agree_with_get_at_every_length_and_pattern() {
        for len in [0u32, 1, 7, 8, 9, 63, 64, 65, 127, 128, 129, 200, 1000] {
            for pattern in 0..6u32 {
                let mut b = Bitfield::new(len);
                for i in 0..len {
                    let on = match pattern {
                        0 => false,
                        1 => true,
                        2 => i % 2 == 0,
                        3 => i % 67 == 3,
                        4 => i == len - 1,
                        _ => i.wrapping_mul(2_654_435_761).rotate_left(7) % 5 < 2,
                    };
                    if on {
                        b.set(i);
                    }
                }
                let ones: Vec<u32> = (0..len).filter(|&i| b.get(i)).collect();
                let zeros: Vec<u32> = (0..len).filter(|&i| !b.get(i)).collect();
                assert_eq!(
                    b.iter_ones().collect::<Vec<_>>(),
                    ones,
                    "len {len} pattern {pattern}"
                );
                assert_eq!(
                    b.iter_zeros().collect::<Vec<_>>(),
                    zeros,
                    "len {len} pattern {pattern}"
                );
            }
            let full = Bitfield::full(len);
            assert_eq!(full.count_ones(), len);
            assert_eq!(full.iter_ones().count() as u32, len);
            assert_eq!(Bitfield::from_bytes(len, full.as_bytes()), Ok(full.clone()));
        }
    }

    #[test]
    fn iterating_a_sparse_bitfield_visits_words_not_bits() {
        let mut b = Bitfield::new(1 << 20);
        b.set(5);
        b.set((1 << 20) - 1);
        let (ones, work) = crate::work::count(|| b.iter_ones().collect::<Vec<_>>());
        assert_eq!(ones, vec![5, (1 << 20) - 1]);
        assert_eq!(work, (1 << 20) / 64, "one unit of work per 64-bit word");
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
