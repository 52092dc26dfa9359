// A retry `jitter` of 1.5 (must be within 0..=1).
//~ ERROR FM0403 machines/jitter_out_of_range.yml:16:17
flatmachines::include_machine!("machines/jitter_out_of_range.yml");

fn main() {
    let _ = jitter_out_of_range::State::ALL;
}
