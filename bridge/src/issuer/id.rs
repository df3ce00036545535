//! Random ids (`jti`s, decision and request ids): 128 bits, or an error, never a constant.
//!
//! The bytes come from aws-lc's generator, drawn [`POOL_IDS`] ids at a time into a per-thread
//! pool and handed out once each (then zeroed in the pool): one call to the generator costs about
//! as much as its per-call setup (a fresh AES key and an RDRAND read), whatever the length, and
//! every exchange needs two ids (its request's and its decision's). The ids are not secrets (they
//! are logged and returned to callers); what matters is that they are unpredictable and never
//! repeat, which the same generator's bytes give whether drawn 16 or 512 at a time. The process
//! never forks, so no two processes share a pool.

use std::cell::RefCell;

use super::*;

/// Bytes of an id: 128 bits, so ids drawn at random do not collide in practice.
pub const ID_BYTES: usize = 16;

/// Ids drawn from the generator in one call.
const POOL_IDS: usize = 32;

/// The system's random number generator failed, so no id could be drawn.
#[derive(Debug, thiserror::Error)]
#[error("the system's random number generator failed")]
pub struct RandomError;

/// Random bytes drawn ahead, handed out [`ID_BYTES`] at a time from `next`.
struct Pool {
    bytes: [u8; ID_BYTES * POOL_IDS],
    /// Offset of the next unused id; `bytes.len()` when the pool is used up.
    next: usize,
}

impl Pool {
    /// A pool with nothing drawn yet.
    const EMPTY: Pool = Pool {
        bytes: [0; ID_BYTES * POOL_IDS],
        next: ID_BYTES * POOL_IDS,
    };

    /// The next id's bytes, refilling the pool with `fill` when it is used up. A failed refill
    /// leaves the pool used up (so the next call tries again) and gives no bytes.
    fn take(
        &mut self,
        fill: impl FnOnce(&mut [u8]) -> Result<(), aws_lc_rs::error::Unspecified>,
    ) -> Result<[u8; ID_BYTES], RandomError> {
        if self.next == self.bytes.len() {
            if fill(&mut self.bytes).is_err() {
                self.bytes.fill(0);
                return Err(RandomError);
            }
            self.next = 0;
        }
        let slot = &mut self.bytes[self.next..self.next + ID_BYTES];
        let mut id = [0u8; ID_BYTES];
        id.copy_from_slice(slot);
        slot.fill(0);
        self.next += ID_BYTES;
        Ok(id)
    }
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool::EMPTY) };
}

/// 128 random bits, base64url: `jti`s, decision ids and request ids. Fails when the system's
/// generator fails: single-use checks, audit trails and revocation all key on these ids, so a
/// constant stand-in would merge unrelated tokens and decisions.
pub fn random_id() -> Result<String, RandomError> {
    let id = POOL.with_borrow_mut(|pool| pool.take(|bytes| SystemRandom::new().fill(bytes)))?;
    Ok(URL_SAFE_NO_PAD.encode(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_hands_out_each_drawn_id_once_and_draws_again_when_used_up() {
        let mut pool = Pool::EMPTY;
        let mut draws = 0u8;
        let mut ids = Vec::new();
        for _ in 0..POOL_IDS * 2 + 1 {
            let id = pool
                .take(|b| {
                    draws += 1;
                    // Every id of a draw distinct: byte i of the pool is (draw, i / ID_BYTES).
                    for (i, chunk) in b.chunks_mut(ID_BYTES).enumerate() {
                        chunk.fill(0);
                        chunk[0] = draws;
                        chunk[1] = i as u8;
                    }
                    Ok(())
                })
                .unwrap();
            ids.push(id);
        }
        assert_eq!(draws, 3, "one draw per {POOL_IDS} ids");
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "an id was handed out twice");
        // What was handed out is no longer in the pool.
        assert!(pool.bytes[..ID_BYTES].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_failed_draw_gives_no_id_keeps_nothing_and_is_tried_again() {
        // A generator that fails, even after writing some bytes, yields no id at all.
        let mut pool = Pool::EMPTY;
        let failed = pool.take(|b| {
            b.fill(0x5a);
            Err(aws_lc_rs::error::Unspecified)
        });
        assert!(matches!(failed, Err(RandomError)));
        assert!(
            pool.bytes.iter().all(|&b| b == 0),
            "a failed draw's bytes were kept"
        );
        let id = pool
            .take(|b| {
                b.fill(0x11);
                Ok(())
            })
            .unwrap();
        assert_eq!(id, [0x11; ID_BYTES]);
    }
}
