#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    flatmachines_fuzz::template_prompt(data);
});
