//! Arbitrary format strings compile or fail with an error, and a compiled one matches its
//! own rendering and arbitrary lines without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshtrail_parsers::envoy::Program;

fuzz_target!(|data: (&str, &str)| {
    let (format, line) = data;
    if let Ok(program) = Program::compile("fuzz", format) {
        let _ = program.matches(line);
        let rendered = program.render(|_| Some("x"));
        let _ = program.matches(&rendered);
    }
});
