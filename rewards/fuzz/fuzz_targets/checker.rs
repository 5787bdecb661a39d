//! Fuzzes the answer checker: arbitrary bytes split into a response and a gold answer, graded in
//! both profiles with lossy UTF-8 decoding. Any panic, hang or unbounded allocation is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mathrl_rewards::{Checker, CheckerProfile};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (response, rest) = data.split_at(split);
    let gold = String::from_utf8_lossy(rest.get(1..).unwrap_or(&[]));
    for profile in [CheckerProfile::Qwen25Math, CheckerProfile::Strict] {
        let checker = Checker::new(profile);
        for dataset in [None, Some("gsm8k"), Some("minerva_math"), Some("mmlu_stem")] {
            let _ = checker.check_response_bytes(response, &gold, dataset);
        }
        let _ = checker.check_answer(&String::from_utf8_lossy(response), &gold, Some("math"));
    }
});
