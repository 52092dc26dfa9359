// Warnings (unreachable state and transition, unused agent, ignored field) are not errors:
// the machine compiles, and the unreachable state is still a variant.
flatmachines::include_machine!("machines/warnings_only.yml");

use warnings_only::State;

fn main() {
    assert_eq!(State::ALL, &[State::Start, State::Orphan, State::Done]);
    assert_eq!(State::Orphan.name(), "orphan");
    assert!(!State::Orphan.is_final());
}
