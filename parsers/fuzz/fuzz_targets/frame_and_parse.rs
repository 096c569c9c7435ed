//! Arbitrary bytes as a container log: every framing, the joiner, every format, the
//! classifier. Nothing may panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use meshtrail_parsers::classify;
use meshtrail_parsers::envoy::{Hint, Parsed, Parser};
use meshtrail_parsers::frame::{Framing, frame};
use meshtrail_parsers::partial::Joiner;

static PARSER: LazyLock<Parser> = LazyLock::new(Parser::auto);

fuzz_target!(|data: &[u8]| {
    for framing in [Framing::Auto, Framing::Cri, Framing::Docker] {
        let mut joiner = Joiner::new(4096);
        let mut hint = Hint::default();
        for (i, line) in data.split(|b| *b == b'\n').enumerate() {
            if let Some(joined) = joiner.push(frame(line, framing), i as u64) {
                let text = joined.text();
                if let Parsed::Access { fields, .. } = PARSER.parse(&text, &mut hint) {
                    let _ = classify::classify(&fields, None);
                }
            }
        }
        while joiner.flush().is_some() {}
    }
});
