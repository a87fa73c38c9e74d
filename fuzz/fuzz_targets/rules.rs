//! The config and rules TOML, and building the rule engine from it: a bad
//! file is refused with its line, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines = text.lines().count().max(1);
    match tomare_config::Config::parse_rules(text) {
        Ok(rules) => {
            let _ = tomare_policy::Engine::new(&tomare_config::Config::default(), rules);
        }
        Err(errors) => assert!(errors.iter().all(|e| e.line <= lines + 1), "{errors:?}"),
    }
    if let Ok(config) = tomare_config::Config::parse(text) {
        let _ = tomare_policy::Engine::new(&config, Vec::new());
    }
});
