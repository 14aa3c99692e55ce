//! The hook through which the parse reports, in the same pass, where the elements of
//! one array ended up and, for the elements that are objects, where some of their
//! members ended up after sorting. The scan implements it for the lookup field (it
//! knows which members matter); everything else parses with [`NoTrack`].
use super::{Kind, ValPos};

/// An element of the tracked array, once it has been parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Element {
    pub kind: Kind,
    /// Segments of the element; exact (own segments) for strings only.
    pub lo: usize,
    pub hi: usize,
    pub span: (usize, usize),
}

/// What the parse tells its caller about a tracked array (the top-level array of the
/// value parsed, when [`Track::ON`]).
pub(crate) trait Track {
    /// Whether arrays are tracked at all; `false` compiles the tracking out.
    const ON: bool;

    /// The tag of a member of an element object, from its decoded key: 0 when the
    /// caller does not care about it, else a value of the caller's choosing.
    fn tag(&mut self, key: &[u8]) -> u8;

    /// A tagged member of the element object being closed, in sorted order.
    fn member(&mut self, input: &[u8], tag: u8, at: ValPos);

    /// An element finished (an object after all of its [`Track::member`] calls).
    fn element(&mut self, e: Element);
}

/// Tracks nothing.
pub(crate) struct NoTrack;

impl Track for NoTrack {
    const ON: bool = false;

    #[inline]
    fn tag(&mut self, _key: &[u8]) -> u8 {
        0
    }

    #[inline]
    fn member(&mut self, _input: &[u8], _tag: u8, _at: ValPos) {}

    #[inline]
    fn element(&mut self, _e: Element) {}
}
