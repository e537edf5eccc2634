//! Arbitrary text as a rule file, and as an alert template: parsing gives groups or an
//! error (never a panic); a template that checks also expands without panicking.
#![no_main]

use kiln_rules::parse_rule_file;
use kiln_rules::template::{TemplateData, expand};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(groups) = parse_rule_file(text, "fuzz.yml") {
        for g in &groups {
            assert!(!g.name.is_empty());
            for r in &g.rules {
                assert!(!r.name().is_empty() && !r.expr.trim().is_empty());
            }
        }
    }
    let mut d = TemplateData::default();
    d.labels.insert("instance".into(), "a:1".into());
    d.value = 1.5;
    let _ = expand(text, &d, 0.0, None);
});
