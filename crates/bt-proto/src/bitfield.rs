//! A fixed-length bit set in the wire layout of the BITFIELD message:
//! bit 0 is the high bit of byte 0.

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    ones: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BitfieldError {
    #[error("bitfield has {got} bytes, expected {expected} for {bits} pieces")]
    WrongLength {
        got: usize,
        expected: usize,
        bits: u32,
    },
    #[error("bitfield has spare bits set past piece {bits}")]
    SpareBitsSet { bits: u32 },
}

impl Bitfield {
    pub fn new(len: u32) -> Self {
        Bitfield {
            bytes: vec![0; byte_len(len)],
            len,
            ones: 0,
        }
    }

    pub fn full(len: u32) -> Self {
        let mut b = Bitfield::new(len);
        b.set_all();
        b
    }

    /// Validates the wire form against the torrent's piece count: the length
    /// must match exactly and the spare bits of the last byte must be clear.
    pub fn from_bytes(bytes: &[u8], len: u32) -> Result<Self, BitfieldError> {
        let expected = byte_len(len);
        if bytes.len() != expected {
            return Err(BitfieldError::WrongLength {
                got: bytes.len(),
                expected,
                bits: len,
            });
        }
        let spare = (expected as u32) * 8 - len;
        if spare > 0 {
            let mask = (1u8 << spare) - 1;
            if bytes[expected - 1] & mask != 0 {
                return Err(BitfieldError::SpareBitsSet { bits: len });
            }
        }
        let ones = bytes.iter().map(|b| b.count_ones()).sum();
        Ok(Bitfield {
            bytes: bytes.to_vec(),
            len,
            ones,
        })
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn count_ones(&self) -> u32 {
        self.ones
    }

    pub fn all(&self) -> bool {
        self.ones == self.len
    }

    pub fn none(&self) -> bool {
        self.ones == 0
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Out-of-range indices read as unset.
    pub fn get(&self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        self.bytes[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Returns whether the bit changed. Out-of-range indices are ignored.
    pub fn set(&mut self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        let byte = &mut self.bytes[(i / 8) as usize];
        let mask = 0x80 >> (i % 8);
        if *byte & mask != 0 {
            return false;
        }
        *byte |= mask;
        self.ones += 1;
        true
    }

    /// Returns whether the bit changed.
    pub fn clear(&mut self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        let byte = &mut self.bytes[(i / 8) as usize];
        let mask = 0x80 >> (i % 8);
        if *byte & mask == 0 {
            return false;
        }
        *byte &= !mask;
        self.ones -= 1;
        true
    }

    pub fn set_all(&mut self) {
        self.bytes.fill(0xff);
        let spare = (self.bytes.len() as u32) * 8 - self.len;
        if spare > 0 {
            let last = self.bytes.len() - 1;
            self.bytes[last] &= !((1u8 << spare) - 1);
        }
        self.ones = self.len;
    }

    pub fn clear_all(&mut self) {
        self.bytes.fill(0);
        self.ones = 0;
    }

    /// Indices of set bits, ascending.
    pub fn iter_ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b != 0)
            .flat_map(|(i, &b)| {
                (0..8u32)
                    .filter(move |bit| b & (0x80 >> bit) != 0)
                    .map(move |bit| i as u32 * 8 + bit)
            })
    }
}

fn byte_len(bits: u32) -> usize {
    (bits as usize).div_ceil(8)
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.ones, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spare_bits_must_be_clear() {
        assert!(Bitfield::from_bytes(&[0xff, 0x80], 9).is_ok());
        assert_eq!(
            Bitfield::from_bytes(&[0xff, 0xc0], 9),
            Err(BitfieldError::SpareBitsSet { bits: 9 })
        );
        assert!(matches!(
            Bitfield::from_bytes(&[0xff], 9),
            Err(BitfieldError::WrongLength { .. })
        ));
    }

    #[test]
    fn full_has_clear_spare_bits() {
        let b = Bitfield::full(10);
        assert_eq!(b.as_bytes(), &[0xff, 0xc0]);
        assert!(b.all());
    }

    proptest! {
        #[test]
        fn set_get_count_agree(len in 0u32..300, idx in proptest::collection::vec(0u32..300, 0..100)) {
            let mut b = Bitfield::new(len);
            let mut model = std::collections::BTreeSet::new();
            for i in idx {
                b.set(i);
                if i < len { model.insert(i); }
            }
            prop_assert_eq!(b.count_ones() as usize, model.len());
            prop_assert_eq!(b.iter_ones().collect::<Vec<_>>(), model.iter().copied().collect::<Vec<_>>());
            let round = Bitfield::from_bytes(b.as_bytes(), len).unwrap();
            prop_assert_eq!(round, b);
        }
    }
}
