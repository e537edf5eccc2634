//! Arbitrary bytes as a prometheus.yml: loading must give a config or an error, never
//! panic or hang. A config that loads is checked for the invariants loading promises.
#![no_main]

use kiln_config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(text, "fuzz.yml") else {
        return;
    };
    assert!(config.global.scrape_timeout <= config.global.scrape_interval);
    for (i, sc) in config.scrape_configs.iter().enumerate() {
        assert!(sc.scrape_timeout <= sc.scrape_interval);
        assert!(!sc.job_name.is_empty());
        assert!(
            config.scrape_configs[..i]
                .iter()
                .all(|other| other.job_name != sc.job_name)
        );
    }
});
