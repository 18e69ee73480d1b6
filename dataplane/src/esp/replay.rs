//! Anti-replay window (RFC 4303 §3.4.3) as an RFC 6479 bitmap, with ESN inference
//! (RFC 4303 Appendix A2.2).
//!
//! Drive it in two steps per packet: `check` before decryption (cheap rejection of replays
//! and packets left behind the window, and the high half of an extended sequence number),
//! then `update` only after the ICV verified — so a forged packet can never move the window.
//! The window is owned by whoever processes the SA's inbound packets (`&mut self`).

/// Smallest configurable window, in packets.
pub const MIN_WINDOW: u32 = 64;
/// Largest configurable window, in packets.
pub const MAX_WINDOW: u32 = 4096;

/// Why a sequence number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// Already received.
    Replayed,
    /// Left of the window (or zero, which no sender may use).
    TooOld,
}

/// The receive window of one inbound SA.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// Highest authenticated sequence number (full 64 bits), 0 before the first packet.
    top: u64,
    size: u64,
    esn: bool,
    /// Word `i` holds blocks `b` with `b % words.len() == i`; one spare word lets the window
    /// slide by whole words without clearing bits that are still inside it (RFC 6479 §2).
    words: Box<[u64]>,
}

impl ReplayWindow {
    /// A window of `size` packets, clamped to 64..=4096 and rounded up to a multiple of 64.
    pub fn new(size: u32, esn: bool) -> Self {
        let size = size.clamp(MIN_WINDOW, MAX_WINDOW).div_ceil(64) * 64;
        let words = (size as usize / 64 + 1).next_power_of_two();
        Self { top: 0, size: u64::from(size), esn, words: vec![0; words].into_boxed_slice() }
    }

    /// Window size in packets.
    pub fn size(&self) -> u32 {
        self.size as u32
    }

    /// Forgets every sequence number seen (benchmarks reuse one SA for many opens).
    pub fn reset(&mut self) {
        self.top = 0;
        self.words.fill(0);
    }

    /// Highest authenticated sequence number.
    pub fn top(&self) -> u64 {
        self.top
    }

    /// Reconstructs the full sequence number from the 32 bits on the wire: unchanged without
    /// ESN, else the high half that places it nearest the window (RFC 4303 Appendix A2.2).
    pub fn infer(&self, seq_lo: u32) -> u64 {
        if !self.esn {
            return u64::from(seq_lo);
        }
        let tl = self.top as u32;
        let th = (self.top >> 32) as u32;
        let w = self.size as u32;
        let bottom = tl.wrapping_sub(w - 1);
        let hi = if tl >= w - 1 {
            // Case A: the window lies within one 2^32 sub-space.
            if seq_lo >= bottom {
                th
            } else {
                th.wrapping_add(1)
            }
        } else if seq_lo >= bottom && th > 0 {
            // Case B: the window spans two sub-spaces; high numbers belong to the lower one
            // (there is none below sub-space 0, at the start of the SA).
            th - 1
        } else {
            th
        };
        (u64::from(hi) << 32) | u64::from(seq_lo)
    }

    fn slot(&self, seq: u64) -> (usize, u64) {
        let block = (seq >> 6) as usize & (self.words.len() - 1);
        (block, 1u64 << (seq & 63))
    }

