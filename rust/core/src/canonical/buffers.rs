//! Where canonical output goes: an append-only buffer and the segments over it and the
//! input, and the per-thread store that keeps their allocations between scans.
use super::{Canon, Frame, Member, Seg};

/// The growable buffers of a [`Canon`], kept per thread between scans.
///
/// A 1 MB body touches a few MB of buffers. Allocated fresh on every call they come
/// from `mmap` (or a heap top the allocator trims on free) and every page faults in
/// again: in a Python process that was about half the scan's time. Kept here, a thread
/// that scans again reuses pages that are already mapped.
#[derive(Default)]
struct Spare {
    buf: Vec<u8>,
    segs: Vec<Seg>,
    members: Vec<Member>,
    keys: Vec<u8>,
    scratch: Vec<Seg>,
    frames: Vec<Frame>,
    hash_buf: Vec<u8>,
}

/// Buffers larger than this many bytes are freed rather than kept for the next scan, so
/// that one huge body does not pin its memory to the thread for good.
const KEEP_BYTES: usize = 8 << 20;

thread_local! {
    static SPARE: std::cell::Cell<Spare> = std::cell::Cell::default();
}

/// `v`, emptied, if its allocation is small enough to keep; else a new empty vector.
fn keep<T>(mut v: Vec<T>) -> Vec<T> {
    if v.capacity() * std::mem::size_of::<T>() > KEEP_BYTES {
        return Vec::new();
    }
    v.clear();
    v
}

impl Drop for Canon<'_> {
    fn drop(&mut self) {
        let spare = Spare {
            buf: keep(std::mem::take(&mut self.buf)),
            segs: keep(std::mem::take(&mut self.segs)),
            members: keep(std::mem::take(&mut self.members)),
            keys: keep(std::mem::take(&mut self.keys)),
            scratch: keep(std::mem::take(&mut self.scratch)),
            frames: keep(std::mem::take(&mut self.frames)),
            hash_buf: keep(std::mem::take(&mut self.hash_buf)),
        };
        // During thread teardown the slot may be gone: the buffers are then just freed.
        let _ = SPARE.try_with(|slot| slot.set(spare));
    }
}

impl<'a> Canon<'a> {
    pub fn new(input: &'a [u8], max_depth: usize) -> Self {
        let Spare {
            mut buf,
            mut segs,
            members,
            keys,
            scratch,
            frames,
            hash_buf,
        } = SPARE.try_with(std::cell::Cell::take).unwrap_or_default();
        // Canonical output is never much larger than the input outside of escapes; the
        // buffer holds short strings and punctuation, so a fraction of it is enough to
        // start with and growth is amortized.
        buf.reserve(input.len() / 2 + 64);
        buf.extend_from_slice(b"null");
        segs.reserve(input.len() / 32 + 16);
        Self {
            input,
            pos: 0,
            buf,
            segs,
            brk: true,
            members,
            keys,
            scratch,
            frames,
            max_depth,
            hash_buf,
            null_seg: Seg {
                start: 0,
                end: 4,
                input: false,
            },
        }
    }

    /// Extends the last segment with `buf[start..]` if it is contiguous, else adds one.
    #[inline]
    pub(super) fn seal(&mut self, start: usize) {
        let end = self.buf.len();
        if !self.brk
            && let Some(last) = self.segs.last_mut()
            && !last.input
            && last.end == start
        {
            last.end = end;
            return;
        }
        self.brk = false;
        self.segs.push(Seg {
            start,
            end,
            input: false,
        });
    }

    #[inline]
    pub(super) fn push_buf(&mut self, bytes: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        self.seal(start);
    }
}
