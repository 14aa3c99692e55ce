//! Profiling harness for the request-body scan (no extra dependencies).
//!
//! Builds a chat-completions body like `benches/bench_scan.py` does (system prompt,
//! alternating short user turns and markdown-ish assistant paragraphs with non-ASCII,
//! tools, a last user turn with text parts), then scans it `iters` times.
//!
//! ```text
//! cargo run --release -p semcache-core --example scan_profile -- [bytes] [ascii|utf8] [iters]
//! ```
//!
//! `ascii` escapes non-ASCII as `\uXXXX` like Python's `json.dumps` default
//! (`ensure_ascii=True`); `utf8` writes it literally (`ensure_ascii=False`). Wall-clock
//! figures on a shared machine are noisy: for repeatable numbers run one iteration under
//! `valgrind --tool=callgrind --toggle-collect=*scan_once*` and compare instruction
//! counts (the toggle leaves the body generation out).
use std::hint::black_box;
use std::time::Instant;

use semcache_core::{Limits, ScanResult, scan_request};

const PARAGRAPH: &str = "Here is how the **index** works:\n\n\
1. Vectors are inserted into a layered graph (HNSW); each layer is sparser.\n\
2. A query walks from the top layer down, keeping the \"ef_search\" best candidates.\n\
3. Results are re-ranked by cosine distance \u{2014} exact, not approximate.\n\n\
```sql\nSELECT id FROM items ORDER BY embedding <=> $1 LIMIT 5;\n```\n\
Caf\u{e9} notes: r\u{e9}sum\u{e9} \u{2192} \u{4e2d}\u{6587} \u{1f600}\n";

/// A JSON string literal, escaped as Python's `json.dumps` does.
fn jstr(out: &mut String, s: &str, ascii: bool) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ascii && !c.is_ascii() => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn message(out: &mut String, role: &str, content: &str, ascii: bool) {
    out.push_str("{\"role\": ");
    jstr(out, role, ascii);
    out.push_str(", \"content\": ");
    jstr(out, content, ascii);
    out.push('}');
}

/// A body of about `target` bytes, shaped like `benches/bench_scan.py::chat_body`.
fn chat_body(target: usize, ascii: bool) -> Vec<u8> {
    let head = "{\"model\": \"gpt-4o-mini\", \"stream\": true, \"temperature\": 0.2, \
\"top_p\": 1, \"max_tokens\": 1024, \"seed\": 42, \"tools\": [{\"type\": \"function\", \
\"function\": {\"name\": \"search\", \"description\": \"Search the docs.\", \"parameters\": \
{\"type\": \"object\", \"properties\": {\"q\": {\"type\": \"string\"}, \"k\": {\"type\": \
\"integer\"}}, \"required\": [\"q\"]}}}], \"messages\": [";
    let mut out = String::from(head);
    message(
        &mut out,
        "system",
        &"You are a helpful assistant. ".repeat(8),
        ascii,
    );
    let tail = ", {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \
\"And what about IVFFlat?\"}, {\"type\": \"image_url\", \"image_url\": {\"url\": \
\"https://example.com/a.png\"}}]}]}";
    let mut turn = 0usize;
    while out.len() + tail.len() + 2 < target.saturating_sub(200) {
        out.push_str(", ");
        if turn % 2 == 0 {
            message(
                &mut out,
                "user",
                &format!("Question {turn}: how does it scale?"),
                ascii,
            );
        } else {
            let reps = (target.saturating_sub(out.len()) / 700).clamp(1, 8);
            message(&mut out, "assistant", &PARAGRAPH.repeat(reps), ascii);
        }
        turn += 1;
    }
    out.push_str(tail);
    out.into_bytes()
}

#[inline(never)]
fn scan_once(body: &[u8]) -> ScanResult {
    match scan_request(black_box(body), Limits::default()) {
        Ok(r) => r,
        Err(e) => panic!("scan failed: {e}"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let size: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let ascii = args.next().is_none_or(|a| a != "utf8");
    let iters: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let body = chat_body(size, ascii);
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..iters {
        let t = Instant::now();
        let r = scan_once(&body);
        best = best.min(t.elapsed().as_secs_f64());
        last = Some(r);
    }
    let r = last.map(|r| (r.query, r.params_digest[0], r.context_digest[0]));
    println!(
        "{} bytes ({}), best of {iters}: {:.1} us, {:.2} GB/s; {r:?}",
        body.len(),
        if ascii { "ascii" } else { "utf8" },
        best * 1e6,
        f64::from(u32::try_from(body.len()).unwrap_or(u32::MAX)) / best / 1e9,
    );
}
