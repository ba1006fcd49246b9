//! Fuzz target: the client-side frame decoder and the typed views of the messages the proxy inspects.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgsplit::protocol::frame;
use pgsplit::protocol::messages::{Bind, Parse, Query, Target};
use pgsplit::protocol::tags::frontend as tag;

fuzz_target!(|data: &[u8]| {
    // A small limit so the fuzzer also reaches the too-large path with short inputs.
    for max in [1 << 20, 64] {
        // Fed in two pieces, as a socket would, so partial frames are exercised too.
        let split = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
        let mut buf = BytesMut::from(&data[..split]);
        let mut fed_rest = false;
        loop {
            match frame::decode_frontend(&mut buf, max) {
                Ok(Some(f)) => {
                    assert!(f.len() >= frame::HEADER_LEN);
                    let body = f.body();
                    match f.tag() {
                        tag::QUERY => drop(Query::decode(body)),
                        tag::PARSE => drop(Parse::decode(body)),
                        tag::BIND => drop(Bind::decode(body)),
                        tag::DESCRIBE | tag::CLOSE => drop(Target::decode(body, "Describe")),
                        _ => {}
                    }
                }
                Ok(None) if !fed_rest => {
                    buf.extend_from_slice(&data[split..]);
                    fed_rest = true;
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
});
