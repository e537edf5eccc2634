//! Arbitrary bytes as a DNS response (what DNS discovery reads from the network):
//! parsing must give records or an error, never panic or loop. Names in parsed records
//! stay within DNS's limits.
#![no_main]

use kiln_discovery::dns::message::{Record, parse_response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(resp) = parse_response(data) else {
        return;
    };
    assert!(resp.answers.len() <= data.len());
    for r in &resp.answers {
        let name = match r {
            Record::Srv { target, .. } => target,
            Record::Mx { exchange } => exchange,
            Record::Ns { host } => host,
            Record::A(_) | Record::Aaaa(_) => continue,
        };
        // 255 wire bytes; escaping (`\DDD`) can make the text up to four times longer.
        assert!(name.len() <= 4 * 255, "{name}");
        assert!(name.ends_with('.'));
    }
});
