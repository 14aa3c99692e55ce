//! The role-tagged conversation (`ScanResult::turns`), re-read on request from the
//! spans the scan kept.
use super::{ScanResult, TEXT_TYPES};
use crate::json;

/// The text of `extract_content` on the (valid) value at `span`.
fn content_text(input: &[u8], span: (usize, usize)) -> Option<String> {
    match input.get(span.0) {
        Some(b'"') => Some(json::decode(input, span)),
        Some(b'[') => {
            let mut parts: Vec<String> = Vec::new();
            for e in json::elements(input, span) {
                match input.get(e.0) {
                    Some(b'"') => parts.push(json::decode(input, e)),
                    Some(b'{') => {
                        let ms = json::members(input, e);
                        let is_text = ms.iter().any(|(k, v)| {
                            k == b"type"
                                && input.get(v.0) == Some(&b'"')
                                && TEXT_TYPES
                                    .iter()
                                    .any(|t| json::decode(input, *v).as_bytes() == *t)
                        });
                        let text = ms
                            .iter()
                            .find(|(k, v)| k == b"text" && input.get(v.0) == Some(&b'"'));
                        if let (true, Some((_, v))) = (is_text, text) {
                            parts.push(json::decode(input, *v));
                        }
                    }
                    _ => {}
                }
            }
            if parts.is_empty() {
                None
            } else {
                Some(parts.join("\n"))
            }
        }
        _ => None,
    }
}

impl ScanResult {
    /// Role-tagged text of the conversation, oldest first, `system` first when present.
    ///
    /// `body` must be the bytes this result was scanned from (the result keeps offsets
    /// into it, not text); with other bytes the answer is meaningless but still safe.
    pub fn turns(&self, body: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(span) = self.turns_src.system {
            out.push((
                "system".to_owned(),
                content_text(body, span).unwrap_or_default(),
            ));
        }
        if let Some(span) = self.turns_src.turn_list {
            for e in json::elements(body, span) {
                let ms = json::members(body, e);
                let Some((_, role)) = ms
                    .iter()
                    .find(|(k, v)| k == b"role" && body.get(v.0) == Some(&b'"'))
                else {
                    continue;
                };
                let text = ms
                    .iter()
                    .find(|(k, _)| k == b"content")
                    .and_then(|(_, v)| content_text(body, *v))
                    .unwrap_or_default();
                out.push((json::decode(body, *role), text));
            }
        } else if let Some(q) = &self.query {
            out.push(("user".to_owned(), q.clone()));
        }
        out
    }
}
