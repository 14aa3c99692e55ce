//! Key order and duplicate keys: members are sorted by their decoded keys (by moving
//! segment descriptors) when an object closes, and a key that occurs twice is refused.
use super::{Canon, Member, Str, Track, ValPos};
use crate::error::{ScanError, ScanErrorKind};
use crate::json;

fn key_bytes<'k>(input: &'k [u8], keys: &'k [u8], m: &Member) -> &'k [u8] {
    if m.key_in_input {
        &input[m.key_start..m.key_end]
    } else {
        &keys[m.key_start..m.key_end]
    }
}

impl Canon<'_> {
    /// Decoded bytes of a member's key.
    pub(crate) fn key_of(&self, m: &Member) -> &[u8] {
        key_bytes(self.input, &self.keys, m)
    }

    /// Of the keys that occur twice in `ms`, the second occurrence that comes first in
    /// the document (sorts `ms`).
    pub(crate) fn duplicate_in(&self, ms: &mut [Member]) -> Option<ScanError> {
        let (input, keys) = (self.input, &self.keys);
        ms.sort_unstable_by(|a, b| {
            key_bytes(input, keys, a)
                .cmp(key_bytes(input, keys, b))
                .then(a.offset.cmp(&b.offset))
        });
        first_duplicate(input, keys, ms)
            .map(|d| duplicate_key(key_bytes(input, keys, &d), d.offset))
    }

    /// Sorts the members of the object being closed, refuses duplicates, writes `}`.
    /// For an element of a tracked array, reports its tagged members to `track`.
    pub(super) fn close_object<T: Track>(
        &mut self,
        members_lo: usize,
        region_lo: usize,
        tracked: bool,
        track: &mut T,
    ) -> Result<(), ScanError> {
        let input = self.input;
        let keys = &self.keys;
        let ms = &mut self.members[members_lo..];
        let sorted = ms
            .windows(2)
            .all(|w| key_bytes(input, keys, &w[0]) < key_bytes(input, keys, &w[1]));
        if !sorted {
            ms.sort_unstable_by(|a, b| {
                key_bytes(input, keys, a)
                    .cmp(key_bytes(input, keys, b))
                    .then(a.offset.cmp(&b.offset))
            });
            if let Some(dup) = first_duplicate(input, keys, ms) {
                return Err(duplicate_key(key_bytes(input, keys, &dup), dup.offset));
            }
            self.scratch.clear();
            for m in ms.iter() {
                self.scratch.extend_from_slice(&self.segs[m.lo..m.hi]);
            }
            self.segs.truncate(region_lo);
            self.segs.extend_from_slice(&self.scratch);
        }
        // Every key segment starts with a comma; the first one in sorted order drops it.
        if let Some(first) = self.segs.get_mut(region_lo) {
            first.start += 1;
        }
        if T::ON && tracked {
            let mut pos = region_lo;
            let n = ms.len();
            for (i, m) in ms.iter().enumerate() {
                let lo = pos;
                pos += m.hi - m.lo;
                if m.tag != 0 {
                    let at = ValPos {
                        lo: lo + 1,
                        hi: pos,
                        span: m.vspan,
                        string: match (m.vstring, m.vescaped) {
                            (false, _) => Str::No,
                            (true, false) => Str::Plain,
                            (true, true) => Str::Escaped,
                        },
                        first: i == 0,
                        last: i + 1 == n,
                    };
                    track.member(input, m.tag, at);
                }
            }
        }
        self.members.truncate(members_lo);
        self.push_buf(b"}");
        Ok(())
    }
}

/// In a slice sorted by (key, offset): of the keys that occur twice, the second
/// occurrence that comes first in the document.
fn first_duplicate(input: &[u8], keys: &[u8], ms: &[Member]) -> Option<Member> {
    let mut found: Option<Member> = None;
    for w in ms.windows(2) {
        if key_bytes(input, keys, &w[0]) == key_bytes(input, keys, &w[1])
            && found.is_none_or(|f| w[1].offset < f.offset)
        {
            found = Some(w[1]);
        }
    }
    found
}

fn duplicate_key(key: &[u8], offset: usize) -> ScanError {
    let mut shown = Vec::with_capacity(key.len() + 2);
    json::canon_decoded(&mut shown, key);
    let shown = String::from_utf8_lossy(&shown);
    ScanError {
        kind: ScanErrorKind::DuplicateKey,
        offset,
        message: format!("duplicate key \"{shown}\" at byte {offset}"),
    }
}
