//! Any input, cut into any writes, comes back byte for byte through zlib-rs's inflater
//! (the CRC and length checked), and the stream is never much larger than the input: the
//! bulk body's gzip writer against the reference reader.
#![no_main]

use std::io::{Read, Write};

use libfuzzer_sys::fuzz_target;
use meshtrail::sink::es::gzip::Gzip;

fuzz_target!(|data: (Vec<u16>, &[u8])| {
    let (cuts, input) = data;
    let mut gz = Gzip::new(Vec::new());
    let mut at = 0;
    for cut in cuts {
        let end = (at + usize::from(cut)).min(input.len());
        gz.write_all(&input[at..end]).expect("writes into memory");
        at = end;
    }
    gz.write_all(&input[at..]).expect("writes into memory");
    let z = gz.finish();
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(&z[..])
        .read_to_end(&mut back)
        .expect("zlib-rs reads every stream the writer makes");
    assert_eq!(back, input);
    // Fixed codes cost at most 9 bits a literal, plus header, block ends and trailer.
    assert!(z.len() <= input.len() * 9 / 8 + 32, "{} bytes from {}", z.len(), input.len());
});
