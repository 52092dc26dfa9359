//! A machine compiled by `build.rs` into `OUT_DIR`, then included.

include!(concat!(env!("OUT_DIR"), "/code_review.rs"));

fn main() {
    use code_review::State;
    let finals: Vec<&str> = State::ALL
        .iter()
        .filter(|s| s.is_final())
        .map(|s| s.name())
        .collect();
    println!(
        "{}: starts at {}, ends at {}",
        code_review::NAME,
        State::INITIAL,
        finals.join(" or ")
    );
}