    /// Checks a full sequence number without changing the window.
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        if seq == 0 {
            return Err(ReplayError::TooOld);
        }
        if seq > self.top {
            return Ok(());
        }
        if seq + self.size <= self.top {
            return Err(ReplayError::TooOld);
        }
        let (w, bit) = self.slot(seq);
        if self.words[w] & bit != 0 {
            Err(ReplayError::Replayed)
        } else {
            Ok(())
        }
    }

    /// Records an authenticated sequence number. Checks again, so two packets with the same
    /// number that both passed `check` cannot both be accepted.
    pub fn update(&mut self, seq: u64) -> Result<(), ReplayError> {
        self.check(seq)?;
        if seq > self.top {
            let old_block = self.top >> 6;
            let new_block = seq >> 6;
            let n = self.words.len() as u64;
            let clear = (new_block - old_block).min(n);
            for b in 1..=clear {
                let w = ((old_block + b) as usize) & (self.words.len() - 1);
                self.words[w] = 0;
            }
            self.top = seq;
        }
        let (w, bit) = self.slot(seq);
        self.words[w] |= bit;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn in_order_then_replay() {
        let mut w = ReplayWindow::new(64, false);
        for s in 1..=200u64 {
            assert_eq!(w.check(s), Ok(()));
            w.update(s).unwrap();
            assert_eq!(w.check(s), Err(ReplayError::Replayed));
        }
        assert_eq!(w.check(200 - 63), Err(ReplayError::Replayed), "inside the window");
        assert_eq!(w.check(200 - 64), Err(ReplayError::TooOld), "just left of the window");
        assert_eq!(w.check(0), Err(ReplayError::TooOld), "zero is never valid");
    }

    #[test]
    fn out_of_order_inside_window_accepted_once() {
        let mut w = ReplayWindow::new(128, false);
        w.update(1000).unwrap();
        for s in (1000 - 127..1000).rev() {
            assert_eq!(w.update(s), Ok(()), "{s}");
        }
        assert_eq!(w.update(1000 - 128), Err(ReplayError::TooOld));
        assert_eq!(w.update(900), Err(ReplayError::Replayed));
    }

    #[test]
    fn large_jump_clears_stale_bits() {
        let mut w = ReplayWindow::new(64, false);
        w.update(5).unwrap();
        w.update(5 + 64 * 200).unwrap();
        // Bits from 5 must not make these look replayed after the window wrapped the bitmap.
        for s in (5 + 64 * 200 - 63)..(5 + 64 * 200) {
            assert_eq!(w.check(s), Ok(()), "{s}");
        }
    }

    #[test]
    fn size_is_clamped_and_rounded() {
        assert_eq!(ReplayWindow::new(1, false).size(), 64);
        assert_eq!(ReplayWindow::new(100, false).size(), 128);
        assert_eq!(ReplayWindow::new(100_000, false).size(), 4096);
    }

    #[test]
    fn esn_inference_across_the_2_32_boundary() {
        // RFC 4303 Appendix A2.2 cases.
        let mut w = ReplayWindow::new(64, true);
        w.update(0xffff_fff0).unwrap();
        assert_eq!(w.infer(0xffff_fff5), 0xffff_fff5, "same sub-space");
        assert_eq!(w.infer(3), 0x1_0000_0003, "wrapped: next sub-space");
        w.update(0x1_0000_0003).unwrap();
        assert_eq!(w.infer(0xffff_fff8), 0xffff_fff8, "window spans: high value is the old sub-space");
        assert_eq!(w.infer(10), 0x1_0000_000a);
        assert_eq!(w.check(w.infer(0xffff_fff0)), Err(ReplayError::Replayed));
    }

    proptest! {
        /// Against a reference set: a number is accepted iff it is new and within the window.
        #[test]
        fn matches_reference_model(seqs in proptest::collection::vec(1u64..5000, 1..400), size in 64u32..1024) {
            let mut w = ReplayWindow::new(size, false);
            let size = u64::from(w.size());
            let mut seen = std::collections::HashSet::new();
            let mut top = 0u64;
            for s in seqs {
                let expect = if seen.contains(&s) {
                    Err(ReplayError::Replayed)
                } else if s + size <= top {
                    Err(ReplayError::TooOld)
                } else {
                    Ok(())
                };
                // A too-old number may also have been seen: the window reports TooOld first.
                let expect = if s + size <= top { Err(ReplayError::TooOld) } else { expect };
                prop_assert_eq!(w.update(s), expect, "seq {}", s);
                if expect.is_ok() {
                    seen.insert(s);
                    top = top.max(s);
                }
            }
        }
    }
}
